"""What the audit view records of an event, worked out once per event class.

Looking up a field an event does not have is slow on pydantic models (the lookup raises
inside), and the answer is the same for every event of a class: so the fields an audit
row reads, its decision and its outcome are found once per class.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agentlog.domain import Agent, Aggregate
from agentlog.projections.view import clean

_DECISIONS: tuple[tuple[type[Any], str], ...] = (
    (Agent.PermissionRequested, "requested"),
    (Agent.PermissionGranted, "granted"),
    (Agent.PermissionDenied, "denied"),
)
_OUTCOMES: tuple[tuple[type[Any], str], ...] = (
    (Agent.ToolSucceeded, "succeeded"),
    (Agent.ToolFailed, "failed"),
    (Agent.ToolOutcomeUnknown, "unknown"),
    (Agent.ToolCallRefused, "refused"),
)
_DETAILS = ("reason", "error", "goal", "result", "summary")  # the first text one is kept
_CLOSING = (Agent.PermissionDenied, Agent.ToolSucceeded, Agent.ToolFailed, Agent.ToolCallRefused)
"""Events after which the agent has no call with that id (until a new ToolCalled)."""


@dataclass(frozen=True)
class Shape:
    """What the audit row of an event of one class reads from it."""

    event_type: str
    called: bool  # a ToolCalled: the call's tool and arguments hash are its own
    rejected: bool  # a ToolCallRejected: a tool, never a recorded call
    closes: bool
    call_id: bool
    approver: bool
    details: tuple[str, ...]
    decision: str | None
    outcome: str | None

    def detail(self, event: Aggregate.Event) -> str | None:
        """The event's first non-empty text among reason, error, goal, result, summary."""
        for field in self.details:
            value = getattr(event, field)
            if isinstance(value, str) and value:
                return clean(value[:500])
        return None


_SHAPES: dict[type[Any], Shape] = {}


def shape_of(cls: type[Any]) -> Shape:
    """The shape of an event class (worked out on first use)."""
    shape = _SHAPES.get(cls)
    if shape is None:
        shape = _SHAPES[cls] = Shape(
            cls.__name__,
            issubclass(cls, Agent.ToolCalled),
            issubclass(cls, Agent.ToolCallRejected),
            issubclass(cls, _CLOSING),
            _has(cls, "call_id"),
            _has(cls, "approver"),
            tuple(f for f in _DETAILS if _has(cls, f)),
            _kind(cls, _DECISIONS),
            _kind(cls, _OUTCOMES),
        )
    return shape


def _has(cls: type[Any], name: str) -> bool:
    return name in getattr(cls, "model_fields", {}) or hasattr(cls, name)


def _kind(cls: type[Any], kinds: tuple[tuple[type[Any], str], ...]) -> str | None:
    return next((kind for kind_cls, kind in kinds if issubclass(cls, kind_cls)), None)
