"""The Agent aggregate: an AI agent's life as a sequence of domain events.

State is bounded (status, goal, counters, open tool calls, chain head): the transcript
is not state, it lives in a projection. Rules are checked in the public commands;
``apply`` bodies only mutate and never raise, because on replay history is fact.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, JsonValue

from agentlog.domain.aggregate import Aggregate
from agentlog.domain.chain import GENESIS, args_hash
from agentlog.domain.errors import (
    AgentFinishedError,
    CompactionRangeError,
    DuplicateCallError,
    InvalidEventDataError,
    NoTaskRunningError,
    OpenCallsError,
    TaskAlreadyRunningError,
    TextTooLargeError,
)
from agentlog.domain.extras import KeepsExtra
from agentlog.domain.inheritance import IDENTITY, Inheritance
from agentlog.domain.tool_calls import ToolCallRules
from agentlog.domain.trusted import made
from agentlog.domain.values import (
    MAX_TEXT_CHARS,
    AgentConfig,
    CallStage,
    CallState,
    EffectClass,
    Lineage,
    Phase,
    Policy,
    Status,
    TokenUsage,
    ToolCallRequest,
)


class AgentState(BaseModel):
    """Every public attribute of an Agent: what snapshots store and replay reproduces."""

    model_config = ConfigDict(extra="forbid")

    name: str
    config: AgentConfig
    lineage: Lineage | None
    status: Status
    goal: str | None
    steps: int
    messages: int
    tokens: TokenUsage
    calls: dict[str, CallState]
    compacted_through: int
    last_error: str | None
    result: str | None
    head_hash: str
    tool_failures: int = 0
    model_failures: int = 0
    empty_answers: int = 0
    task_started_at: datetime | None = None


class Agent(Aggregate, ToolCallRules):
    """An AI agent whose record is the agent."""

    TOPIC: ClassVar[str] = "agentlog:Agent@1"
    State: ClassVar[type[BaseModel]] = AgentState
    SNAPSHOT_SCHEMA: ClassVar[int] = 3  # 2: called_version, started_at, failure counters
    # 3: empty_answers, task_started_at, needs_person, asked_version

    class Event(Aggregate.Event):
        """Base class of the Agent's events."""

    class Created(KeepsExtra, Aggregate.Created, Event):
        """The agent came into being, with its configuration (and lineage, if forked)."""

        TOPIC: ClassVar[str] = "agentlog:Agent.Created@1"
        name: str
        config: AgentConfig
        lineage: Lineage | None = None
        inherited: Inheritance | None = None
        """A fork's start: its parent's state and model context at the version forked at."""

        def apply(self, agent: Agent) -> None:
            if self.inherited is not None:
                agent.inherit(self.inherited.state)

    class TaskStarted(KeepsExtra, Event):
        """Someone gave the agent a goal."""

        TOPIC: ClassVar[str] = "agentlog:Agent.TaskStarted@1"
        goal: str

        def apply(self, agent: Agent) -> None:
            agent.status, agent.goal = Status.RUNNING, self.goal
            agent.messages += 1
            agent.task_started_at = self.timestamp

    class UserMessageReceived(KeepsExtra, Event):
        """A person said something to the agent."""

        TOPIC: ClassVar[str] = "agentlog:Agent.UserMessageReceived@1"
        text: str

        def apply(self, agent: Agent) -> None:
            agent.messages += 1

    class ModelResponded(KeepsExtra, Event):
        """The model answered: text, requested tool calls, model id, token usage."""

        TOPIC: ClassVar[str] = "agentlog:Agent.ModelResponded@1"
        text: str
        tool_calls: tuple[ToolCallRequest, ...] = ()
        model: str
        usage: TokenUsage = TokenUsage()
        finish_reason: str | None = None
        """Why the model stopped (``stop``, ``tool_calls``, ``length``...), if it said."""

        def apply(self, agent: Agent) -> None:
            agent.steps += 1
            agent.messages += 1
            agent.tokens = _sum(agent.tokens, self.usage)
            agent.model_failures = 0
            agent.empty_answers = agent.empty_answers + 1 if self.is_empty else 0

        @property
        def is_empty(self) -> bool:
            """An answer that moves nothing: cut off (length), or no text and no calls."""
            if self.tool_calls:
                return False
            return self.finish_reason == "length" or not self.text.strip()

    class ModelFailed(Event):
        """The model could not answer: HTTP error, timeout, output that is no decision."""

        TOPIC: ClassVar[str] = "agentlog:Agent.ModelFailed@1"
        model: str
        kind: str
        error: str

        def apply(self, agent: Agent) -> None:
            agent.model_failures += 1
            agent.last_error = f"{self.kind}: {self.error}"

    class ToolCallRejected(Event):
        """The model asked for a call that cannot be made: unknown tool, invalid arguments."""

        TOPIC: ClassVar[str] = "agentlog:Agent.ToolCallRejected@1"
        call_id: str
        tool: str
        reason: str
        args: dict[str, JsonValue] | None = None
        """The arguments the model gave (None in events recorded before they were kept;
        stored only when given, so those are stored, and hashed, as before)."""

        def apply(self, agent: Agent) -> None:
            agent.tool_failures += 1
            agent.messages += 1
            agent.last_error = self.reason

        def stored_state(self) -> dict[str, JsonValue]:
            """The JSON state the mapper stores, without ``args`` when there are none."""
            state = super().stored_state()
            if self.args is None:
                del state["args"]
            return state

    class LimitReached(Event):
        """A limit stopped the run (max steps per run) or the task (failures, budget)."""

        TOPIC: ClassVar[str] = "agentlog:Agent.LimitReached@1"
        limit: str
        value: float

    class ToolCalled(Event):
        """A tool call was recorded, before anything runs."""

        TOPIC: ClassVar[str] = "agentlog:Agent.ToolCalled@1"
        call_id: str
        tool: str
        args: dict[str, JsonValue]
        args_hash: str
        effect: EffectClass
        policy: Policy

        def apply(self, agent: Agent) -> None:
            agent.calls = agent.calls | {self.call_id: _requested(self)}

    class PermissionRequested(Event):
        """A call whose policy is 'ask' waits for a person."""

        TOPIC: ClassVar[str] = "agentlog:Agent.PermissionRequested@1"
        call_id: str
        args_hash: str

        def apply(self, agent: Agent) -> None:
            agent.move_call(self, stage=CallStage.AWAITING_PERMISSION)

    class PermissionGranted(Event):
        """A person allowed this exact call (bound to its arguments' hash)."""

        TOPIC: ClassVar[str] = "agentlog:Agent.PermissionGranted@1"
        call_id: str
        args_hash: str
        approver: str

        def apply(self, agent: Agent) -> None:
            agent.move_call(self, stage=CallStage.GRANTED, approver=self.approver)

    class PermissionDenied(Event):
        """A person refused this call; it will never run."""

        TOPIC: ClassVar[str] = "agentlog:Agent.PermissionDenied@1"
        call_id: str
        args_hash: str
        approver: str
        reason: str = ""

        def apply(self, agent: Agent) -> None:
            agent.close_call(self.call_id)

    class ToolStarted(Event):
        """A worker is about to run the call (saved before the tool runs)."""

        TOPIC: ClassVar[str] = "agentlog:Agent.ToolStarted@1"
        call_id: str
        attempt: int
        worker_id: str
        idempotency_key: str

        def apply(self, agent: Agent) -> None:
            agent.move_call(
                self,
                stage=CallStage.STARTED,
                attempt=self.attempt,
                idempotency_key=self.idempotency_key,
                started_at=self.timestamp,
            )

    class ToolSucceeded(KeepsExtra, Event):
        """The call ran and returned a result."""

        TOPIC: ClassVar[str] = "agentlog:Agent.ToolSucceeded@1"
        call_id: str
        result: JsonValue

        def apply(self, agent: Agent) -> None:
            agent.close_call(self.call_id)
            agent.messages += 1
            agent.tool_failures = 0

    class ToolFailed(Event):
        """The call ran and raised an error (or its worker was stopped while it ran)."""

        TOPIC: ClassVar[str] = "agentlog:Agent.ToolFailed@1"
        call_id: str
        error: str
        interrupted: bool = False
        """The worker was told to stop while the call ran (the error is ``interrupted``):
        no tool failed, so it is no failure toward ``max_tool_failures``. Stored only
        when true, so other failures are stored, and hashed, as before it existed."""

        def apply(self, agent: Agent) -> None:
            agent.close_call(self.call_id)
            agent.messages += 1
            if not self.interrupted:
                agent.tool_failures += 1
                agent.last_error = self.error

        def stored_state(self) -> dict[str, JsonValue]:
            """The JSON state the mapper stores, without ``interrupted`` when false."""
            state = super().stored_state()
            if not self.interrupted:
                del state["interrupted"]
            return state

    class ToolCallRefused(Event):
        """The runtime would not run a call: its arguments or the events it rests on do
        not match their hashes (edited after they were recorded)."""

        TOPIC: ClassVar[str] = "agentlog:Agent.ToolCallRefused@1"
        call_id: str
        reason: str

        def apply(self, agent: Agent) -> None:
            agent.close_call(self.call_id)
            agent.messages += 1
            agent.tool_failures += 1
            agent.last_error = self.reason

    class OutcomeUndecided(Event):
        """The tool could not tell whether an unknown outcome happened: a person decides."""

        TOPIC: ClassVar[str] = "agentlog:Agent.OutcomeUndecided@1"
        call_id: str
        reason: str

        def apply(self, agent: Agent) -> None:
            agent.move_call(self, needs_person=True)

    class ToolOutcomeUnknown(Event):
        """Found on resume: a started call left no outcome; it must not be re-run blindly."""

        TOPIC: ClassVar[str] = "agentlog:Agent.ToolOutcomeUnknown@1"
        call_id: str
        attempt: int

        def apply(self, agent: Agent) -> None:
            agent.move_call(self, stage=CallStage.OUTCOME_UNKNOWN)

    class ContextCompacted(Event):
        """Everything up to a version was summarised for the model's context."""

        TOPIC: ClassVar[str] = "agentlog:Agent.ContextCompacted@1"
        through_version: int
        summary: str
        summarizer: str

        def apply(self, agent: Agent) -> None:
            agent.compacted_through = self.through_version

    class TaskCompleted(Event):
        """The task is done."""

        TOPIC: ClassVar[str] = "agentlog:Agent.TaskCompleted@1"
        result: str = ""

        def apply(self, agent: Agent) -> None:
            agent.status, agent.result = Status.COMPLETED, self.result

    class TaskFailed(Event):
        """The task cannot be finished."""

        TOPIC: ClassVar[str] = "agentlog:Agent.TaskFailed@1"
        reason: str

        def apply(self, agent: Agent) -> None:
            agent.status, agent.result, agent.last_error = Status.FAILED, self.reason, self.reason

    class TaskCancelled(Event):
        """Someone stopped the task."""

        TOPIC: ClassVar[str] = "agentlog:Agent.TaskCancelled@1"
        reason: str = ""

        def apply(self, agent: Agent) -> None:
            agent.status, agent.result = Status.CANCELLED, self.reason

    def __init__(
        self,
        name: str,
        config: AgentConfig,
        lineage: Lineage | None = None,
        actor: str = "user",
        caused_by: int | None = None,
        *,
        extra: dict[str, JsonValue] | None = None,
    ) -> None:
        # actor, caused_by and extra belong to the Created event, not to the agent's state.
        self.name, self.config, self.lineage = name, config, lineage
        self.status = Status.IDLE
        self.goal: str | None = None
        self.result: str | None = None
        self.last_error: str | None = None
        self.steps, self.messages, self.compacted_through = 0, 0, 0
        self.tokens = TokenUsage()
        self.calls: dict[str, CallState] = {}
        self.tool_failures, self.model_failures, self.empty_answers = 0, 0, 0
        self.task_started_at: datetime | None = None

    @classmethod
    def create(
        cls,
        name: str,
        config: AgentConfig | None = None,
        *,
        lineage: Lineage | None = None,
        actor: str = "user",
        extra: dict[str, JsonValue] | None = None,
    ) -> Agent:
        """A new agent, recorded as created by ``actor`` (``extra``: see ``KeepsExtra``)."""
        return cls(
            name=name, config=config or AgentConfig(), lineage=lineage, actor=actor, extra=extra
        )

    def start_task(
        self, goal: str, *, actor: str = "user", extra: dict[str, JsonValue] | None = None
    ) -> None:
        """Give the agent its goal."""
        self.check_not_finished()
        if self.status is Status.RUNNING:
            raise TaskAlreadyRunningError(self.id, self.goal or "")
        self.check_text("goal", goal)
        self.trigger_event(self.TaskStarted, goal=goal, actor=actor, extra=extra or {})

    def receive_user_message(
        self, text: str, *, actor: str = "user", extra: dict[str, JsonValue] | None = None
    ) -> None:
        """Record a message a person sent the agent."""
        self.check_not_finished()
        self.check_text("message", text)
        self.trigger_event(self.UserMessageReceived, text=text, actor=actor, extra=extra or {})

    def record_model_response(
        self,
        text: str,
        *,
        model: str,
        tool_calls: tuple[ToolCallRequest, ...] = (),
        usage: TokenUsage | None = None,
        finish_reason: str | None = None,
        caused_by: int | None = None,
        actor: str | None = None,
        extra: dict[str, JsonValue] | None = None,
    ) -> None:
        """Record what the model said and which tools it asked for (``actor``: the model,
        unless the response was recorded by someone else, e.g. an import)."""
        self.check_running()
        seen = set(self.calls)
        for call in tool_calls:
            if call.call_id in seen:
                raise DuplicateCallError(self.id, call.call_id)
            seen.add(call.call_id)
        self.trigger_event(
            self.ModelResponded,
            text=text,
            tool_calls=tool_calls,
            model=model,
            usage=usage or TokenUsage(),
            finish_reason=finish_reason,
            actor=actor or f"model:{model}",
            caused_by=caused_by,
            extra=extra or {},
        )

    def call_tool(
        self,
        request: ToolCallRequest,
        *,
        effect: EffectClass,
        policy: Policy | None = None,
        actor: str | None = None,
        caused_by: int | None = None,
    ) -> None:
        """Record a tool call before anything runs; its policy comes from config if not given.

        ``caused_by`` is the version of the model response that asked for it.
        """
        self.check_running()
        if request.call_id in self.calls:
            raise DuplicateCallError(self.id, request.call_id)
        try:
            digest = args_hash(request.args)
        except (ValueError, TypeError) as e:  # NaN, a set...: not JSON, so not hashable
            raise InvalidEventDataError(self.id, "ToolCalled", str(e)) from e
        self.trigger_event(
            self.ToolCalled,
            call_id=request.call_id,
            tool=request.tool,
            args=request.args,
            args_hash=digest,
            effect=effect,
            policy=policy or self.config.policy_for(request.tool),
            actor=actor or self.model_actor,
            caused_by=caused_by,
        )

    def record_model_failure(self, kind: str, error: str, *, model: str) -> None:
        """Record that the model could not answer (the agent can react to it)."""
        self.check_running()
        self.trigger_event(
            self.ModelFailed, model=model, kind=kind, error=error, actor=f"model:{model}"
        )

    def reject_tool_call(
        self, request: ToolCallRequest, reason: str, *, caused_by: int | None = None
    ) -> None:
        """Record that a requested call cannot be made; the model sees why."""
        self.check_running()
        self.trigger_event(
            self.ToolCallRejected,
            call_id=request.call_id,
            tool=request.tool,
            reason=reason,
            args=request.args,
            actor="runtime",
            caused_by=caused_by,
        )

    def reach_limit(self, limit: str, value: float, *, actor: str = "runtime") -> None:
        """Record that a limit stopped the run or the task."""
        self.check_running()
        self.trigger_event(self.LimitReached, limit=limit, value=value, actor=actor)

    def compact(self, through_version: int, summary: str, *, summarizer: str) -> None:
        """Record that the context up to ``through_version`` is summarised."""
        self.check_not_finished()
        if not self.compacted_through < through_version <= self.version:
            raise CompactionRangeError(
                self.id, through_version, self.compacted_through, self.version
            )
        self.trigger_event(
            self.ContextCompacted,
            through_version=through_version,
            summary=summary,
            summarizer=summarizer,
            actor=summarizer,
        )

    def complete(self, result: str = "", *, actor: str | None = None) -> None:
        """Finish the task; no tool call may still be open."""
        self.check_running()
        if self.calls:
            raise OpenCallsError(self.id, tuple(self.calls))
        self.trigger_event(self.TaskCompleted, result=result, actor=actor or self.model_actor)

    @property
    def phase(self) -> Phase:
        """Running, or waiting for a person, or blocked on an unknown outcome, or over."""
        if self.status is not Status.RUNNING:
            return Phase(self.status.value)
        if self.has_work:
            return Phase.RUNNING
        if self.awaiting_permission:
            return Phase.WAITING
        return Phase.BLOCKED  # only calls that need a person are left

    @property
    def has_work(self) -> bool:
        """Whether a worker can do something now (what the runnable view lists)."""
        if self.status is not Status.RUNNING:
            return False
        return not self.calls or any(self.may_proceed(call) for call in self.calls.values())

    @property
    def unsettled(self) -> bool:
        """Whether a call's outcome is unknown (being reconciled, or waiting for a person)."""
        return any(call.stage is CallStage.OUTCOME_UNKNOWN for call in self.calls.values())

    def may_proceed(self, call: CallState) -> bool:
        """Whether a worker may take the call's next step now.

        While an outcome is unknown, side-effecting calls do not start (their effects
        may interact with the one nobody knows about); pure and idempotent ones go on.
        """
        if call.stage is CallStage.AWAITING_PERMISSION:
            return False
        if call.stage is CallStage.OUTCOME_UNKNOWN:
            return not call.needs_person
        if call.stage is CallStage.STARTED:
            return True  # running elsewhere, or dead: a worker looks
        would_run = call.stage is CallStage.GRANTED or call.policy is Policy.ALLOW
        blocked = would_run and call.effect is EffectClass.SIDE_EFFECTING and self.unsettled
        return not blocked

    @property
    def awaiting_permission(self) -> tuple[str, ...]:
        """Ids of the calls waiting for a person's decision."""
        return tuple(
            cid for cid, c in self.calls.items() if c.stage is CallStage.AWAITING_PERMISSION
        )

    @property
    def model_actor(self) -> str:
        """The actor name of the agent's configured model."""
        return f"model:{self.config.model}"

    def fail(self, reason: str, *, actor: str = "worker") -> None:
        """Give up on the task."""
        self.check_not_finished()
        self.trigger_event(self.TaskFailed, reason=reason, actor=actor)

    def cancel(self, reason: str = "", *, actor: str = "user") -> None:
        """Stop the task at once."""
        self.check_not_finished()
        self.trigger_event(self.TaskCancelled, reason=reason, actor=actor)

    def check_not_finished(self) -> None:
        """Raise if the agent's task is over."""
        if self.status.is_final:
            raise AgentFinishedError(self.id, self.status)

    def check_text(self, what: str, text: str) -> None:
        """Raise if a person's text is longer than an event may hold."""
        if len(text) > MAX_TEXT_CHARS:
            raise TextTooLargeError(self.id, what, len(text), MAX_TEXT_CHARS)

    def check_running(self) -> None:
        """Raise unless a task is running."""
        self.check_not_finished()
        if self.status is not Status.RUNNING:
            raise NoTaskRunningError(self.id, self.status)

    def inheritable_state(self) -> dict[str, JsonValue]:
        """What a fork of this agent at its loaded version inherits (as JSON)."""
        state = {k: v for k, v in self.snapshot_state().items() if k not in IDENTITY}
        return {k: v for k, v in state.items() if not k.startswith("_")}

    def inherit(self, state: dict[str, JsonValue]) -> None:
        """Take a parent's state, keeping this agent's identity (``apply`` bodies only)."""
        own = {"name": self.name, "config": self.config, "lineage": self.lineage}
        full = dict(state) | own | {"compacted_through": 0, "head_hash": GENESIS}
        for key, value in type(self).validated_state(full).items():
            if key not in IDENTITY:
                setattr(self, key, value)

    def move_call(self, event: Any, **changes: Any) -> None:
        """Advance an open call's record (used by ``apply`` bodies only)."""
        call = self.calls[event.call_id]
        changes["last_version"] = event.originator_version
        self.calls = self.calls | {event.call_id: call.model_copy(update=changes)}

    def close_call(self, call_id: str) -> None:
        """Forget a finished call: state stays bounded (used by ``apply`` bodies only)."""
        self.calls = {k: v for k, v in self.calls.items() if k != call_id}


_CALL_GIVEN = frozenset(
    {"tool", "args_hash", "effect", "policy", "stage", "last_version", "called_version"}
    | {"asked_version"}
)
_USAGE_GIVEN = frozenset(("prompt", "completion"))


def _requested(event: Agent.ToolCalled) -> CallState:
    """``CallState(tool=..., stage=REQUESTED, ...)`` of a recorded call, made from its
    event's fields (validated with the event) without validating them again."""
    version = event.originator_version
    fields = {
        "tool": event.tool,
        "args_hash": event.args_hash,
        "effect": event.effect,
        "policy": event.policy,
        "stage": CallStage.REQUESTED,
        "attempt": 0,
        "idempotency_key": "",
        "last_version": version,
        "called_version": version,
        "asked_version": event.caused_by,
        "approver": None,
        "started_at": None,
        "needs_person": False,
    }
    return made(CallState, fields, _CALL_GIVEN)


def _sum(tokens: TokenUsage, usage: TokenUsage) -> TokenUsage:
    """``tokens + usage``: two validated counts (ints >= 0) add up to valid counts, so
    the sum is made without validating it (and a response that used none adds none)."""
    if not (usage.prompt or usage.completion):
        return tokens
    fields = {
        "prompt": tokens.prompt + usage.prompt,
        "completion": tokens.completion + usage.completion,
    }
    return made(TokenUsage, fields, _USAGE_GIVEN)
