"""What every part of a runtime step shares: the worker's log, model, tools and name,
and the two ways a step ends (a limit reached, or its outcome handed back)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime

from agentlog.domain.agent import Agent
from agentlog.domain.application import AgentLog
from agentlog.domain.claims import WorkerGone
from agentlog.domain.limits import limit_reached
from agentlog.domain.log_transcript import TranscriptSource
from agentlog.domain.ports import Model, Tool
from agentlog.domain.steps import Step, StepKind

__all__ = ["RACE_RETRIES", "Patience", "RuntimeBase"]

RACE_RETRIES = 5
Patience = Callable[[Exception], bool]
"""Called when the store cannot be reached while an outcome waits to be recorded: waits,
and says whether to try again (False: give up, the claim is left to the next worker)."""


class RuntimeBase:
    """The state and endings shared by the runtime's parts (set by ``Runtime``)."""

    log: AgentLog
    model: Model
    tools: dict[str, Tool]
    worker_id: str
    transcripts: TranscriptSource
    now: Callable[[], datetime]
    interrupt: threading.Event
    gone: WorkerGone
    patience: Patience
    summarizer: Model

    @property
    def actor(self) -> str:
        """How this worker appears in the log."""
        return f"worker:{self.worker_id}"

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
