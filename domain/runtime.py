"""Advancing an agent by one step: load, decide the single next thing, record, save.

Every start is a recovery: the same decision procedure handles a fresh agent and one
whose last worker was killed mid-tool. The order inside a step is what makes tool side
effects happen at most once: a call is recorded as requested before anything runs, a
call under policy 'ask' waits for a grant bound to its arguments, and a call is saved
as started before its tool runs. A started call found later without an outcome is
handled by its effect class: pure and idempotent calls run again with the same
idempotency key; a side-effecting call is never re-run blindly: its outcome is recorded
as unknown and the tool's ``reconcile`` (or a person) decides.

A claim (``ToolStarted``) ends when the call outlives its timeout, or at once when its
worker is known to be gone (``domain/claims.py``). A worker told to stop (``interrupt``)
starts nothing more: a pure or idempotent call it is running is recorded as failed with
the error ``interrupted`` (the model may ask for it again); a side-effecting one is left
as it is, started, for the next worker to settle as an unknown outcome.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Protocol
from uuid import UUID

from eventsourcing.persistence import IntegrityError, InterfaceError, OperationalError
from pydantic import ValidationError

from agentlog.domain.agent import Agent
from agentlog.domain.aggregate import Aggregate
from agentlog.domain.application import AgentLog, require_agent
from agentlog.domain.call_check import checked_args
from agentlog.domain.claims import WorkerGone, claim_is_dead, never_gone
from agentlog.domain.compaction import due, summarize
from agentlog.domain.errors import AgentError, CallTamperedError, SummaryFailedError
from agentlog.domain.limits import limit_reached
from agentlog.domain.messages import TranscriptBuilder
from agentlog.domain.ports import Context, Message, Model, ModelCallError, Tool, ToolSpec
from agentlog.domain.tool_runner import Outcome, run_tool, short_errors, still_running, tool_spec
from agentlog.domain.values import (
    CallStage,
    CallState,
    EffectClass,
    Frozen,
    Policy,
    ToolCallRequest,
)

RACE_RETRIES = 5
log = logging.getLogger(__name__)

__all__ = [
    "LogTranscript",
    "Outcome",
    "Runtime",
    "Step",
    "StepKind",
    "TranscriptSource",
    "tool_spec",
]


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
Patience = Callable[[Exception], bool]
"""Called when the store cannot be reached while an outcome waits to be recorded: waits,
and says whether to try again (False: give up, the claim is left to the next worker)."""


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


class TranscriptSource(Protocol):
    """Where the model's messages come from (the transcript view, or the log)."""

    def messages(self, agent: Agent) -> list[Message]:
        """The agent's messages as of its current version."""
        ...


class LogTranscript:
    """Messages read from the log: the system prompt, the latest compaction's summary and
    the events after what it covers. O(context), never O(history); no view needed.

    With ``cache_size``, the contexts of the agents seen last are kept, and the next call
    for the same agent reads only the events after the cached version (the log is
    append-only, so what was read stays true); a new compaction starts afresh.
    """

    def __init__(self, log: AgentLog, cache_size: int = 0) -> None:
        self.log = log
        self.cache_size = cache_size
        self._cache: OrderedDict[UUID, tuple[int, int, TranscriptBuilder]] = OrderedDict()
        self._lock = threading.Lock()  # a worker's turn threads share the cache

    def messages(self, agent: Agent) -> list[Message]:
        """The agent's messages as of its loaded version."""
        with self._lock:  # taken out while it is read on: one thread per agent uses it
            covered, cached = agent.compacted_through, self._cache.pop(agent.id, None)
        if cached is not None and cached[0] == covered and cached[1] <= agent.version:
            builder = cached[2].apply(
                self.log.recent_events(agent.id, after=cached[1], upto=agent.version)
            )
        else:
            builder = TranscriptBuilder().apply(self._events(agent))
        if self.cache_size > 0:
            with self._lock:
                self._cache[agent.id] = (covered, agent.version, builder)
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        return builder.messages()

    def _events(self, agent: Agent) -> Iterable[Aggregate.Event]:
        return self.log.context_events(agent)


class Runtime:
    """Advances agents one step at a time with a model and tools; stateless between steps."""

    def __init__(
        self,
        log: AgentLog,
        model: Model,
        tools: Mapping[str, Tool],
        *,
        worker_id: str,
        transcripts: TranscriptSource | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        interrupt: threading.Event | None = None,
        gone: WorkerGone = never_gone,
        patience: Patience = lambda error: False,
        summarizer: Model | None = None,
    ) -> None:
        self.log, self.model, self.tools, self.worker_id = log, model, dict(tools), worker_id
        self.transcripts = transcripts or LogTranscript(log)
        self.now = now
        self.interrupt = interrupt or threading.Event()
        self.gone, self.patience = gone, patience
        self.summarizer = summarizer or model
        """Who summarises when an agent's context passes its compaction size."""

    def advance(self, agent_id: UUID) -> Step:
        """Load the agent, do the single next thing, save. Losing a race re-decides."""
        for _ in range(RACE_RETRIES):
            agent = require_agent(self.log.take(agent_id))
            if self.interrupt.is_set():
                return self._step(agent, StepKind.INTERRUPTED, "stopped before the step")
            try:
                return self._next(agent)
            except IntegrityError:
                continue  # another worker saved first: reload and decide again
        return self._step(self.log.get(agent_id), StepKind.BUSY, "lost too many races")

    def run(
        self,
        agent_id: UUID,
        max_steps: int,
        on_step: Callable[[Step], None] | None = None,
        *,
        record_limit: bool = True,
    ) -> Step:
        """Advance until the agent waits, is blocked, finishes, or ``max_steps`` were taken.

        With ``record_limit``, stopping after ``max_steps`` is recorded (the task goes on);
        a worker taking turns between agents passes False: a turn is not a limit.
        """
        step = self._step(self.log.get(agent_id), StepKind.FINISHED)
        for _ in range(max_steps):
            step = self.advance(agent_id)
            if on_step:
                on_step(step)
            if not step.progressed:
                return step
        if not record_limit:
            return step
        for _ in range(RACE_RETRIES):
            agent = self.log.get(agent_id)
            if agent.status.value != "running":
                return step
            agent.reach_limit("max_steps_per_run", max_steps, actor=self.actor)
            try:
                self.log.save(agent)
            except IntegrityError:
                continue  # another worker moved the agent on: look again
            return self._step(agent, StepKind.LIMIT, f"run stopped after {max_steps} steps")
        return step

    @functools.cached_property
    def tool_specs(self) -> tuple[ToolSpec, ...]:
        """What the model is told about the tools (their JSON schemas, built once)."""
        return tuple(tool_spec(t) for t in self.tools.values())

    @property
    def actor(self) -> str:
        """How this worker appears in the log."""
        return f"worker:{self.worker_id}"

    def _next(self, agent: Agent) -> Step:
        if agent.status.value != "running":
            return self._step(agent, StepKind.FINISHED, agent.status.value)
        for call_id, call in agent.calls.items():
            if not agent.may_proceed(call):
                continue  # waits for a person, or for an unknown outcome to be settled
            step = self._handle_call(agent, call_id, call)
            if step is not None:
                return step
        if not agent.calls:
            return self._ask_model(agent)
        stages = {c.stage for c in agent.calls.values()}
        if CallStage.STARTED in stages:
            return self._step(agent, StepKind.BUSY, "a tool call is running elsewhere")
        if CallStage.AWAITING_PERMISSION in stages:
            return self._step(agent, StepKind.WAITING, ", ".join(agent.awaiting_permission))
        return self._step(agent, StepKind.BLOCKED, "a side effect's outcome needs a person")

    def _handle_call(self, agent: Agent, call_id: str, call: CallState) -> Step | None:
        if call.stage is CallStage.REQUESTED:
            return self._requested(agent, call_id, call)
        if call.stage is CallStage.GRANTED:
            return self._run_call(agent, call_id, call)
        if call.stage is CallStage.STARTED and claim_is_dead(
            self.log, agent, call, self.now(), self.gone
        ):
            return self._recover(agent, call_id, call)
        if call.stage is CallStage.OUTCOME_UNKNOWN:
            return self._reconcile(agent, call_id, call)
        return None

    def _requested(self, agent: Agent, call_id: str, call: CallState) -> Step:
        if call.policy is Policy.DENY:
            agent.deny(call_id, approver="policy", reason=f"{call.tool} is denied by policy")
            self.log.save(agent)
            return self._step(agent, StepKind.DENIED, call_id)
        if call.policy is Policy.ASK:
            agent.request_permission(call_id, actor=self.actor)
            self.log.save(agent)
            return self._step(agent, StepKind.ASKED, call_id)
        return self._run_call(agent, call_id, call)

    def _recover(self, agent: Agent, call_id: str, call: CallState) -> Step:
        if call.effect is EffectClass.SIDE_EFFECTING:
            agent.mark_outcome_unknown(call_id, actor=self.actor)
            self.log.save(agent)
            return self._step(agent, StepKind.UNKNOWN, call_id)
        return self._run_call(agent, call_id, call)  # same idempotency key, next attempt

    def _reconcile(self, agent: Agent, call_id: str, call: CallState) -> Step | None:
        if still_running(call.idempotency_key):  # timed out here, but its thread goes on
            return self._step(agent, StepKind.BUSY, f"{call_id} is still running after its timeout")
        tool = self.tools.get(call.tool)
        happened = tool.reconcile(call.idempotency_key) if tool is not None else None
        if happened is None:  # a person decides (agentlog settle ...); other calls go on
            why = "no such tool here" if tool is None else f"{call.tool} cannot tell"
            agent.leave_to_person(call_id, why, actor=self.actor)
            self.log.save(agent)
            return self._step(agent, StepKind.UNDECIDED, f"{call_id}: {why}")
        if happened:
            agent.succeed(call_id, {"reconciled": True}, actor=self.actor)
            self.log.save(agent)
            return self._step(agent, StepKind.RECONCILED, f"{call_id}: it had happened")
        return self._run_call(agent, call_id, call)  # it did not happen: run it now

    def _run_call(self, agent: Agent, call_id: str, call: CallState) -> Step:
        tool = self.tools.get(call.tool)
        try:
            args = checked_args(self.log, agent, call_id, call)
        except CallTamperedError as e:
            return self._refuse(agent, e)
        if self.interrupt.is_set():  # told to stop: a call not started is not started
            return self._step(agent, StepKind.INTERRUPTED, f"{call_id} not started")
        agent.start_tool(call_id, worker_id=self.worker_id)
        self.log.save(agent)  # saved before the tool runs: this is the claim on the call
        agent_id, key = agent.id, agent.calls[call_id].idempotency_key
        timeout = agent.config.tool_timeout
        outcome = run_tool(tool, call.tool, args, key, timeout, interrupt=self.interrupt)
        if outcome.interrupted and call.effect is EffectClass.SIDE_EFFECTING:
            detail = f"{call_id} left started: the next worker settles its outcome"
            return self._step(agent, StepKind.INTERRUPTED, detail)
        self.log.keep(agent)  # done with it: the outcome is recorded on a fresh take
        return self._record_outcome(agent_id, call_id, call.effect, outcome)

    def _refuse(self, agent: Agent, error: CallTamperedError) -> Step:
        log.warning("%s", error)
        agent.refuse(error.call_id, error.reason, actor=self.actor)
        self.log.save(agent)
        detail = f"{error.call_id}: {error.reason}"
        return self._limit(agent) or self._step(agent, StepKind.REFUSED, detail)

    def _record_outcome(
        self, agent_id: UUID, call_id: str, effect: EffectClass, outcome: Outcome
    ) -> Step:
        """Record what the tool gave; while the store is out of reach, wait for it
        (``patience``): the tool ran, and its outcome must not be lost."""
        while True:
            try:
                return self._try_record_outcome(agent_id, call_id, effect, outcome)
            except (OperationalError, InterfaceError) as e:
                if not self.patience(e):
                    raise

    def _try_record_outcome(
        self, agent_id: UUID, call_id: str, effect: EffectClass, outcome: Outcome
    ) -> Step:
        kind = StepKind.INTERRUPTED if outcome.interrupted else StepKind.TOOL
        for _ in range(RACE_RETRIES):  # re-record the result, never re-run the tool
            agent = require_agent(self.log.take(agent_id))
            try:
                if outcome.timed_out and effect is EffectClass.SIDE_EFFECTING:
                    agent.mark_outcome_unknown(call_id, actor=self.actor)
                elif outcome.error is not None:
                    agent.fail_tool(call_id, outcome.error, actor=self.actor)
                else:
                    agent.succeed(call_id, outcome.result, actor=self.actor)
                self.log.save(agent)
            except IntegrityError:
                continue
            except AgentError as e:  # another worker took the call over (it looked dead)
                return self._step(agent, StepKind.BUSY, f"{call_id}: {e}")
            return self._limit(agent) or self._step(agent, kind, f"{call_id}: {outcome.summary}")
        return self._step(self.log.get(agent_id), StepKind.BUSY, "lost too many races")

    def _ask_model(self, agent: Agent) -> Step:
        if (limited := self._limit(agent)) is not None:
            return limited
        messages = self.transcripts.messages(agent)
        if due(agent, messages):
            try:
                messages = self._compact(agent, messages)
            except SummaryFailedError as e:
                return self._summary_failed(agent, e)
        context = Context(
            agent_id=agent.id,
            goal=agent.goal or "",
            messages=tuple(messages),
            tools=self.tool_specs,
        )
        try:
            decision = self.model.decide(context)
            agent.record_model_response(
                decision.text,
                model=self.model.name,
                tool_calls=decision.tool_calls,
                usage=decision.usage,
                finish_reason=decision.finish_reason,
            )
        except (ModelCallError, AgentError, ValidationError) as e:
            return self._model_failed(agent, e)
        except Exception as e:  # a model adapter's bug must not crash a worker
            return self._model_failed(agent, ModelCallError("error", f"{type(e).__name__}: {e}"))
        self._record_calls(agent, decision.tool_calls)
        if decision.done and not decision.tool_calls:
            agent.complete(decision.text, actor=f"model:{self.model.name}")
        self.log.save(agent)
        return self._step(agent, StepKind.MODEL, decision.text[:80])

    def _compact(self, agent: Agent, messages: list[Message]) -> list[Message]:
        """Summarise the whole context and record it (saved before the model is asked:
        losing a race here re-decides, like any save)."""
        summary = summarize(self.summarizer, agent.id, agent.goal or "", messages)
        agent.compact(agent.version, summary, summarizer=f"model:{self.summarizer.name}")
        self.log.save(agent)
        return self.transcripts.messages(agent)

    def _summary_failed(self, agent: Agent, error: SummaryFailedError) -> Step:
        """A summarizer that cannot answer fails the step like a model (and counts so)."""
        agent.record_model_failure("summary_failed", error.reason, model=self.summarizer.name)
        self.log.save(agent)
        detail = f"summary_failed: {error.reason}"
        return self._limit(agent) or self._step(agent, StepKind.MODEL_FAILED, detail)

    def _record_calls(self, agent: Agent, calls: tuple[ToolCallRequest, ...]) -> None:
        response = agent.version
        for call in calls:
            tool = self.tools.get(call.tool)
            if tool is None:
                agent.reject_tool_call(call, f"unknown tool {call.tool!r}", caused_by=response)
                continue
            try:
                tool.args_model.model_validate(call.args)
            except ValidationError as e:
                reason = f"invalid arguments for {call.tool}: {short_errors(e)}"
                agent.reject_tool_call(call, reason, caused_by=response)
                continue
            policy = agent.config.policy_for(tool.name, tool.policy)
            agent.call_tool(
                call,
                effect=tool.effect,
                policy=policy,
                actor=f"model:{self.model.name}",
                caused_by=response,
            )

    def _model_failed(self, agent: Agent, error: Exception) -> Step:
        # Drop anything half-recorded, but stay at the version the model decided from:
        # if another worker moved on meanwhile, this save loses the race and we re-decide.
        agent = self.log.get(agent.id, version=agent.version - len(agent.collect_events()))
        kind = error.kind if isinstance(error, ModelCallError) else "bad_output"
        message = error.message if isinstance(error, ModelCallError) else str(error)
        agent.record_model_failure(kind, message, model=self.model.name)
        self.log.save(agent)
        return self._limit(agent) or self._step(agent, StepKind.MODEL_FAILED, f"{kind}: {message}")

    def _limit(self, agent: Agent) -> Step | None:
        """If a limit is reached, record it, fail the task and say so; else None."""
        hit = limit_reached(agent, self.now())
        if hit is None:
            return None
        agent.reach_limit(hit[0], hit[1], actor=self.actor)
        agent.fail(f"limit reached: {hit[0]} = {hit[1]}", actor=self.actor)
        self.log.save(agent)
        return self._step(agent, StepKind.LIMIT, f"{hit[0]} = {hit[1]}")

    def _step(self, agent: Agent, kind: StepKind, detail: str = "") -> Step:
        """The step's outcome; the agent is handed back to the log (the step is done
        with it: nothing reads it after this)."""
        step = Step(kind=kind, agent_id=agent.id, version=agent.version, detail=detail)
        self.log.keep(agent)
        return step
