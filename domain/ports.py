"""Ports: what the runtime needs from the outside world, as Protocols.

Adapters implement them: models (a scripted one, an OpenAI-compatible one) and tools
(files in a sandbox, a calculator, a clock, or yours).
"""

from __future__ import annotations

from typing import Literal, Protocol, runtime_checkable
from uuid import UUID

from pydantic import BaseModel, Field, JsonValue

from agentlog.domain.values import EffectClass, Frozen, Policy, TokenUsage, ToolCallRequest

Role = Literal["system", "user", "assistant", "tool"]


class Message(Frozen):
    """One chat message of the model's context."""

    role: Role
    content: str
    tool_calls: tuple[ToolCallRequest, ...] = ()
    call_id: str | None = None


class ToolSpec(Frozen):
    """What the model is told about a tool: name, purpose, JSON schema of its arguments."""

    name: str
    description: str
    parameters: dict[str, JsonValue] = Field(default_factory=dict)


class Context(Frozen):
    """Everything a model decides from: the agent, its messages, the tools it may call."""

    agent_id: UUID
    goal: str
    messages: tuple[Message, ...]
    tools: tuple[ToolSpec, ...] = ()


class Decision(Frozen):
    """What the model decided: text and/or tool calls, or that the task is done."""

    text: str = ""
    tool_calls: tuple[ToolCallRequest, ...] = ()
    done: bool = False
    usage: TokenUsage = TokenUsage()
    finish_reason: str | None = None
    """Why the model stopped, as its API said (``length``: cut off); None if unknown."""


class ModelCallError(Exception):
    """A model could not answer (HTTP error, timeout, output that is not a decision).

    The runtime records it as an event the agent can react to; it never crashes a worker.
    """

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message


@runtime_checkable
class Model(Protocol):
    """Decides the agent's next thing from its context."""

    @property
    def name(self) -> str:
        """The model's id, recorded with every response."""
        ...

    def decide(self, context: Context) -> Decision:
        """The next decision; raises :class:`ModelCallError` when it cannot decide."""
        ...


@runtime_checkable
class Tool(Protocol):
    """Something the agent can do, typed, with an effect class and a permission policy."""

    @property
    def name(self) -> str:
        """How the model calls it."""
        ...

    @property
    def description(self) -> str:
        """What the model is told it does."""
        ...

    @property
    def args_model(self) -> type[BaseModel]:
        """The pydantic model its arguments must validate against."""
        ...

    @property
    def effect(self) -> EffectClass:
        """What re-running it does to the world."""
        ...

    @property
    def policy(self) -> Policy:
        """Whether it may run without a person's grant (config may override)."""
        ...

    def run(self, args: BaseModel, idempotency_key: str) -> JsonValue:
        """Do it. Raise to report a failure (it is recorded, not fatal)."""
        ...

    def reconcile(self, idempotency_key: str) -> bool | None:
        """For side-effecting tools: did the effect with this key happen? None: can't tell."""
        ...
