"""Before a tool runs, the arguments it gets are the ones recorded, granted and chained.

The worker reads a call's arguments back from its ``ToolCalled`` event, so an edit of
the stored row would otherwise run with arguments nobody approved. Three checks bind
them: the events the step rests on (from the ``ToolCalled`` to the agent's head) match
their stored digests and link up; the arguments hash to what the ``ToolCalled`` event
and the agent's state recorded; and a grant, where the call needed one, names that same
hash.
"""

from __future__ import annotations

from pydantic import JsonValue

from agentlog.domain.agent import Agent
from agentlog.domain.application import AgentLog
from agentlog.domain.chain import args_hash
from agentlog.domain.errors import BrokenChainError, CallTamperedError
from agentlog.domain.values import CallState, Policy


def checked_args(
    log: AgentLog, agent: Agent, call_id: str, call: CallState
) -> dict[str, JsonValue]:
    """The arguments to run the call with; raises :class:`CallTamperedError` if any check fails."""
    try:
        events = log.chained_events(agent, since=call.called_version)
    except BrokenChainError as e:
        raise CallTamperedError(agent.id, call_id, f"broken chain at {e}") from None
    called = events[0] if events else None
    if not isinstance(called, Agent.ToolCalled) or called.call_id != call_id:
        reason = f"version {call.called_version} is not this call's ToolCalled event"
        raise CallTamperedError(agent.id, call_id, reason)
    recomputed = args_hash(called.args)
    if recomputed != called.args_hash or recomputed != call.args_hash:
        reason = "its arguments do not match the hash they were recorded with"
        raise CallTamperedError(agent.id, call_id, reason)
    grants = [e for e in events if isinstance(e, Agent.PermissionGranted) and e.call_id == call_id]
    if call.policy is Policy.ASK and not grants:
        raise CallTamperedError(agent.id, call_id, "it needs a grant and none was recorded")
    if any(grant.args_hash != recomputed for grant in grants):
        reason = "its arguments are not the ones the grant was given for"
        raise CallTamperedError(agent.id, call_id, reason)
    return called.args
