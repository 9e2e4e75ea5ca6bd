"""Whether a started call's claim is dead: its worker is known to be gone, or the call
outlived its timeout.

A ``ToolStarted`` event is a worker's claim on a call. While the claim lives, other
workers leave the call alone (``busy``). It is dead when the call has run longer than
its ``tool_timeout`` (the worker may be anywhere), or at once when the worker that made
it is *known* to be gone: the runtime asks a :data:`WorkerGone` (an adapter checks
whether a worker on this host still runs), which answers False whenever it cannot tell.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from agentlog.domain.agent import Agent
from agentlog.domain.application import AgentLog
from agentlog.domain.values import CallState

WorkerGone = Callable[[str, datetime], bool]
"""``gone(worker_id, claimed_at)``: True only if the worker that claimed a call at that
time is known to have stopped (False when it runs, or when nobody can tell)."""


def never_gone(worker_id: str, claimed_at: datetime) -> bool:
    """Nobody can tell: only the call's timeout ends a claim."""
    return False


def claim_is_dead(
    log: AgentLog, agent: Agent, call: CallState, now: datetime, gone: WorkerGone
) -> bool:
    """Whether nobody runs the started call any more."""
    if call.started_at is None:
        return True
    if now - call.started_at > timedelta(seconds=agent.config.tool_timeout):
        return True
    if gone is never_gone:
        return False  # no need to read the claim
    claimant = claimed_by(log, agent, call)
    return claimant is not None and gone(claimant, call.started_at)


def claimed_by(log: AgentLog, agent: Agent, call: CallState) -> str | None:
    """The worker id of the call's claim (its ``ToolStarted``), if that is its last event."""
    version = call.last_version
    for event in log.events_of(agent.id, after=version - 1, upto=version):
        if isinstance(event, Agent.ToolStarted):
            return event.worker_id
    return None
