"""What one step of the runtime did: a :class:`Step` of some :class:`StepKind`."""

from __future__ import annotations

from enum import StrEnum
from uuid import UUID

from agentlog.domain.values import Frozen

__all__ = ["STOPS", "Step", "StepKind"]


class StepKind(StrEnum):
    """What one call of ``advance`` did."""

    MODEL = "model"  # asked the model; recorded its response (and calls)
    MODEL_FAILED = "model_failed"  # the model could not answer; recorded
    TOOL = "tool"  # ran a tool call; recorded its result or error
    ASKED = "asked"  # asked a person for permission
    DENIED = "denied"  # a call was denied by policy
    RECONCILED = "reconciled"  # settled a call whose outcome was unknown
    UNDECIDED = "undecided"  # the tool cannot tell an unknown outcome: left to a person
    REFUSED = "refused"  # a call's arguments failed their hashes: recorded, never run
    UNKNOWN = "unknown"  # found a dead side-effecting call: outcome recorded as unknown
    LIMIT = "limit"  # a limit ended the task
    WAITING = "waiting"  # nothing to do until a person decides
    BLOCKED = "blocked"  # an unknown outcome needs a person
    BUSY = "busy"  # another worker is running a call of this agent
    FINISHED = "finished"  # the task is over (or was never started)
    INTERRUPTED = "interrupted"  # the worker was told to stop: nothing more was started


STOPS = {
    StepKind.WAITING,
    StepKind.BLOCKED,
    StepKind.BUSY,
    StepKind.FINISHED,
    StepKind.INTERRUPTED,
}


class Step(Frozen):
    """The outcome of one ``advance``."""

    kind: StepKind
    agent_id: UUID
    version: int
    detail: str = ""

    @property
    def progressed(self) -> bool:
        """Whether the step recorded something (else the agent waits for someone)."""
        return self.kind not in STOPS
