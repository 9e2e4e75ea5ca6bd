"""Value objects of the agent domain: immutable, typed, JSON-exact."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, JsonValue


class Frozen(BaseModel):
    """Base of value objects: immutable, no unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Status(StrEnum):
    """Where an agent is in its life."""

    IDLE = "idle"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        """True once nothing more may happen to the agent."""
        return self in (Status.COMPLETED, Status.FAILED, Status.CANCELLED)


class Phase(StrEnum):
    """What an agent is doing, at a glance (status refined by its open calls)."""

    IDLE = "idle"
    RUNNING = "running"
    WAITING = "waiting"  # for a person's permission decision
    BLOCKED = "blocked"  # a side effect's outcome is unknown: reconcile or decide
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class EffectClass(StrEnum):
    """What re-running a tool call does to the world."""

    PURE = "pure"
    IDEMPOTENT = "idempotent"
    SIDE_EFFECTING = "side_effecting"


class Policy(StrEnum):
    """Whether a tool may run without a person's grant."""

    ALLOW = "allow"
    ASK = "ask"
    DENY = "deny"


class CallStage(StrEnum):
    """Where an open tool call is in the side-effect protocol."""

    REQUESTED = "requested"
    AWAITING_PERMISSION = "awaiting_permission"
    GRANTED = "granted"
    STARTED = "started"
    OUTCOME_UNKNOWN = "outcome_unknown"


class AgentConfig(Frozen):
    """How an agent is set up: its model, prompt, tool policies and limits."""

    model: str = "scripted"
    system_prompt: str = ""
    tool_policies: dict[str, Policy] = Field(default_factory=dict)
    default_policy: Policy = Policy.ASK
    max_steps: int | None = Field(default=None, ge=1)
    """Model responses the task may take in all; None: no limit."""
    max_tool_failures: int = Field(default=3, ge=1)
    """Tool failures in a row (errors, rejected calls, timeouts) before the task fails."""
    max_model_failures: int = Field(default=3, ge=1)
    """Model failures in a row (HTTP errors, timeouts, bad output) before the task fails."""
    tool_timeout: float = Field(default=60.0, gt=0)
    """Seconds a tool call may run; a started call older than this is taken to be dead."""

    def policy_for(self, tool: str) -> Policy:
        """The policy configured for a tool, or the default."""
        return self.tool_policies.get(tool, self.default_policy)


class TokenUsage(Frozen):
    """Tokens a model call consumed."""

    prompt: int = Field(default=0, ge=0)
    completion: int = Field(default=0, ge=0)

    def __add__(self, other: TokenUsage) -> TokenUsage:
        return TokenUsage(
            prompt=self.prompt + other.prompt, completion=self.completion + other.completion
        )

    @property
    def total(self) -> int:
        """Prompt plus completion tokens."""
        return self.prompt + self.completion


class ToolCallRequest(Frozen):
    """A tool call as the model asked for it."""

    call_id: str = Field(min_length=1)
    tool: str = Field(min_length=1)
    args: dict[str, JsonValue] = Field(default_factory=dict)


class Lineage(Frozen):
    """Where a forked agent came from."""

    parent_id: UUID
    parent_version: int = Field(ge=1)


class CallState(Frozen):
    """The bounded record the agent keeps of one open tool call."""

    tool: str
    args_hash: str
    effect: EffectClass
    policy: Policy
    stage: CallStage
    attempt: int = 0
    idempotency_key: str = ""
    last_version: int
    called_version: int = 0
    """The version of the ToolCalled event (where the arguments are)."""
    approver: str | None = None
    started_at: datetime | None = None
