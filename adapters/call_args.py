"""The arguments of an agent's open tool calls, read from their ``ToolCalled`` events.

The agent's state keeps only a call's arguments hash (it stays bounded); a person about
to approve a call reads what it would run with here, from the log itself.
"""

from __future__ import annotations

from pydantic import JsonValue

from agentlog.domain import Agent, AgentLog, Aggregate


def open_call_args(log: AgentLog, agent: Aggregate) -> dict[str, dict[str, JsonValue]]:
    """Each open call's arguments by call id (calls whose event is not found are left
    out; an aggregate that is not an agent has none)."""
    found: dict[str, dict[str, JsonValue]] = {}
    if not isinstance(agent, Agent):
        return found
    for call_id, call in agent.calls.items():
        if call.called_version < 1:  # a state from before the version was kept
            continue
        version = call.called_version
        for event in log.events_of(agent.id, after=version - 1, upto=version):
            if isinstance(event, Agent.ToolCalled) and event.call_id == call_id:
                found[call_id] = event.args
    return found
