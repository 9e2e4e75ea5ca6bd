"""Before a tool runs, the arguments it gets are the ones recorded, granted and chained.

The worker reads a call's arguments back from its ``ToolCalled`` event, so an edit of
the stored row would otherwise run with arguments nobody approved. Four checks bind
them: the events the step rests on (from the model's response that asked for the call
to the agent's head) match their stored digests and link up; the arguments hash to
what the ``ToolCalled`` event and the agent's state recorded; they are the arguments
the model's response asked for; and a grant, where the call needed one, names that same
hash. Only the newest events can be rewritten so that their own chain still verifies;
those are the ones the other checks cover.

A worker reads those events in the same go as it brings the agent it keeps up to date
(``AgentLog.take(agent_id, check_from=check_from)``): one read of the store per step.
"""

from __future__ import annotations

from pydantic import JsonValue

from agentlog.domain.agent import Agent
from agentlog.domain.aggregate import Aggregate
from agentlog.domain.application import AgentLog
from agentlog.domain.chain import canonical, sha256_hex
from agentlog.domain.errors import BrokenChainError, CallTamperedError
from agentlog.domain.values import CallState, Policy


def checked_args(
    log: AgentLog, agent: Agent, call_id: str, call: CallState
) -> dict[str, JsonValue]:
    """The arguments to run the call with; raises :class:`CallTamperedError` if any check fails."""
    asked, since = call.asked_version, _since(call)
    events = _chained(log, agent, call_id, since)  # from the response on
    called = _at(events, call.called_version)
    if not isinstance(called, Agent.ToolCalled) or called.call_id != call_id:
        reason = f"version {call.called_version} is not this call's ToolCalled event"
        raise CallTamperedError(agent.id, call_id, reason)
    encoded = canonical(dict(called.args))
    recomputed = sha256_hex(encoded)  # args_hash(called.args)
    if recomputed != called.args_hash or recomputed != call.args_hash:
        reason = "its arguments do not match the hash they were recorded with"
        raise CallTamperedError(agent.id, call_id, reason)
    if called.caused_by != asked or (
        since < call.called_version and not _asked(events[0], called, encoded)
    ):
        reason = f"its arguments are not the ones the model asked for at version {asked}"
        raise CallTamperedError(agent.id, call_id, reason)
    grants = [e for e in events if isinstance(e, Agent.PermissionGranted) and e.call_id == call_id]
    if call.policy is Policy.ASK and not grants:
        raise CallTamperedError(agent.id, call_id, "it needs a grant and none was recorded")
    if any(grant.args_hash != recomputed for grant in grants):
        reason = "its arguments are not the ones the grant was given for"
        raise CallTamperedError(agent.id, call_id, reason)
    return called.args


def check_from(agent: Agent) -> int | None:
    """The version the call check of any of the agent's open calls reads from (the
    earliest), or None if it has none: where a worker's read starts when it takes it."""
    calls = agent.calls
    return min(map(_since, calls.values())) if calls else None


def _since(call: CallState) -> int:
    """The version this call's check reads from: the model's response that asked for it
    (or its ``ToolCalled`` event, for a call recorded without one)."""
    asked = call.asked_version
    return asked if asked is not None and asked < call.called_version else call.called_version


def _at(events: list[Aggregate.Event], version: int) -> Aggregate.Event | None:
    """The event at ``version``, if there is one: chained events are one per version,
    in order (:func:`~agentlog.domain.stored_tail.chained` checks it)."""
    index = version - events[0].originator_version if events else -1
    return events[index] if 0 <= index < len(events) else None


def _asked(response: Aggregate.Event, called: Agent.ToolCalled, encoded: bytes) -> bool:
    """Whether the model's response asked for this call with these very arguments (their
    canonical JSON, ``encoded``: the bytes the arguments' hash is taken of, compared as
    bytes instead of hashed once more)."""
    asked = [
        r.args
        for r in getattr(response, "tool_calls", ())
        if r.call_id == called.call_id and r.tool == called.tool
    ]
    return [canonical(dict(args)) for args in asked] == [encoded]


def _chained(log: AgentLog, agent: Agent, call_id: str, since: int) -> list[Aggregate.Event]:
    try:
        return log.chained_events(agent, since=since)
    except BrokenChainError as e:
        raise CallTamperedError(agent.id, call_id, f"broken chain at {e}") from None
