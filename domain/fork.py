"""Forking: a new agent that starts where another agent was at some version.

The child is a new aggregate with its own id and its own hash chain (its ``Created`` is
its genesis). That event records the lineage (parent id, version, and the parent's chain
head there, so the link can be checked against the parent's log) and what the child
inherits: the parent's state at that version and the model's context there. The parent
is only read, never changed.

A fork point must leave no tool call in flight: a call recorded, asked for, claimed or
of unknown outcome at that version is refused (``ForkPointError``). Carrying it over
could run a side effect a second time, and the model's context would hold a call with
no result. Fork before the model asked for the calls, or after their outcomes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from agentlog.domain.agent import Agent
from agentlog.domain.errors import ForkPointError
from agentlog.domain.inheritance import Inheritance
from agentlog.domain.ports import Message
from agentlog.domain.values import Lineage


def check_fork_point(parent: Agent, context: Sequence[Message]) -> None:
    """Raise :class:`ForkPointError` if a tool call is in flight at the parent's version."""
    if parent.calls:
        stages = ", ".join(f"{cid} ({c.stage})" for cid, c in parent.calls.items())
        raise ForkPointError(parent.id, parent.version, f"tool calls without outcome: {stages}")
    answered = {m.call_id for m in context if m.role == "tool"}
    asked = [c.call_id for m in context for c in m.tool_calls if c.call_id not in answered]
    if asked:
        why = f"the model's calls {', '.join(asked)} are not recorded yet"
        raise ForkPointError(parent.id, parent.version, why)


def fork_of(
    parent: Agent,
    context: Sequence[Message],
    *,
    name: str | None = None,
    model: str | None = None,
    actor: str = "user",
) -> Agent:
    """A new agent (not saved yet) whose state equals ``parent``'s at its loaded version.

    ``context`` is the parent's model context there; ``model`` replaces the parent's
    model in the child's config. Fields a subclass adds to its ``Created`` event are
    taken from the parent's attributes of the same name.
    """
    check_fork_point(parent, context)
    cls = type(parent)
    lineage = Lineage(
        parent_id=parent.id, parent_version=parent.version, parent_digest=parent.head_hash
    )
    config = parent.config if model is None else parent.config.model_copy(update={"model": model})
    inherited = Inheritance(state=parent.inheritable_state(), context=tuple(context))
    extra: dict[str, Any] = {
        field: getattr(parent, field)
        for field in cls.Created.model_fields
        if field not in Agent.Created.model_fields and hasattr(parent, field)
    }
    return cls._create(
        cls.Created,
        name=name or f"{parent.name} (fork at v{parent.version})",
        config=config,
        lineage=lineage,
        inherited=inherited,
        actor=actor,
        **extra,
    )
