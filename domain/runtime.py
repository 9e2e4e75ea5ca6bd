"""Advancing an agent by one step: load, decide the single next thing, record, save.

Every start is a recovery: the same decision procedure handles a fresh agent and one
whose last worker was killed mid-tool. The parts of a step live beside this module: the
step values (``domain/steps.py``), the model's context read from the log
(``domain/log_transcript.py``), asking the model (``domain/model_steps.py``) and moving
tool calls on, at most once per side effect (``domain/tool_call_steps.py``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from uuid import UUID

from eventsourcing.persistence import IntegrityError

from agentlog.domain.agent import Agent
from agentlog.domain.application import AgentLog, require_agent
from agentlog.domain.call_check import check_from
from agentlog.domain.claims import WorkerGone, never_gone
from agentlog.domain.log_transcript import LogTranscript, TranscriptSource
from agentlog.domain.model_steps import ModelSteps
from agentlog.domain.ports import Model, Tool
from agentlog.domain.runtime_base import RACE_RETRIES, Patience
from agentlog.domain.steps import Step, StepKind
from agentlog.domain.tool_call_steps import ToolCallSteps
from agentlog.domain.tool_runner import Outcome, tool_spec
from agentlog.domain.values import CallStage

__all__ = [
    "LogTranscript",
    "Outcome",
    "Runtime",
    "Step",
    "StepKind",
    "TranscriptSource",
    "tool_spec",
]

CONTEXT_CACHE = 100
"""Agents whose model context a runtime keeps between steps, unless given a source."""


class Runtime(ToolCallSteps, ModelSteps):
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
        self.transcripts = transcripts or LogTranscript(log, cache_size=CONTEXT_CACHE)
        self.now = now
        self.interrupt = interrupt or threading.Event()
        self.gone, self.patience = gone, patience
        self.summarizer = summarizer or model
        """Who summarises when an agent's context passes its compaction size."""

    def advance(self, agent_id: UUID, *, after_own_step: bool = False) -> Step:
        """Load the agent, do the single next thing, save. Losing a race re-decides.

        ``after_own_step``: this runtime's last step saved the agent, and it has held the
        agent since (the steps of a worker's turn after the first, under its lease). A
        model step then starts from the agent as kept, without reading the store for
        what others stored meanwhile: if someone did (a message, a cancel), the step's
        save loses its race and the step is decided again, read. A tool step reads
        always: its call check needs the stored events.
        """
        read = not after_own_step
        for _ in range(RACE_RETRIES):
            # The call check's events come with the fast-forward: one read for both.
            agent = require_agent(self.log.take(agent_id, check_from=check_from, read=read))
            read = True  # a race lost: what others stored is read before deciding again
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
