"""Value objects of the agent domain: immutable, typed, JSON-exact."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Self
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, JsonValue, field_validator


class Frozen(BaseModel):
    """Base of value objects: immutable, no unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    def __deepcopy__(self, memo: dict[int, Any] | None = None) -> Self:
        """A value is never changed in place, so a copy of it is the value itself.

        Aggregates are deep-copied out of the workers' cache on every load; sharing their
        values (config, calls, usage) keeps that copy as cheap as the agent's own fields.
        """
        return self


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


DEFAULT_MAX_STEPS = 100
DEFAULT_MAX_TOKENS = 1_000_000
DEFAULT_MAX_EMPTY_ANSWERS = 3
DEFAULT_MAX_WALL_TIME = 24 * 3600.0
MAX_TEXT_CHARS = 8 * 1024 * 1024
"""The longest goal or message a person may give an agent (one event holds it)."""


class AgentConfig(Frozen):
    """How an agent is set up: its model, prompt, tool policies and limits.

    Every limit is finite: an agent whose model never finishes ends its task (recorded
    as ``LimitReached`` then ``TaskFailed``) instead of asking again forever.
    """

    model: str = "scripted"
    system_prompt: str = ""
    tool_policies: dict[str, Policy] = Field(default_factory=dict)
    default_policy: Policy | None = None
    """The policy of every tool not in ``tool_policies``; None: each tool's own policy."""
    max_steps: int = Field(default=DEFAULT_MAX_STEPS, ge=1)
    """Model responses the task may take in all."""
    max_tokens: int = Field(default=DEFAULT_MAX_TOKENS, ge=1)
    """Tokens (prompt + completion) the task may spend in all."""
    max_empty_answers: int = Field(default=DEFAULT_MAX_EMPTY_ANSWERS, ge=1)
    """Answers in a row that say nothing (no text, no calls) or were cut off (length)."""
    max_wall_time: float = Field(default=DEFAULT_MAX_WALL_TIME, gt=0)
    """Seconds from the task's start after which the model is not asked again."""
    max_tool_failures: int = Field(default=3, ge=1)
    """Tool failures in a row (errors, rejected calls, timeouts) before the task fails."""
    max_model_failures: int = Field(default=3, ge=1)
    """Model failures in a row (HTTP errors, timeouts, bad output) before the task fails."""
    tool_timeout: float = Field(default=60.0, gt=0)
    """Seconds a tool call may run; a started call older than this is taken to be dead."""
    compact_at_chars: int | None = Field(default=None, ge=1)
    """Compact the model's context before a model call once it has this many characters."""
    compact_at_tokens: int | None = Field(default=None, ge=1)
    """The same in tokens, estimated as characters / 4 (None: off)."""
    compact_model: str | None = None
    """The model spec that summarises when compacting (None: the agent's own model)."""

    @field_validator("max_steps", mode="before")
    @classmethod
    def _finite_steps(cls, value: object) -> object:
        # Configs recorded before every limit was finite stored ``null``: no agent is
        # allowed to ask its model forever, so those get the default.
        return DEFAULT_MAX_STEPS if value is None else value

    def policy_for(self, tool: str, tool_default: Policy = Policy.ASK) -> Policy:
        """The effective policy of a tool for this agent.

        Precedence: the agent's explicit policy for that tool, then the agent's
        ``default_policy``, then the tool's own declared policy (``tool_default``).
        """
        explicit = self.tool_policies.get(tool)
        if explicit is not None:
            return explicit
        return self.default_policy if self.default_policy is not None else tool_default


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
    """Where a forked agent came from: the parent, the version forked at, and the digest
    of the parent's event at that version (so the link can be checked against its log)."""

    parent_id: UUID
    parent_version: int = Field(ge=1)
    parent_digest: str = ""
    """The parent's chain head at ``parent_version`` ("" in lineages recorded before it)."""


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
    asked_version: int | None = None
    """The version of the model response that asked for the call, if one did."""
    approver: str | None = None
    started_at: datetime | None = None
    needs_person: bool = False
    """Its outcome is unknown and its tool cannot tell: only a person can settle it."""
