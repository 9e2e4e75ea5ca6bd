"""Step benchmark: the framework's overhead per worker step as an agent's history grows.

For each history length N, write one agent of about N events to a fresh SQLite file (in
big batches, snapshots at the default interval, a compaction every 50 steps like an agent
that keeps its context short; and a second file without compactions), then time real
``Runtime.advance`` steps with a model that decides at once (one call of a no-op pure
tool, policy allow) and that no-op tool. Each step is a model step or a tool step. Three
configurations:

* ``worker``: the production path, built as ``agentlog worker`` builds it:
  ``open_store(embedded=False)`` with the worker's aggregate cache, and the worker's
  ``LogTranscript`` (the latest compaction and what followed, cached between steps) as
  the model's context; as the work loop does, the views catch up (all in one pass) before
  each turn of ``TURN`` steps, and that time counts in the step that follows it. A
  compaction is recorded every 50 steps;
* ``worker-nocompact``: the same on the history that never compacts, so the model's
  context is the whole conversation: this shows where growth comes from;
* ``bare``: a library user's runtime, ``Runtime(open_log(url), model, tools)`` with
  nothing configured: no views; the log's own aggregate cache and the runtime's own
  cached ``LogTranscript`` (their defaults).

Each step's time is split into load, context, model, save and views (timers around
those calls), and a few further steps are profiled with cProfile at the smallest and the
largest N. In the same run, a raw ``sqlite3`` floor, right after each timed step: one
transaction inserting the rows that step stored (the same bytes) plus a read of the
latest rows, on a table like eventsourcing's with its connection settings, holding the
same N-row history.

The results replace this benchmark's own section of ``docs/benchmarks.md`` (between
marker comments, appended if missing); the rest of the file is left as it is::

    .venv/bin/python bench/bench_step.py [--lengths 100,1000,10000,100000]
        [--out docs/benchmarks.md]
"""

from __future__ import annotations

import cProfile
import gc
import inspect
import itertools
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import CodeType
from typing import ParamSpec, TypeVar
from uuid import UUID

from common import (
    FLAT_RATIO,
    RAW_INSERT,
    RAW_TABLE,
    argument_parser,
    db_bytes,
    flat_verdict,
    fmt,
    log,
    machine_info,
    markdown_table,
    median,
    percentile,
    preamble,
    raw_connect,
    whole_numbers,
    write_section,
)
from eventsourcing.persistence import Mapper, StoredEvent
from instant import InstantTool, record_model_step, record_step
from pydantic import BaseModel
from sqlalchemy import Engine, event

from agentlog.adapters.scripted import FunctionModel
from agentlog.adapters.storage import open_log
from agentlog.adapters.tools import ToolRegistry
from agentlog.adapters.views import open_store
from agentlog.adapters.worker import WORKER_CACHE, Worker
from agentlog.domain.agent import Agent
from agentlog.domain.application import DEFAULT_SNAPSHOT_INTERVAL, AgentLog
from agentlog.domain.ports import Context, Decision
from agentlog.domain.runtime import Runtime, Step, StepKind
from agentlog.domain.values import AgentConfig, Policy, ToolCallRequest
from agentlog.projections import Projections

P = ParamSpec("P")
R = TypeVar("R")

DEFAULT_LENGTHS = (100, 1_000, 10_000, 100_000)
DEFAULT_STEPS = 100  # timed steps per configuration and length (at most)
DEFAULT_BUDGET_S = 25.0  # ... or fewer, once this many seconds went into timed steps
DEFAULT_PROFILE_STEPS = 20  # profiled steps at the smallest and the largest length
MIN_STEPS = 4  # timed steps even past the budget (two model steps, two tool steps)
WARM_UP_STEPS = 2  # untimed steps before timing (O(history) configurations are slow)
COMPACT_EVERY = 50  # steps between two compactions, as an agent keeping its context short
BATCH_EVENTS = 1_000  # events per save while writing a history
FLOOR_WARM_UP = 4  # untimed floor steps
GROWTH_RATIO = 1.5  # a part or function this many times its cost at the smallest N grew
TOP_FUNCTIONS = 6  # rows per profile table
TOP_GROWING = 4  # growing functions named in the reading
TOP_STATEMENTS = 3  # rows per SQL table
TOP_GROWING_SQL = 2  # growing statements named in the reading
SQL_WIDTH = 200  # characters of a statement shown
SIGNIFICANT = 0.05  # growth smaller than this share of a step is not called growth
PACKAGE_ROOT = Path(inspect.getfile(Projections)).resolve().parent.parent
THIS_FILE = str(Path(__file__).resolve())

MODEL = "bench"
BAR_RATIO = 2.0
"""The goal for a worker step: within this many times the floor doing the same commits."""
WORKER = "bench-worker"
SUMMARIZER = "bench-summarizer"
NOOP = "noop"
SYSTEM_PROMPT = "You migrate modules off the old config loader, one module at a time."
GOAL = "Find every module that still imports the old config loader and migrate it."
MODEL_TEXT = (
    "I'll look at the next module to see whether it still uses the old config loader; "
    "if it does, I will rewrite the import and the call sites, then run its tests."
)
SUMMARY = (
    "Migrated the modules checked so far off the old config loader; each one's tests pass. "
    "Next: keep going through the package in alphabetical order."
)
PARTS = ("load", "context", "model", "save", "views")
TURN = 50
"""Steps of one agent between two catch-ups of the views (``Worker.work``'s turn)."""


# --- the agent, its model and its tool ----------------------------------------------


class NoArgs(BaseModel):
    """No arguments."""


NOOP_TOOL = InstantTool(NOOP, "Does nothing and returns nothing (a benchmark's tool).", NoArgs)


class InstantModel:
    """Decides at once: a fixed text and one call of the no-op tool; counts its context."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.calls = itertools.count()
        self.context_sizes: list[int] = []

    def decide(self, context: Context) -> Decision:
        """The next call, with a call id unique to this run."""
        self.context_sizes.append(len(context.messages))
        call = ToolCallRequest(call_id=f"{self.prefix}-{next(self.calls)}", tool=NOOP, args={})
        return Decision(text=MODEL_TEXT, tool_calls=(call,))


def new_agent(model: str = MODEL) -> Agent:
    """A fresh agent with a running task, configured as the timed steps expect."""
    config = AgentConfig(
        model=model,
        system_prompt=SYSTEM_PROMPT,
        tool_policies={NOOP: Policy.ALLOW},
        max_steps=10**9,  # the benchmark decides when to stop
    )
    agent = Agent.create("bench", config)
    agent.start_task(GOAL)
    return agent


def record_round(agent: Agent, call_id: str) -> None:
    """One model step and one tool step, as the runtime records them (same events)."""
    call = ToolCallRequest(call_id=call_id, tool=NOOP, args={})
    record_step(agent, call, MODEL_TEXT, None, model=MODEL, worker=WORKER)


def compact(agent: Agent) -> None:
    """Summarise everything so far, as a summarizer would."""
    agent.compact(agent.version, SUMMARY, summarizer=SUMMARIZER)


# --- histories ----------------------------------------------------------------------


@dataclass(frozen=True)
class History:
    """One stored agent of about N events."""

    length: int
    compacted: bool
    path: Path
    agent_id: UUID
    events: int
    compactions: int
    build_s: float
    views_s: float
    store_url: str | None = None
    """Where it is stored, if not the SQLite file at ``path`` (a PostgreSQL database)."""

    @property
    def url(self) -> str:
        """Its agentlog storage URL."""
        return self.store_url or f"sqlite:///{self.path}"


def build_history(
    workdir: Path, length: int, *, compacted: bool, url: str | None = None
) -> History:
    """Write an agent of about ``length`` events, then let the views catch up (untimed).

    Rounds of model + tool step are recorded with the Agent's commands and saved
    ``BATCH_EVENTS`` events at a time (a snapshot when a save crosses the interval); with
    ``compacted``, a compaction every ``COMPACT_EVERY`` steps. The history ends after a
    whole round, so the next step is a model step. ``url``: store it there (an empty
    PostgreSQL database) instead of in a SQLite file under ``workdir``.
    """
    path = workdir / f"{'compacted' if compacted else 'plain'}-{length}.db"
    store_url, url = url, url or f"sqlite:///{path}"
    started = time.perf_counter()
    app = open_log(url)
    try:
        agent = new_agent()
        app.save(agent)
        saved, compactions = agent.version, 0
        for round_ in itertools.count():
            if agent.version >= length:
                break
            record_round(agent, f"h-{round_}")
            if compacted and (round_ + 1) % (COMPACT_EVERY // 2) == 0:
                compact(agent)
                compactions += 1
            if agent.version - saved >= BATCH_EVENTS:
                app.save(agent)
                saved = agent.version
        app.save(agent)
    finally:
        app.close()
    build_s = time.perf_counter() - started
    started = time.perf_counter()
    store = open_store(url)  # catches every view up to the end of the log
    store.close()
    views_s = time.perf_counter() - started
    return History(
        length, compacted, path, agent.id, agent.version, compactions, build_s, views_s, store_url
    )


@dataclass(frozen=True)
class EventsAlone:
    """CPU µs of one step's events alone, by kind of step."""

    model_us: float
    tool_us: float

    @property
    def step_us(self) -> float:
        """Per step, a round being one model step and one tool step."""
        return (self.model_us + self.tool_us) / 2


def events_alone(path: Path, rounds: int = 2_000) -> EventsAlone:
    """CPU µs of a step's events alone: made by the agent's commands, applied, sealed
    into the hash chain and encoded by the mapper of a worker's store (a fresh one at
    ``path``), as a model step and a tool step make them, with no runtime, no model, no
    tool and no SQL: what any step that records these events pays."""
    store = open_store(f"sqlite:///{path}", embedded=False, catch_up=False, create=True)
    mapper = store.log.mapper
    store.close()
    agent = new_agent()
    agent.collect_events()
    model_ns = tool_ns = 0
    clock = time.process_time_ns
    for i in range(rounds):
        started = clock()
        call = ToolCallRequest(call_id=f"c{i}", tool=NOOP, args={})
        record_model_step(agent, call, MODEL_TEXT, model=MODEL)
        _encoded(mapper, agent)
        middle = clock()
        agent.start_tool(call.call_id, worker_id=WORKER)
        _encoded(mapper, agent)
        agent.succeed(call.call_id, {"ok": True}, actor=f"worker:{WORKER}")
        _encoded(mapper, agent)
        model_ns += middle - started
        tool_ns += clock() - middle
    return EventsAlone(model_ns / rounds / 1_000, tool_ns / rounds / 1_000)


def _encoded(mapper: Mapper[UUID], agent: Agent) -> None:
    for made in agent.collect_events():
        mapper.to_stored_event(made)


# --- timing real steps --------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    """One way of running the runtime."""

    key: str
    label: str
    views: bool
    compacted: bool


CONFIGS = (
    Config("worker", "worker + compaction", views=True, compacted=True),
    Config("worker-nocompact", "worker, no compaction", views=True, compacted=False),
    Config("bare", "library runtime (defaults)", views=False, compacted=True),
)


Row = tuple[str, int, str, bytes]
"""A stored row: table, version, topic, state (the bytes agentlog wrote)."""


@dataclass(frozen=True)
class Commit:
    """One transaction agentlog's event store committed: its rows."""

    rows: tuple[Row, ...]


@dataclass(frozen=True)
class Sample:
    """One timed step: its kind, total time, and time per part (µs)."""

    kind: StepKind
    total_us: float
    parts: dict[str, float]
    first_version: int  # the first version this step stored
    last_version: int  # the last
    context: int | None  # messages in the model's context (model steps only)
    commits: tuple[Commit, ...] = ()  # the event store's transactions, in order
    cpu_us: float = 0.0  # the process's CPU time during the step (all its threads)
    reads: int = 0  # reads of the stored events and snapshots (``select_events`` calls)

    @property
    def rows(self) -> list[Row]:
        """Every row this step stored (events and snapshots), in commit order."""
        return [row for commit in self.commits for row in commit.rows]

    @property
    def other_us(self) -> float:
        """Time outside the timed parts: deciding, domain commands, the tool's thread."""
        return self.total_us - sum(self.parts.values())


@dataclass(frozen=True)
class FunctionCost:
    """One function's time per profiled step (µs), and its calls per step."""

    own_us: float
    cum_us: float
    calls: float


@dataclass(frozen=True)
class StatementCost:
    """One SQL statement's time and calls per profiled step, and its query plan."""

    us: float
    calls: float
    plan: str


@dataclass(frozen=True)
class Profile:
    """cProfile of some steps, per function label; and the views' SQL, per statement."""

    steps: int
    functions: dict[str, FunctionCost]
    statements: dict[str, StatementCost] = field(default_factory=dict)


class SqlTimer:
    """Times each SQL statement run on an engine while ``active`` (cursor execute only)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.active = False
        self.spent: dict[str, list[int]] = {}  # statement -> [ns, calls]
        self.params: dict[str, tuple[object, ...]] = {}  # statement -> last parameters
        self._started = 0
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)

    def _before(self, *_: object) -> None:
        self._started = time.perf_counter_ns()

    def _after(
        self,
        _conn: object,
        _cursor: object,
        statement: str,
        parameters: object,
        _context: object,
        executemany: bool,
    ) -> None:
        if not self.active:
            return
        spent = self.spent.setdefault(statement, [0, 0])
        spent[0] += time.perf_counter_ns() - self._started
        spent[1] += 1
        if isinstance(parameters, tuple) and not executemany:
            self.params[statement] = parameters

    def costs(self, steps: int) -> dict[str, StatementCost]:
        """Per statement: µs and calls per step, and SQLite's plan for its last parameters."""
        costs = {}
        with self.engine.connect() as conn:
            for statement, (ns, calls) in self.spent.items():
                params = self.params.get(statement)
                plan = ""
                if params is not None and self.engine.dialect.name == "sqlite":
                    rows = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", params)
                    plan = "; ".join(str(row[-1]) for row in rows)
                costs[" ".join(statement.split())] = StatementCost(
                    ns / 1_000 / steps, calls / steps, plan
                )
        return costs

    def close(self) -> None:
        """Stop listening."""
        event.remove(self.engine, "before_cursor_execute", self._before)
        event.remove(self.engine, "after_cursor_execute", self._after)


@dataclass
class Run:
    """One configuration at one history length."""

    config: Config
    history: History
    events: int  # the agent's version when timing started
    samples: list[Sample] = field(default_factory=list)
    compaction_us: list[float] = field(default_factory=list)
    floor_us: list[float] = field(default_factory=list)  # the same commits, step by step
    floor1_us: list[float] = field(default_factory=list)  # the same rows in one commit
    pragmas: Pragmas | None = None  # agentlog's connection settings, copied by the floor
    profile: Profile | None = None

    def of_kind(self, kind: StepKind) -> list[float]:
        """Total µs of the steps of one kind."""
        return [s.total_us for s in self.samples if s.kind is kind]

    def cpu_of_kind(self, kind: StepKind) -> list[float]:
        """CPU µs of the steps of one kind."""
        return [s.cpu_us for s in self.samples if s.kind is kind]

    def reads_per_step(self, kind: StepKind) -> float:
        """Reads of the store per step of one kind (mean)."""
        reads = [s.reads for s in self.samples if s.kind is kind]
        return statistics.mean(reads) if reads else float("nan")

    @property
    def totals(self) -> list[float]:
        """Total µs of every timed step."""
        return [s.total_us for s in self.samples]

    @property
    def rows_per_step(self) -> float:
        """Rows stored per step (events and snapshots: what the floor writes per step)."""
        return statistics.mean(len(s.rows) for s in self.samples)

    def commits_per_step(self, kind: StepKind | None = None) -> float:
        """The event store's transactions per step (of one kind, or all)."""
        samples = [s for s in self.samples if kind is None or s.kind is kind]
        return statistics.mean(len(s.commits) for s in samples) if samples else float("nan")


class Probe:
    """Timers around the runtime's collaborators, read after each step."""

    def __init__(self) -> None:
        self.spent = dict.fromkeys((*PARTS, "save+views", "views in save"), 0)
        self.inside: set[str] = set()  # parts being timed (one calling another: counted once)

    def wrap(self, part: str, function: Callable[P, R]) -> Callable[P, R]:
        """``function``, adding the time of each call to ``part`` (a call made inside a
        call timed for the same part is not counted again)."""

        def timed(*args: P.args, **kwargs: P.kwargs) -> R:
            if part in self.inside:
                return function(*args, **kwargs)
            self.inside.add(part)
            start = time.perf_counter_ns()
            try:
                return function(*args, **kwargs)
            finally:
                self.spent[part] += time.perf_counter_ns() - start
                self.inside.discard(part)

        return timed

    def instrument(self, obj: object, attribute: str, part: str) -> None:
        """Time a method of one object (the instance attribute shadows the method)."""
        setattr(obj, attribute, self.wrap(part, getattr(obj, attribute)))

    def reset(self) -> None:
        """Start a new step."""
        self.spent = dict.fromkeys(self.spent, 0)

    def parts_us(self) -> dict[str, float]:
        """This step's time per part in µs; a save's own time excludes the views."""
        parts = {part: self.spent[part] / 1_000 for part in PARTS}
        parts["views"] = (self.spent["views"] + self.spent["views in save"]) / 1_000
        parts["save"] = (self.spent["save+views"] - self.spent["views in save"]) / 1_000
        return parts


class Rig:
    """A runtime on a stored history, instrumented, with the compaction cadence."""

    def __init__(
        self,
        config: Config,
        history: History,
        log: AgentLog,
        runtime: Runtime,
        model: InstantModel,
        engine: Engine | None = None,
        views: Projections | None = None,
    ) -> None:
        self.config, self.history, self.log, self.runtime = config, history, log, runtime
        self.model, self.agent_id, self.engine = model, history.agent_id, engine
        self.views, self.turn_left = views, 0
        self.probe = Probe()
        self.profiler: cProfile.Profile | None = None  # set: steps are profiled
        self.sql: SqlTimer | None = None  # set: the views' SQL is timed
        self.commits: list[Commit] = []
        self.reads = 0
        self._capture(log.recorder, "stored_events")
        if log.snapshots is not None:
            self._capture(log.snapshots.recorder, "stored_snapshots")
        for attribute in ("get", "take", "chained_events"):
            if hasattr(log, attribute):  # take: since the worker hands agents over
                self.probe.instrument(log, attribute, "load")
        self.probe.instrument(log, "save", "save+views")
        log.after_save[:] = [self.probe.wrap("views in save", hook) for hook in log.after_save]
        self.probe.instrument(runtime.transcripts, "messages", "context")
        self.probe.instrument(runtime.model, "decide", "model")
        agent = log.get(self.agent_id)
        self.version = agent.version
        self.since_compaction = (agent.version - agent.compacted_through) // 2

    def _capture(self, recorder: object, table: str) -> None:
        """Note each transaction the recorder commits (its rows, as written), for the
        floor, and count its reads."""
        _capture_commits(recorder, table, self.commits)
        select = recorder.select_events  # type: ignore[attr-defined]

        def counted(*args: object, **kwargs: object) -> object:
            self.reads += 1
            return select(*args, **kwargs)

        recorder.select_events = counted  # type: ignore[attr-defined]

    def step(self) -> Sample:
        """One timed ``advance``, split into parts by the probe."""
        self.probe.reset()
        self.commits.clear()
        self.reads = 0
        if self.sql is not None:
            self.sql.active = True
        if self.profiler is not None:
            self.profiler.enable()
        start, cpu_start = time.perf_counter_ns(), time.process_time_ns()
        first = self.turn_left <= 0  # a turn starts: the work loop's pass
        if first:
            if self.views is not None:
                self.probe.wrap("views", self.views.catch_up)()
            self.turn_left = TURN
        self.turn_left -= 1
        try:
            # As a worker's turn: each step after its first follows this runtime's own.
            step = self.runtime.advance(self.agent_id, after_own_step=not first)
        finally:
            total_us = (time.perf_counter_ns() - start) / 1_000
            cpu_us = (time.process_time_ns() - cpu_start) / 1_000
            if self.profiler is not None:
                self.profiler.disable()
            if self.sql is not None:
                self.sql.active = False
        check_progress(step)
        context = self.model.context_sizes[-1] if step.kind is StepKind.MODEL else None
        sample = Sample(
            step.kind,
            total_us,
            self.probe.parts_us(),
            self.version + 1,
            step.version,
            context,
            tuple(self.commits),
            cpu_us,
            self.reads,
        )
        self.version = step.version
        self.since_compaction += 1
        return sample

    def compact_if_due(self) -> float | None:
        """After a tool step, every ``COMPACT_EVERY`` steps: record a compaction (µs)."""
        if not self.config.compacted or self.since_compaction < COMPACT_EVERY:
            return None
        start = time.perf_counter_ns()
        agent = self.log.get(self.agent_id)
        if agent.calls:
            return None  # a call is open: compact after its tool step
        compact(agent)
        self.log.save(agent)
        self.commits.clear()
        self.version, self.since_compaction = agent.version, 0
        return (time.perf_counter_ns() - start) / 1_000


def check_progress(step: Step) -> None:
    """Fail loudly unless the step was a model step or a tool step."""
    if step.kind not in (StepKind.MODEL, StepKind.TOOL):
        msg = f"expected a model or tool step, got {step.kind}: {step.detail}"
        raise RuntimeError(msg)


@contextmanager
def rig_for(config: Config, history: History, *, group_commit: bool = False) -> Iterator[Rig]:
    """The runtime of a configuration on a history, closed afterwards (``group_commit``:
    saves go through group commit, as a worker's with ``--concurrency`` above 1)."""
    instant = InstantModel(config.key)
    model = FunctionModel(instant.decide, name=MODEL)
    tools = ToolRegistry.of([NOOP_TOOL])
    if config.views:
        store = open_store(
            history.url,
            embedded=False,
            aggregate_cache=WORKER_CACHE,
            group_commit=group_commit,
        )
        worker = Worker(store, tools=tools, name=WORKER)
        runtime = Runtime(
            store.log, model, worker.tools, worker_id=worker.name, transcripts=worker.transcripts
        )
        try:
            yield Rig(config, history, store.log, runtime, instant, store.views.engine, store.views)
        finally:
            store.close()
    else:
        log = open_log(history.url)
        try:
            yield Rig(config, history, log, Runtime(log, model, tools, worker_id=WORKER), instant)
        finally:
            log.close()


def take_steps(
    rig: Rig,
    most: int,
    budget_s: float,
    on_step: Callable[[Sample], None],
    on_compaction: Callable[[float], None] = lambda _: None,
    least: int = MIN_STEPS,
) -> None:
    """Whole rounds (model step, tool step) until ``most`` steps or the time budget is
    spent, but at least ``least``."""
    started, taken = time.perf_counter(), 0
    while taken < most and (taken < least or time.perf_counter() - started < budget_s):
        for _ in range(2):
            on_step(rig.step())
            taken += 1
        compaction = rig.compact_if_due()
        if compaction is not None:
            on_compaction(compaction)


def measure(
    config: Config, history: History, opts: Options, workdir: Path, *, profiled: bool
) -> Run:
    """Warm up, time steps (each followed by a raw floor step), then maybe profile more."""
    with rig_for(config, history) as rig:
        take_steps(rig, WARM_UP_STEPS, 0, lambda _: None)
        pragmas = Pragmas.of(rig.log)
        run = Run(config, history, rig.version, pragmas=pragmas)
        stem = f"floor-{config.key}-{history.length}"
        same = FloorRig(
            workdir / f"{stem}.db", history, run.events, same_commits=True, pragmas=pragmas
        )
        once = FloorRig(
            workdir / f"{stem}-1.db", history, run.events, same_commits=False, pragmas=pragmas
        )

        def timed(sample: Sample) -> None:
            run.samples.append(sample)
            if len(run.samples) % 2:  # alternate which floor goes first
                run.floor_us.append(same.follow(sample))
                run.floor1_us.append(once.follow(sample))
            else:
                run.floor1_us.append(once.follow(sample))
                run.floor_us.append(same.follow(sample))

        try:
            gc.collect()
            take_steps(rig, opts.steps, opts.budget_s, timed, run.compaction_us.append)
        finally:
            same.close()
            once.close()
        if profiled and opts.profile_steps:
            run.profile = profile_steps(rig, opts.profile_steps, opts.budget_s / 2)
    return run


@dataclass(frozen=True)
class LogAlone:
    """Steps recorded with the log alone at one length, each beside its raw floor (µs)."""

    events: int
    steps_us: list[float]
    floor_us: list[float]

    @property
    def ratio(self) -> float:
        """Median step over median floor."""
        return median(self.steps_us) / median(self.floor_us)


def log_alone(history: History, workdir: Path, steps: int) -> LogAlone:
    """A step's events made by the agent's commands and saved with ``AgentLog.save`` in
    the runtime's commits (a model step: one save; a tool step: the claim, then the
    outcome), with no runtime, no model and no tool: what the log itself costs a step.
    Each step is followed by the raw floor committing the same rows, as for the runs."""
    log = open_log(history.url)
    commits: list[Commit] = []
    _capture_commits(log.recorder, EVENTS, commits)
    if log.snapshots is not None:
        _capture_commits(log.snapshots.recorder, "stored_snapshots", commits)
    agent = log.get(history.agent_id)
    pragmas = Pragmas.of(log)
    path = workdir / f"floor-alone-{history.length}.db"
    floor = FloorRig(path, history, agent.version, same_commits=True, pragmas=pragmas)
    result = LogAlone(agent.version, [], [])
    clock = time.perf_counter_ns
    try:
        for i in range(max(steps // 2, 1)):
            call = ToolCallRequest(call_id=f"alone-{i}", tool=NOOP, args={})
            commits.clear()
            started = clock()
            record_model_step(agent, call, MODEL_TEXT, model=MODEL)
            log.save(agent)
            result.steps_us.append((clock() - started) / 1_000)
            result.floor_us.append(floor.step(list(commits)))
            commits.clear()
            started = clock()
            agent.start_tool(call.call_id, worker_id=WORKER)
            log.save(agent)
            agent.succeed(call.call_id, {"ok": True}, actor=f"worker:{WORKER}")
            log.save(agent)
            result.steps_us.append((clock() - started) / 1_000)
            result.floor_us.append(floor.step(list(commits)))
    finally:
        floor.close()
        log.close()
    return result


def _capture_commits(recorder: object, table: str, commits: list[Commit]) -> None:
    """Note in ``commits`` each transaction the recorder commits (its rows, as written)."""
    insert = recorder.insert_events  # type: ignore[attr-defined]

    def captured(stored_events: Sequence[StoredEvent], **kwargs: object) -> object:
        result = insert(stored_events, **kwargs)
        rows = ((table, e.originator_version, e.topic, e.state) for e in stored_events)
        commits.append(Commit(tuple(rows)))
        return result

    recorder.insert_events = captured  # type: ignore[attr-defined]


def profile_steps(rig: Rig, most: int, budget_s: float) -> Profile:
    """cProfile of some steps, and their views' SQL (compactions are not profiled)."""
    profiler = cProfile.Profile()
    samples: list[Sample] = []
    rig.profiler = profiler
    rig.sql = SqlTimer(rig.engine) if rig.engine is not None else None
    rig.turn_left = 0  # the profiled steps start a turn: they include one catch-up
    try:
        take_steps(rig, most, budget_s, samples.append, least=2)
        statements = rig.sql.costs(len(samples)) if rig.sql is not None else {}
    finally:
        rig.profiler = None
        if rig.sql is not None:
            rig.sql.close()
        rig.sql = None
    return Profile(len(samples), function_costs(profiler, len(samples)), statements)


def function_costs(profiler: cProfile.Profile, steps: int) -> dict[str, FunctionCost]:
    """Own and cumulative µs per step of every profiled function (not this file's)."""
    costs: dict[str, FunctionCost] = {}
    for entry in profiler.getstats():
        code = entry.code
        if isinstance(code, CodeType) and code.co_filename == THIS_FILE:
            continue
        label = label_of(code)
        old = costs.get(label, FunctionCost(0, 0, 0))
        costs[label] = FunctionCost(
            old.own_us + entry.inlinetime * 1e6 / steps,
            old.cum_us + entry.totaltime * 1e6 / steps,
            old.calls + entry.callcount / steps,
        )
    return costs


def label_of(code: CodeType | str) -> str:
    """A short, stable name for a profiled function: file and qualified name."""
    if not isinstance(code, CodeType):
        return code  # a built-in, e.g. "<method 'commit' of 'sqlite3.Connection' objects>"
    path = Path(code.co_filename)
    name = code.co_qualname
    if path.is_absolute() and path.resolve().is_relative_to(PACKAGE_ROOT):
        relative = path.resolve().relative_to(PACKAGE_ROOT)
        if relative.parts and relative.parts[0] != ".venv":
            return f"agentlog/{relative.as_posix()}:{name}"
    posix = path.as_posix()
    if "site-packages/" in posix:
        return f"{posix.split('site-packages/', 1)[1]}:{name}"
    return f"{path.name}:{name}"


def is_agentlog(label: str) -> bool:
    """Whether a label names a function of agentlog itself."""
    return label.startswith("agentlog/")


# --- raw sqlite3 floor --------------------------------------------------------------

# eventsourcing.sqlite's application recorder table (notification id = rowid).
RAW_LATEST = (
    "SELECT * FROM stored_events WHERE originator_id=? AND originator_version>? "
    "ORDER BY originator_version ASC"
)
EVENTS = "stored_events"
RAW_SNAPSHOT_TABLE = (
    "CREATE TABLE IF NOT EXISTS stored_snapshots (originator_id TEXT, "
    "originator_version INTEGER, topic TEXT, state BLOB, "
    "PRIMARY KEY (originator_id, originator_version)) WITHOUT ROWID"
)
RAW_SNAPSHOT_INSERT = "INSERT INTO stored_snapshots VALUES (?,?,?,?)"
SOURCE_ROWS = (
    "SELECT topic, state FROM stored_events WHERE originator_id IN (?, ?) "
    "AND originator_version BETWEEN ? AND ? ORDER BY originator_version"
)


class FloorRig:
    """Raw sqlite3 beside a run: after each timed agentlog step, the same writes.

    Its own file holds the same history rows (topics and bytes copied from the agentlog
    file), in tables like eventsourcing.sqlite's (events, and snapshots), on a connection
    with the agentlog connection's journal mode and ``synchronous``. Each floor step
    reads the agent's latest rows (as many events as it writes: what a stateless worker
    must read to know the agent's head), then writes the rows the agentlog step stored:
    with ``same_commits``, in the same transactions agentlog committed (a tool step's
    claim and outcome apart, a snapshot in its own); else all in one transaction.
    """

    def __init__(
        self, path: Path, history: History, version: int, *, same_commits: bool, pragmas: Pragmas
    ) -> None:
        self.ids = (str(history.agent_id), history.agent_id.hex)
        self.same_commits = same_commits
        self.source = sqlite3.connect(history.path, timeout=30)  # reads agentlog's rows
        self.conn = raw_connect(path)
        self.conn.execute(f"PRAGMA synchronous={pragmas.synchronous}")
        self.oid = history.agent_id.hex
        rows = self.rows(1, version)
        if len(rows) != version:
            msg = f"read {len(rows)} stored events, expected {version}"
            raise RuntimeError(msg)
        self.conn.execute(RAW_TABLE)
        self.conn.execute(RAW_SNAPSHOT_TABLE)
        self.conn.execute("BEGIN")
        self.conn.executemany(RAW_INSERT, [(self.oid, v, t, s) for v, (t, s) in enumerate(rows, 1)])
        self.conn.commit()
        self.version = version
        for _ in range(FLOOR_WARM_UP):
            self.step([Commit(tuple(("stored_events", 0, t, s) for t, s in rows[-2:]))])

    def rows(self, first: int, last: int) -> list[tuple[str, bytes]]:
        """Topic and state of the agent's stored events ``first`` to ``last``."""
        found = self.source.execute(SOURCE_ROWS, (*self.ids, first, last)).fetchall()
        return [(str(topic), bytes(state)) for topic, state in found]

    def follow(self, sample: Sample) -> float:
        """One floor step with the rows an agentlog step stored (µs)."""
        if self.same_commits:
            return self.step(list(sample.commits))
        return self.step([Commit(tuple(sample.rows))])

    def step(self, commits: list[Commit]) -> float:
        """Read the latest rows, then commit each transaction's rows (µs)."""
        events = sum(1 for c in commits for row in c.rows if row[0] == "stored_events")
        start = time.perf_counter_ns()
        latest = self.conn.execute(RAW_LATEST, (self.oid, self.version - events)).fetchall()
        for commit in commits:
            self.conn.execute("BEGIN")
            self.conn.executemany(RAW_INSERT, self._events(commit))
            snapshots = [(self.oid, v, t, s) for table, v, t, s in commit.rows if table != EVENTS]
            if snapshots:
                self.conn.executemany(RAW_SNAPSHOT_INSERT, snapshots)
            self.conn.commit()
        elapsed = (time.perf_counter_ns() - start) / 1_000
        if len(latest) != events:
            msg = f"raw read {len(latest)} rows, expected {events}"
            raise RuntimeError(msg)
        return elapsed

    def _events(self, commit: Commit) -> list[tuple[str, int, str, bytes]]:
        """The commit's event rows, numbered after this file's latest."""
        rows = []
        for table, _, topic, state in commit.rows:
            if table == EVENTS:
                self.version += 1
                rows.append((self.oid, self.version, topic, state))
        return rows

    def close(self) -> None:
        """Close both connections."""
        self.source.close()
        self.conn.close()


@dataclass(frozen=True)
class Pragmas:
    """The settings of agentlog's own SQLite connection, which the floor copies."""

    journal_mode: str
    synchronous: int

    @classmethod
    def of(cls, log: AgentLog) -> Pragmas:
        """Read from the log's recorder connection (eventsourcing.sqlite)."""
        datastore = log.recorder.datastore  # type: ignore[attr-defined]
        with datastore.transaction(commit=False) as cursor:
            cursor.execute("PRAGMA journal_mode")
            journal = str(cursor.fetchone()[0])
            cursor.execute("PRAGMA synchronous")
            return cls(journal, int(cursor.fetchone()[0]))


# --- running ------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    """Parsed command line."""

    lengths: list[int]
    out: Path
    steps: int
    budget_s: float
    profile_steps: int


@dataclass
class Results:
    """Everything one run measured."""

    histories: list[History] = field(default_factory=list)
    runs: list[Run] = field(default_factory=list)
    events_alone: EventsAlone | None = None  # what any step recording these events pays
    log_alone: list[LogAlone] = field(default_factory=list)  # per length: no runtime

    def runs_of(self, config: Config) -> list[Run]:
        """A configuration's runs, by length."""
        return [r for r in self.runs if r.config == config]


def run(opts: Options, workdir: Path) -> Results:
    """Every configuration at every length, each with its raw floor."""
    results = Results()
    profiled = {min(opts.lengths), max(opts.lengths)}
    for length in opts.lengths:
        histories = {}
        for compacted in (True, False):
            kind = "compacting" if compacted else "never compacting"
            log(f"N={length:>7,}: writing a {kind} history ...")
            histories[compacted] = build_history(workdir, length, compacted=compacted)
            results.histories.append(histories[compacted])
        for config in CONFIGS:
            log(f"N={length:>7,}: timing {config.key} ...")
            history = histories[config.compacted]
            results.runs.append(
                measure(config, history, opts, workdir, profiled=length in profiled)
            )
        log(f"N={length:>7,}: timing the log alone ...")
        results.log_alone.append(log_alone(histories[True], workdir, opts.steps))
    log("timing a step's events alone ...")
    results.events_alone = events_alone(workdir / "events-alone.db")
    return results


# --- reporting ----------------------------------------------------------------------


def step_table(results: Results) -> str:
    """Per-step median and p95 of each configuration, against the raw floor."""
    header = [
        "configuration",
        "N events",
        "steps timed",
        "context msgs (median)",
        "step median µs",
        "step p95 µs",
        "model step median µs",
        "tool step median µs",
        "commits per step (model, tool)",
        "reads per step (model, tool)",
        "CPU median µs (model, tool)",
        "floor, same commits, median µs",
        "floor, same commits, p95 µs",
        "step / floor (median)",
        "floor, one commit, median µs",
        "step / one-commit floor",
    ]
    rows = []
    for config in CONFIGS:
        for r in results.runs_of(config):
            floor = r.floor_us
            contexts = [s.context for s in r.samples if s.context is not None]
            rows.append(
                [
                    config.label,
                    fmt(r.events),
                    fmt(len(r.samples)),
                    fmt(median(contexts)),
                    fmt(median(r.totals)),
                    fmt(percentile(r.totals, 95)),
                    fmt(median(r.of_kind(StepKind.MODEL))),
                    fmt(median(r.of_kind(StepKind.TOOL))),
                    f"{r.commits_per_step():.2f} ({r.commits_per_step(StepKind.MODEL):.2f}, "
                    f"{r.commits_per_step(StepKind.TOOL):.2f})",
                    f"{r.reads_per_step(StepKind.MODEL):.2f}, "
                    f"{r.reads_per_step(StepKind.TOOL):.2f}",
                    f"{fmt(median(r.cpu_of_kind(StepKind.MODEL)))}, "
                    f"{fmt(median(r.cpu_of_kind(StepKind.TOOL)))}",
                    fmt(median(floor)),
                    fmt(percentile(floor, 95)),
                    f"{median(r.totals) / median(floor):.1f}x",
                    fmt(median(r.floor1_us)),
                    f"{median(r.totals) / median(r.floor1_us):.1f}x",
                ]
            )
    return markdown_table(header, rows)


def breakdown(r: Run) -> dict[str, float]:
    """Mean µs per step of each part, 'other' and the total."""
    parts = {p: statistics.mean(s.parts[p] for s in r.samples) for p in PARTS}
    parts["other"] = statistics.mean(s.other_us for s in r.samples)
    parts["total"] = statistics.mean(r.totals)
    return parts


def breakdown_table(results: Results) -> str:
    """Where the time of a step goes, mean per step."""
    header = [
        "configuration",
        "N events",
        *(f"{p} µs" for p in (*PARTS, "other")),
        "mean step µs",
        "compactions timed",
        "compaction median µs",
    ]
    rows = []
    for config in CONFIGS:
        for r in results.runs_of(config):
            parts = breakdown(r)
            rows.append(
                [
                    config.label,
                    fmt(r.events),
                    *(fmt(parts[p]) for p in (*PARTS, "other", "total")),
                    fmt(len(r.compaction_us)),
                    fmt(median(r.compaction_us)) if r.compaction_us else "-",
                ]
            )
    return markdown_table(header, rows)


def history_table(results: Results) -> str:
    """What the stored histories are."""
    header = [
        "N",
        "history",
        "events",
        "compactions",
        "write s",
        "views catch-up s",
        "file MB (after the run)",
    ]
    rows = [
        [
            fmt(h.length),
            "compacting" if h.compacted else "never compacting",
            fmt(h.events),
            fmt(h.compactions),
            fmt(h.build_s, 1),
            fmt(h.views_s, 1),
            fmt(db_bytes(h.path) / 1e6, 1),
        ]
        for h in results.histories
    ]
    return markdown_table(header, rows)


def cost_of(profile: Profile, label: str, *, own: bool = False) -> float:
    """A function's own or cumulative µs per step in a profile (0 if not called)."""
    c = profile.functions.get(label)
    return 0.0 if c is None else (c.own_us if own else c.cum_us)


def growth_text(small: float, large: float) -> str:
    """How many times ``large`` is ``small``."""
    return "new" if small <= 0 else f"{large / small:,.1f}x"


def growth_rows(small: Profile, large: Profile, *, own: bool, only_agentlog: bool) -> list[str]:
    """Functions whose time per step grew the most from the small to the large history."""
    labels = [
        label
        for label in set(small.functions) | set(large.functions)
        if not only_agentlog or is_agentlog(label)
    ]
    labels.sort(
        key=lambda label: cost_of(large, label, own=own) - cost_of(small, label, own=own),
        reverse=True,
    )
    rows = []
    for label in labels[:TOP_FUNCTIONS]:
        a, b = cost_of(small, label, own=own), cost_of(large, label, own=own)
        calls = large.functions[label].calls if label in large.functions else 0.0
        rows.append(
            f"| `{label}` | {fmt(a)} | {fmt(b)} | {fmt(b - a)} | {growth_text(a, b)} | "
            f"{fmt(calls, 1)} |"
        )
    return rows


def profile_section(results: Results) -> str:
    """Per configuration: the functions whose time per step grew most with history."""
    lines: list[str] = []
    for config in CONFIGS:
        runs = results.runs_of(config)
        small, large = runs[0].profile, runs[-1].profile
        if small is None or large is None:
            continue
        n_small, n_large = f"N={fmt(runs[0].events)}", f"N={fmt(runs[-1].events)}"
        lines += [
            f"**{config.label}** (µs per step; {small.steps} profiled steps at {n_small}, "
            f"{large.steps} at {n_large}):",
            "",
        ]
        for own, only, what in (
            (False, True, "agentlog function, cumulative"),
            (True, False, "any function, own time"),
        ):
            lines += [
                f"| {what} | {n_small} | {n_large} | growth | ratio | calls/step at {n_large} |",
                "| --- | ---: | ---: | ---: | ---: | ---: |",
                *growth_rows(small, large, own=own, only_agentlog=only),
                "",
            ]
        if small.statements or large.statements:
            lines += [
                f"| views' SQL statement | {n_small} | {n_large} | growth | ratio | "
                f"calls/step at {n_large} | SQLite's plan at {n_large} |",
                "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
                *statement_rows(small, large),
                "",
            ]
        commits = [commits_per_step(p) for p in (small, large)]
        if None not in commits:
            lines += [
                f"SQLite commits per step (from the profile): {commits[0]:.1f} at {n_small}, "
                f"{commits[1]:.1f} at {n_large}.",
                "",
            ]
    if not lines:
        return "Not profiled in this run (`--profile-steps 0`)."
    return "\n".join(lines).rstrip()


def statement_growth(small: Profile, large: Profile) -> list[tuple[str, float, float]]:
    """The views' SQL statements by how much their time per step grew."""
    rows = [
        (sql, small.statements[sql].us if sql in small.statements else 0.0, cost.us)
        for sql, cost in large.statements.items()
    ]
    return sorted(rows, key=lambda row: row[2] - row[1], reverse=True)


def statement_rows(small: Profile, large: Profile) -> list[str]:
    """Table rows of the statements whose time per step grew the most."""
    rows = []
    for sql, a, b in statement_growth(small, large)[:TOP_STATEMENTS]:
        cost = large.statements[sql]
        rows.append(
            f"| `{short_sql(sql)}` | {fmt(a)} | {fmt(b)} | {fmt(b - a)} | {growth_text(a, b)} | "
            f"{fmt(cost.calls, 1)} | {cost.plan or '-'} |"
        )
    return rows


def short_sql(sql: str) -> str:
    """A statement short enough for a table cell."""
    return sql if len(sql) <= SQL_WIDTH else sql[: SQL_WIDTH - 1] + "…"


def commits_per_step(profile: Profile) -> float | None:
    """How many SQLite transactions a step committed (from the profile)."""
    cost = commit_cost(profile)
    return None if cost is None else cost.calls


def commit_cost(profile: Profile) -> FunctionCost | None:
    """``sqlite3.Connection.commit`` per step in a profile."""
    for label, cost in profile.functions.items():
        if "'commit'" in label and "sqlite3.Connection" in label:
            return cost
    return None


def step_growth(runs: list[Run]) -> tuple[float, StepKind]:
    """How many times the model step's or the tool step's median (whichever grew more)
    at the largest N is the lowest median of that kind; and which kind."""
    growths = []
    for kind in (StepKind.MODEL, StepKind.TOOL):
        medians = [median(r.of_kind(kind)) for r in runs]
        growths.append((medians[-1] / min(medians), kind))
    return max(growths)


def flatness(label: str, runs: list[Run], values: list[float], unit: str) -> str:
    """One sentence on whether ``values`` (one per run, by N) grow with N."""
    shown = ", ".join(f"{fmt(v)} at N={fmt(r.events)}" for r, v in zip(runs, values, strict=True))
    return f"- {label}: {shown} {unit}; {flat_verdict(values)}."


def grew(small: float, large: float, step_us: float) -> bool:
    """Whether a cost grew: ``GROWTH_RATIO`` times, and by ``SIGNIFICANT`` of a step."""
    return large - small >= SIGNIFICANT * step_us and large >= GROWTH_RATIO * max(small, 1.0)


def growing_parts(runs: list[Run]) -> list[tuple[str, float, float]]:
    """Parts of a step (mean µs per step) that grew with history, from the smallest to
    the largest N, and are largest there (noise goes up and down)."""
    if len(runs) < 2:
        return []
    parts = [breakdown(r) for r in runs]
    step_us = median(runs[-1].totals)
    grown = [
        (p, parts[0][p], parts[-1][p])
        for p in (*PARTS, "other")
        if grew(parts[0][p], parts[-1][p], step_us)
        and parts[-1][p] >= max(part[p] for part in parts)
    ]
    return sorted(grown, key=lambda item: item[2] - item[1], reverse=True)


def growing_functions(runs: list[Run]) -> list[tuple[str, float, float]]:
    """agentlog functions whose cumulative time per step grew like ``growing_parts``,
    fastest-growing first (the callers of a growing function grow by less)."""
    small, large = runs[0].profile, runs[-1].profile
    if len(runs) < 2 or small is None or large is None:
        return []
    step_us = median(runs[-1].totals)
    grown = [
        (label, cost_of(small, label), cost_of(large, label))
        for label in large.functions
        if is_agentlog(label) and grew(cost_of(small, label), cost_of(large, label), step_us)
    ]
    return sorted(grown, key=lambda item: item[2] / max(item[1], 1.0), reverse=True)


def config_reading(results: Results, config: Config) -> list[str]:
    """The observations for one configuration, computed from its measurements."""
    runs = results.runs_of(config)
    medians = [median(r.totals) for r in runs]
    ratios = [m / median(r.floor_us) for r, m in zip(runs, medians, strict=True)]
    ratios1 = [m / median(r.floor1_us) for r, m in zip(runs, medians, strict=True)]
    contexts = [median([s.context for s in r.samples if s.context is not None]) for r in runs]
    lines = [
        f"**{config.label}**",
        "",
        flatness("Median step", runs, medians, "µs"),
        flatness(
            "Median model step", runs, [median(r.of_kind(StepKind.MODEL)) for r in runs], "µs"
        ),
        flatness("Median tool step", runs, [median(r.of_kind(StepKind.TOOL)) for r in runs], "µs"),
        f"- Model context: {fmt(contexts[0])} → {fmt(contexts[-1])} messages (median) "
        f"from N={fmt(runs[0].events)} to N={fmt(runs[-1].events)}.",
        f"- Against the raw sqlite3 floor doing the same commits: "
        f"{fmt(min(ratios), 1)}-{fmt(max(ratios), 1)}x (against one commit per step: "
        f"{fmt(min(ratios1), 1)}-{fmt(max(ratios1), 1)}x).",
        f"- Commits per step: {runs[-1].commits_per_step():.2f} at N={fmt(runs[-1].events)} "
        f"(model step {runs[-1].commits_per_step(StepKind.MODEL):.2f}, tool step "
        f"{runs[-1].commits_per_step(StepKind.TOOL):.2f}; a snapshot every "
        f"{DEFAULT_SNAPSHOT_INTERVAL} events is a commit of its own).",
    ]
    parts = growing_parts(runs)
    if parts:
        shown = "; ".join(f"{p} {fmt(a)} → {fmt(b)} µs" for p, a, b in parts)
        lines.append(f"- Parts that grow with history (mean per step): {shown}.")
    elif len(runs) > 1:
        lines.append(
            f"- No part of the step's mean grows beyond the noise of these timings "
            f"({GROWTH_RATIO:g}x, and by {SIGNIFICANT:.0%} of a step)."
        )
    last = runs[-1].profile
    commits = commit_cost(last) if last is not None else None
    if commits is not None and commits.calls:
        lines.append(
            f"- SQLite commits per step at N={fmt(runs[-1].events)} (cProfile): "
            f"{commits.calls:.1f}, {fmt(commits.own_us)} µs of the step "
            f"({fmt(commits.own_us / commits.calls)} µs each, the views' included)."
        )
    functions = growing_functions(runs)[:TOP_GROWING]
    if functions:
        shown = "; ".join(
            f"`{label}` {fmt(a)} → {fmt(b)} µs ({growth_text(a, b)})" for label, a, b in functions
        )
        lines.append(
            f"- Growing inside a step (agentlog functions; cProfile, cumulative µs per step, "
            f"fastest-growing first): {shown}."
        )
    for sql, a, b, plan in growing_statements(runs)[:TOP_GROWING_SQL]:
        lines.append(
            f"- Growing SQL (views' engine): `{short_sql(sql)}`, {fmt(a)} → {fmt(b)} µs per "
            f"step ({growth_text(a, b)}); SQLite's plan at N={fmt(runs[-1].events)}: {plan}."
        )
    return lines


def growing_statements(runs: list[Run]) -> list[tuple[str, float, float, str]]:
    """The views' SQL statements whose time per step grew (see ``grew``), most first."""
    small, large = runs[0].profile, runs[-1].profile
    if len(runs) < 2 or small is None or large is None:
        return []
    step_us = median(runs[-1].totals)
    return [
        (sql, a, b, large.statements[sql].plan or "-")
        for sql, a, b in statement_growth(small, large)
        if grew(a, b, step_us)
    ]


def reading(results: Results) -> str:
    """A short reading of the numbers, generated from them."""
    worker = results.runs_of(CONFIGS[0])
    growth, kind = step_growth(worker)
    span = f"from N={fmt(worker[0].events)} to N={fmt(worker[-1].events)}"
    grown = [f"the {p} part" for p, _, _ in growing_parts(worker)]
    grown += [f"`{label}`" for label, _, _ in growing_functions(worker)[:1]]
    grown += [f"`{short_sql(sql)}`" for sql, _, _, _ in growing_statements(worker)[:1]]
    if len(worker) < 2:
        answer = "Only one history length was measured."
    elif growth < FLAT_RATIO and not grown:
        answer = (
            f"**Yes**: with snapshots and compaction, the medians of the production model "
            f"step and tool step stay within {growth:.2f}x {span} (below {FLAT_RATIO:g}x "
            "counts as flat), and no part of a step grows."
        )
    elif growth < FLAT_RATIO:
        answer = (
            f"**Not quite**: with snapshots and compaction, the medians of the production "
            f"model step and tool step stay within {growth:.2f}x {span}, flat by the "
            f"{FLAT_RATIO:g}x rule, but something in a step grows with history: "
            f"{'; '.join(grown)} (see below, and the profile)."
        )
    else:
        answer = (
            f"**No**: with snapshots and compaction, the production {kind.value} step's "
            f"median grows {growth:.1f}x {span}; what grows is named below, with the profile."
        )
    rows = statistics.mean(r.rows_per_step for r in results.runs)
    commits = statistics.mean(r.commits_per_step() for r in results.runs)
    pragmas = worker[-1].pragmas
    settings = (
        f"journal_mode={pragmas.journal_mode}, synchronous={pragmas.synchronous}"
        if pragmas is not None
        else "-"
    )
    lines = [
        f"Is per-step overhead flat as history grows? {answer}",
        "",
        f"A step stores {rows:.2f} rows in {commits:.2f} commits of the event store "
        f"(mean over all runs); the floor writes the same rows in the same commits "
        f"({settings}, read from agentlog's connection), and the one-commit floor writes "
        "them in one.",
        "",
    ]
    lines += [*bar_reading(results), ""]
    for config in CONFIGS:
        lines += [*config_reading(results, config), ""]
    return "\n".join(lines).rstrip()


def bar_reading(results: Results) -> list[str]:
    """What the bar of a worker step within ``BAR_RATIO``x the same-commit floor leaves
    for a step's CPU here, next to what the step spends and what its events alone cost."""
    worker, alone = results.runs_of(CONFIGS[0]), results.events_alone
    if not worker or alone is None:
        return []
    floors = [median(r.floor_us) for r in worker]
    ratios = [median(r.totals) / f for r, f in zip(worker, floors, strict=True)]
    met = "**met**" if max(ratios) <= BAR_RATIO else "**NOT met**"
    model = [median(r.cpu_of_kind(StepKind.MODEL)) for r in worker]
    tool = [median(r.cpu_of_kind(StepKind.TOOL)) for r in worker]
    return [
        f"**The bar: a worker step within {BAR_RATIO:g}x the floor doing the same commits.** "
        f"{met} in this run: {fmt(min(ratios), 1)}-{fmt(max(ratios), 1)}x (worker + "
        "compaction, median step / median floor).",
        "",
        f"- The floor's median step here: {fmt(min(floors))}-{fmt(max(floors))} µs, its "
        f"commits (fsync'd) nearly all of it. A worker step makes the same commits, so "
        f"{BAR_RATIO:g}x leaves about {fmt(min(floors) * (BAR_RATIO - 1))}-"
        f"{fmt(max(floors) * (BAR_RATIO - 1))} µs a step for everything else: loading, the "
        "model's context, the events, the SQL, the tool's thread.",
        f"- Spent (CPU, median): model steps {fmt(min(model))}-{fmt(max(model))} µs, tool "
        f"steps {fmt(min(tool))}-{fmt(max(tool))} µs.",
        f"- A step's events alone (made by the agent's commands, applied, sealed into the "
        f"hash chain, encoded by the mapper; no runtime, no SQL), in this run: "
        f"{fmt(alone.model_us)} µs for a model step's two, {fmt(alone.tool_us)} µs for a "
        f"tool step's two ({fmt(alone.step_us)} µs a step).",
        *log_alone_lines(results.log_alone),
    ]


def log_alone_lines(runs: list[LogAlone]) -> list[str]:
    """The log alone against its floor, per length."""
    if not runs:
        return []
    shown = ", ".join(
        f"{fmt(median(r.steps_us))} µs at N={fmt(r.events)} ({fmt(r.ratio, 1)}x)" for r in runs
    )
    return [
        f"- The log alone (those events made by the agent's commands and saved with "
        f"`AgentLog.save` in the same commits: no runtime, no model, no tool, no context), "
        f"each step beside its floor: median step {shown}; "
        f"{fmt(min(r.ratio for r in runs), 1)}-{fmt(max(r.ratio for r in runs), 1)}x the "
        f"floor before the runtime does anything."
    ]


def method(opts: Options) -> str:
    """How the numbers were taken, so they can be judged."""
    return f"""\
- Agent: one agent with a system prompt and a running task. A **model step** asks a
  `FunctionModel` that answers at once with {len(MODEL_TEXT)} characters of text and one
  call of a no-op tool (pure, policy allow); it records ModelResponded + ToolCalled in one
  save. A **tool step** saves ToolStarted (the claim, before the tool runs), runs the
  no-op tool in the runtime's thread, and saves ToolSucceeded (on the agent as it
  claimed the call, without reloading it): two saves.
- Histories: for each N, a fresh SQLite file (native engine) holding one agent of about
  N events, recorded with the Agent's commands (the same events the runtime records),
  saved {BATCH_EVENTS:,} events per save with snapshots at the default interval
  ({DEFAULT_SNAPSHOT_INTERVAL}); "compacting" histories also record a ContextCompacted every
  {COMPACT_EVERY} steps. The views then catch up with the whole log, untimed.
- Configurations: **worker + compaction** is built as `agentlog worker` builds its
  runtime: `open_store(url, embedded=False)` with the worker's aggregate cache, and the
  worker's `LogTranscript` (the latest compaction and what followed, cached between
  steps) as the context source; as the work loop does, the views (state, audit,
  transcript, runnable) catch up in one pass before every turn of {TURN} steps, timed in
  the step that follows (views); every
  {COMPACT_EVERY} steps a summarizer records `agent.compact(...)` (its own load and save,
  timed apart from the steps: "compaction" columns). **worker, no compaction** is the same
  on the history that never compacts, and never compacts: the model's context is the
  whole conversation. **library runtime (defaults)** is `Runtime(log, ...)` on
  `open_log(url)` with nothing configured, as a library user writes it: no views, the
  log's default aggregate cache and the runtime's default cached `LogTranscript` (the
  latest compaction and what followed). It runs on the compacting history after the
  worker did.
- Timing: {WARM_UP_STEPS} untimed steps, then whole rounds (model step, tool step) of
  `runtime.advance(agent_id, after_own_step=...)` (False for the first step of each turn
  of {TURN}, True for the others, as a worker's turn: a model step inside a turn reads
  nothing), each timed with `perf_counter_ns`: up to {opts.steps} steps,
  or fewer once {opts.budget_s:g} s went into them (at least {MIN_STEPS}). Parts: timers
  around the log's `get`, `take` and `chained_events` (load), the transcript source's `messages`
  (context), the model's `decide` (model), `save` (save) and the views' catch-up before
  each turn (views); "other" is the rest of the step: deciding,
  the Agent's commands, building the Context (including the tools' JSON schemas) and
  running the tool in a thread. The breakdown table shows means, the step table medians.
  **CPU** is the process's CPU time during the step (`process_time_ns`, all threads:
  it moves less than wall time with the machine's load); **reads** counts the event
  and snapshot recorders' `select_events` calls during the step (each a transaction
  and a round trip on PostgreSQL).
- Profile: cProfile of up to {opts.profile_steps} further steps (fewer past
  {opts.budget_s / 2:g} s) at the smallest and the largest N, per configuration; a
  function's time per step at both, sorted by how much it grew. In the reading, a part
  or function "grows" if it became at least {GROWTH_RATIO:g}x its cost at the smallest N,
  by at least {SIGNIFICANT:.0%} of the median step at the largest N (parts: and is
  largest there).
- Raw sqlite3 floors, paired with each run: fresh files per configuration and N, with
  tables like eventsourcing.sqlite's (events, snapshots) holding the same history rows
  (topics and bytes copied from the agentlog file), on a connection set up as
  eventsourcing sets up its own (autocommit with an explicit `BEGIN`, `sqlite3.Row`)
  with the journal mode and `synchronous` read from agentlog's own connection. Each
  timed agentlog step notes every transaction its event store committed (the rows and
  bytes written, through the recorders' `insert_events`); right after it, each floor
  takes a step, in alternating order: a `SELECT` of the latest rows (as many events as
  it writes) by originator id and version, then the **same commits** (a model step's
  one save, a tool step's claim and outcome, a snapshot's own commit) or, for the
  second floor, the same rows in **one commit**. Pairing the steps keeps the ratios
  honest while the machine's load changes. The views' catch-up (once per turn of
  {TURN} steps, in the step that follows it) commits to the views' tables, which no floor
  writes.
- "Flat" means the value at the largest N is less than {FLAT_RATIO:g}x the lowest value
  measured: millisecond timings jitter by tens of percent on a shared machine, while a
  cost linear in history would grow with N, by up to
  {max(opts.lengths) / min(opts.lengths):,.0f}x across these lengths."""


def command_line(opts: Options) -> str:
    """The command that reproduces this run."""
    return " ".join(
        [
            ".venv/bin/python bench/bench_step.py",
            f"--lengths {','.join(map(str, opts.lengths))}",
            f"--steps {opts.steps}",
            f"--budget {opts.budget_s:g}",
            f"--profile-steps {opts.profile_steps}",
            "--out docs/benchmarks.md",
        ]
    )


def render(results: Results, opts: Options, run_info: tuple[Path, float, float]) -> str:
    """This benchmark's section of docs/benchmarks.md (without the markers)."""
    workdir, wall_s, load_start = run_info
    question = (
        "What does one worker step cost the framework (a model that answers at once, a "
        "no-op tool) as the agent's history grows, next to raw `sqlite3` doing the same "
        "writes in the same run?"
    )
    opening = preamble("bench_step.py", "Step benchmarks", question, command_line(opts), wall_s)
    return f"""\
{opening}

## Machine

{machine_info(workdir, load_start)}

## Per step

{step_table(results)}

## Where a step's time goes

Mean µs per step; "views" is the catch-up of all views before each turn, in its first step.

{breakdown_table(results)}

## What grows: profile

{profile_section(results)}

## Reading

{reading(results)}

## Histories

{history_table(results)}

## Method

{method(opts)}
"""


# --- command line -------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> Options:
    """The command line, validated."""
    parser = argument_parser(__doc__)
    parser.add_argument(
        "--lengths",
        default=",".join(map(str, DEFAULT_LENGTHS)),
        help="history lengths in events, comma-separated (default: %(default)s)",
    )
    parser.add_argument(
        "--steps",
        type=int,
        default=DEFAULT_STEPS,
        help="most timed steps per configuration and length (default: %(default)s)",
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=DEFAULT_BUDGET_S,
        help="seconds of timed steps per configuration and length, after which timing "
        f"stops (at least {MIN_STEPS} steps; default: %(default)s)",
    )
    parser.add_argument(
        "--profile-steps",
        type=int,
        default=DEFAULT_PROFILE_STEPS,
        help="steps profiled at the smallest and largest length; 0: none (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    lengths = sorted(whole_numbers(parser, "--lengths", args.lengths))
    if min(lengths) < 10:
        parser.error("--lengths: each history needs at least 10 events")
    if args.steps < MIN_STEPS or args.budget < 0 or args.profile_steps < 0:
        parser.error(f"--steps must be at least {MIN_STEPS}; --budget and --profile-steps >= 0")
    return Options(lengths, args.out, args.steps, args.budget, args.profile_steps)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, print the tables and write the report."""
    opts = parse_args(argv)
    started, load_start = time.perf_counter(), os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="agentlog-bench-step-") as tmp:
        workdir = Path(tmp)
        results = run(opts, workdir)
        wall_s = time.perf_counter() - started
        section = render(results, opts, (workdir, wall_s, load_start))
    print(step_table(results), breakdown_table(results), sep="\n\n")
    print(f"\nwall time {wall_s:,.0f} s; section written to {opts.out}")
    write_section(opts.out, "bench_step", section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
