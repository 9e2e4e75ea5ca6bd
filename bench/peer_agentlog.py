"""agentlog recording the workload of ``peers.py`` through its runtime: ``Runtime.advance``
with a model that answers at once and a tool that returns at once. A step is two
advances: a model step (ModelResponded + ToolCalled, one save) and a tool step (the claim,
ToolStarted, saved before the tool runs; then ToolSucceeded)."""

from __future__ import annotations

import inspect
from pathlib import Path
from uuid import UUID

from instant import InstantTool, record_step
from peers import ARGS, RESULT, SUMMARY, TEXT, TOOL, call_id
from pydantic import BaseModel

from agentlog.adapters.scripted import FunctionModel
from agentlog.adapters.storage import open_log
from agentlog.adapters.tools import ToolRegistry
from agentlog.adapters.views import Store, open_store
from agentlog.adapters.worker import WORKER_CACHE, Worker
from agentlog.domain.agent import Agent
from agentlog.domain.application import AgentLog
from agentlog.domain.ports import Context, Decision
from agentlog.domain.runtime import LogTranscript, Runtime, StepKind, TranscriptSource
from agentlog.domain.values import AgentConfig, Policy, ToolCallRequest

MODEL = "bench"
WORKER = "bench-worker"
COMPACT_EVERY = 25  # steps between a summarizer's compactions: the context stays short
BUILD_EVENTS = 4_000  # events per untimed save
UNLIMITED = 10**9  # max_steps: the benchmark decides when to stop
TURN: int = inspect.signature(Worker.work).parameters["turn"].default  # advances per pass


class GrepArgs(BaseModel):
    """The workload's tool arguments."""

    path: str
    pattern: str
    context_lines: int
    include: list[str]
    reason: str


GREP_TOOL = InstantTool(
    TOOL, "Search a file (a benchmark's tool: returns a fixed result).", GrepArgs, RESULT
)


class Steps:
    """The model's side: the workload's response, with a fresh call id each time."""

    def __init__(self) -> None:
        self.count = 0

    def decide(self, context: Context) -> Decision:
        """Text and one call."""
        call = ToolCallRequest(call_id=call_id(self.count), tool=TOOL, args=ARGS)
        return Decision(text=TEXT, tool_calls=(call,))


def record(agent: Agent, step: int) -> None:
    """One step with the Agent's commands: the same events the runtime records."""
    call = ToolCallRequest(call_id=call_id(step), tool=TOOL, args=ARGS)
    record_step(agent, call, TEXT, RESULT, model=MODEL, worker=WORKER)


def build_log(path: Path, steps: int) -> UUID:
    """A file holding one agent with ``steps`` steps, compacted every ``COMPACT_EVERY``."""
    log = open_log(f"sqlite:///{path}")
    try:
        config = AgentConfig(model=MODEL, tool_policies={TOOL: Policy.ALLOW}, max_steps=UNLIMITED)
        agent = Agent.create("bench", config)
        agent.start_task("Migrate every module off the old config loader.")
        saved = 0
        for step in range(steps):
            record(agent, step)
            if (step + 1) % COMPACT_EVERY == 0:
                agent.compact(agent.version, SUMMARY, summarizer="bench-summarizer")
            if agent.version - saved >= BUILD_EVENTS:
                log.save(agent)
                saved = agent.version
        log.save(agent)
        return agent.id
    finally:
        log.close()


class LogOnly:
    """``Runtime`` on ``open_log`` with its defaults: no views; the agent kept by the log's
    aggregate cache, the model's context from the log, kept by the runtime."""

    label = "log"

    def __init__(self, workdir: Path) -> None:
        self.path = workdir / f"agentlog-{self.label}.db"
        self.url = f"sqlite:///{self.path}"
        self.steps = Steps()
        self.tools = ToolRegistry.of([GREP_TOOL])
        self.model = FunctionModel(self.steps.decide, name=MODEL)
        self.agent_id: UUID | None = None
        self.log: AgentLog | None = None

    def build(self, steps: int) -> None:
        """Write the history with the Agent's commands, then open the runtime on it."""
        self.agent_id = build_log(self.path, steps)
        self.steps.count = steps
        self.open()

    def open(self) -> None:
        """Open the log and the runtime."""
        self.log = open_log(self.url)
        self.runtime = Runtime(self.log, self.model, self.tools, worker_id=WORKER)

    def step(self) -> None:
        """A model step, then a tool step."""
        assert self.agent_id is not None
        for kind in (StepKind.MODEL, StepKind.TOOL):
            done = self.runtime.advance(self.agent_id)
            if done.kind is not kind:
                msg = f"expected a {kind} step, got {done.kind}: {done.detail}"
                raise RuntimeError(msg)
        self.steps.count += 1

    def between(self) -> None:
        """Untimed: a summarizer's compaction every ``COMPACT_EVERY`` steps."""
        assert self.log is not None
        assert self.agent_id is not None
        if self.steps.count % COMPACT_EVERY == 0:
            agent = self.log.get(self.agent_id)
            agent.compact(agent.version, SUMMARY, summarizer="bench-summarizer")
            self.log.save(agent)

    def resume_key(self) -> str:
        """The agent's id."""
        return str(self.agent_id)

    def close(self) -> None:
        """Close the log."""
        if self.log is not None:
            self.log.close()


class WorkerPath(LogOnly):
    """As ``Worker.work`` runs an agent: the views off the write path, caught up once per
    pass (``Worker.runnable``), then a turn of advances with the worker's runtime."""

    label = "worker"

    def open(self) -> None:
        """Open the store (views caught up, untimed) and a worker on it."""
        self.store: Store = open_store(self.url, embedded=False, aggregate_cache=WORKER_CACHE)
        self.log = self.store.log
        self.worker = Worker(self.store, tools=self.tools, name=WORKER)
        self.advances = 0

    def step(self) -> None:
        """A pass of the work loop starts every ``TURN`` advances: views, then a runtime."""
        assert self.agent_id is not None
        if self.advances % TURN == 0:
            self.worker.runnable()
            self.runtime = runtime_of(self.worker, self.model)
        super().step()
        self.advances += 2

    def close(self) -> None:
        """Close the store."""
        if self.log is not None:
            self.store.close()


def runtime_of(worker: Worker, model: FunctionModel) -> Runtime:
    """The runtime ``worker.runtime_for`` builds, with the benchmark's model."""
    return Runtime(
        worker.store.log,
        model,
        worker.tools,
        worker_id=worker.name,
        transcripts=transcripts_of(worker),
    )


def transcripts_of(worker: Worker) -> TranscriptSource | None:
    """The worker's context source, if it names one (else the runtime's default)."""
    found: TranscriptSource | None = getattr(worker, "transcripts", None)
    return found


def resume_log(path: Path, key: str) -> int:
    """Open the log, load the agent (snapshot + tail) and the model's context."""
    log = open_log(f"sqlite:///{path}")
    try:
        agent = log.get(UUID(key))
        return len(LogTranscript(log).messages(agent))
    finally:
        log.close()


def resume_worker(path: Path, key: str) -> int:
    """Open the store as a worker does (views caught up), load the agent and its context."""
    store = open_store(f"sqlite:///{path}", embedded=False)
    try:
        worker = Worker(store, tools=ToolRegistry.of([GREP_TOOL]), name=WORKER)
        agent = store.log.get(UUID(key))
        source = transcripts_of(worker) or LogTranscript(store.log)
        return len(source.messages(agent))
    finally:
        store.close()
