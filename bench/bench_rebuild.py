"""Rebuild benchmark: how fast each view is rebuilt from a large stored log.

Writes one SQLite store (native engine) of N events from many agents working at once,
then measures, in the same run:

* ``Projections.rebuild(name)`` of each view, each in a fresh process: events/s, and
  how much the process's peak RSS grew during the rebuild;
* baselines on the same rows: a raw ``sqlite3`` read in pages like the follower's, the
  same read plus ``json.loads`` of each state, and agentlog's own read and decode
  (``select_notifications`` + the mapper) with no view at all;
* a cProfile of the first events of each view's rebuild, summarised by where the time
  goes (reading and decoding, the view's work, moving its position; SQLAlchemy, SQLite,
  pydantic, json ...).

The results replace their own section of ``docs/benchmarks.md`` (between marker
comments, appended if missing); the rest of the file is left as it is::

    .venv/bin/python bench/bench_rebuild.py [--events 1000000] [--agents 1000]
        [--views state,audit,transcript,runnable] [--out docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import inspect
import itertools
import json
import os
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import CodeType
from typing import TYPE_CHECKING, Any, TypeAlias, TypeGuard
from uuid import UUID

import common
from common import (
    GOAL,
    MODEL,
    MODEL_TEXT,
    TOOL_OUTPUT,
    argument_parser,
    fmt,
    git_version,
    log,
    markdown_table,
    names,
    write_section,
)
from sqlalchemy import func, select

from agentlog.adapters.mapper import inflate
from agentlog.adapters.storage import open_log
from agentlog.adapters.views import Store, open_store
from agentlog.domain.agent import Agent
from agentlog.domain.application import AgentLog
from agentlog.domain.values import (
    AgentConfig,
    EffectClass,
    Policy,
    TokenUsage,
    ToolCallRequest,
)
from agentlog.projections import DEFAULT_VIEWS, Projections
from agentlog.projections.follower import REBUILD_BATCHES

if TYPE_CHECKING:
    from _lsprof import profiler_entry

DEFAULT_EVENTS = 1_000_000
DEFAULT_AGENTS = 1_000
VIEWS = tuple(cls.name for cls in DEFAULT_VIEWS)
ONE_PASS = "all four, one pass"
PAGE = 1_000  # rows per page of the raw reads: the followers' default batch size
RAW_RUNS = 3  # raw reads are cheap: median of a few
DEFAULT_PROFILE_EVENTS = 50_000
DEFAULT_TIME_LIMIT = 600.0  # seconds per view; slower rebuilds stop and are extrapolated
SEGMENTS = 10  # the rebuild's time is also taken at every tenth of the log
GROWS = 1.5  # last tenth over first tenth from which the reading calls the cost growing
VIEW_GOAL = 40_000  # events/s each view's rebuild is held to (issue 8) ...
ONE_PASS_GOAL = 20_000  # ... and all four in one pass
TOP_FUNCTIONS = 6
FRAMEWORK_FILES = ("projections.py", "follower.py", "collector.py")  # rebuild, batches
FRAMEWORK_NAMES = ("process", "<listcomp>", "<genexpr>", "<dictcomp>", "<lambda>")
DB_NAME = "rebuild.db"
PACKAGE_ROOT = Path(inspect.getfile(Projections)).resolve().parent.parent
AGENTLOG_PARTS = ("adapters", "cli", "domain", "projections")  # (.venv lives in the root too)

# The workload: one round of an agent is a model response with one tool call, then the
# call's protocol; some rounds ask a person, a few fail, and the context is compacted.
SYSTEM_PROMPT = "You are a careful refactoring agent. Change code only when tests pass."
USER_TEXT = "Please also check the scripts/ folder, and do not touch vendored code."
SUMMARY = "Migrated the config loader in the modules read so far; tests pass. " * 6
RESULT = "All modules migrated; 3 call sites needed manual review."
ASK_EVERY = 8  # every 8th round writes a file: policy 'ask', a person decides
DENY_EVERY = 5  # ... and every 5th of those is denied
FAIL_EVERY = 20  # every 20th tool run fails
USER_EVERY = 15  # a person says something every 15 rounds
COMPACT_EVERY = 25  # the context is compacted every 25 rounds
FINISH_EVERY = 4  # one agent in 4 completes its task ...
FINISH_AT = 0.75  # ... after this share of the average events per agent

RAW_PAGE = (
    "SELECT rowid, originator_id, originator_version, topic, state FROM stored_events "
    "WHERE rowid > ? ORDER BY rowid LIMIT ?"
)
PAGE_SHAPE = (
    "SELECT AVG(n) FROM (SELECT COUNT(DISTINCT originator_id) AS n FROM stored_events "
    "GROUP BY (rowid - 1) / ?)"
)
EVENT_MIX = "SELECT topic, COUNT(*) FROM stored_events GROUP BY topic ORDER BY 2 DESC"

# Where self time goes, by the file (or C function) it is spent in; first match wins.
AREAS: tuple[tuple[str, Callable[[str], bool]], ...] = (
    ("SQLite (C: execute, fetch, commit)", lambda where: "sqlite3." in where),
    ("SQLAlchemy Core (statements, cache keys, compiling, results)", lambda w: "sqlalchemy" in w),
    ("pydantic (validation, model attributes)", lambda where: "pydantic" in where),
    ("json (encode, decode)", lambda where: "json" in where),
    ("agentlog views (projections/)", lambda where: agentlog_part(where) == "projections"),
    ("agentlog mapper and domain", lambda where: agentlog_part(where) is not None),
    ("eventsourcing", lambda where: "eventsourcing" in where),
)
OTHER_AREA = "other Python (uuid, datetime, builtins, ...)"


@dataclass(frozen=True)
class Options:
    """Parsed command line."""

    events: int
    agents: int
    views: list[str]
    out: Path
    profile_events: int
    time_limit: float
    workdir: Path | None
    reuse_store: bool = False


@dataclass(frozen=True)
class WriteResult:
    """What writing the store cost (not the measured quantity), and what it holds."""

    events: int
    agents: int
    seconds: float
    saves: int
    db_bytes: int
    mix: list[tuple[str, int]]
    agents_per_page: float
    reused_from: str | None = None
    """When the store is a copy of one an earlier run wrote (``--reuse-store``): when."""


@dataclass(frozen=True)
class Baseline:
    """One way of reading every row without any view: median of its runs."""

    label: str
    short: str
    rows: int
    seconds: float
    cpu_seconds: float
    runs: int

    @property
    def rate(self) -> float:
        """Rows per second (wall clock)."""
        return self.rows / self.seconds

    @property
    def cpu_us(self) -> float:
        """CPU microseconds per row."""
        return self.cpu_seconds * 1e6 / self.rows


@dataclass(frozen=True)
class ViewResult:
    """One view's timed rebuild, in its own process."""

    view: str
    head: int
    position: int
    seconds: float
    cpu_seconds: float
    complete: bool
    rows: int
    rss_before_kib: int
    rss_peak_kib: int
    batch_size: int
    marks: list[tuple[int, float, float]]
    """(position, wall s, CPU s) at the start, every tenth of the log, and the end."""
    code: dict[str, str]
    """Digests of agentlog's source files as this view's process loaded them."""
    decode_cpu: list[float] = field(default_factory=list)
    """CPU s spent decoding events (the follower's ``_decode``) by each of ``marks``."""

    @property
    def rate(self) -> float:
        """Events applied per second."""
        return self.position / self.seconds

    @property
    def cpu_us(self) -> float:
        """CPU microseconds per event applied."""
        return self.cpu_seconds * 1e6 / self.position

    @property
    def cpu_rate(self) -> float:
        """Events applied per CPU second: the rate with a core of its own."""
        return self.position / self.cpu_seconds

    def segment_cpu_us(self, index: int) -> float:
        """CPU µs per event between ``marks[index - 1]`` and ``marks[index]``."""
        (p0, _, c0), (p1, _, c1) = self.marks[index - 1], self.marks[index]
        return (c1 - c0) * 1e6 / (p1 - p0) if p1 > p0 else 0.0

    @property
    def growth(self) -> float:
        """CPU time per event of the last tenth over the first: > 1, it grows with the log."""
        first = self.segment_cpu_us(1)
        return self.segment_cpu_us(len(self.marks) - 1) / first if first else 0.0

    def segment_over_decoding(self, index: int) -> float:
        """The CPU time of segment ``index`` over the part of it spent decoding events:
        the same work in every tenth, so a machine slowed by other work cancels out."""
        (_, _, c0), (_, _, c1) = self.marks[index - 1], self.marks[index]
        decoding = self.decode_cpu[index] - self.decode_cpu[index - 1]
        return (c1 - c0) / decoding if decoding > 0 else 0.0

    @property
    def relative_growth(self) -> float | None:
        """``growth`` with each tenth's CPU taken relative to its decoding (None: not
        measured, or nothing decoded)."""
        if len(self.decode_cpu) != len(self.marks):
            return None
        first = self.segment_over_decoding(1)
        last = self.segment_over_decoding(len(self.marks) - 1)
        return last / first if first and last else None

    @property
    def full_seconds(self) -> float:
        """The rebuild's time over the whole log (extrapolated if it was stopped)."""
        return self.seconds if self.complete else self.head / self.rate


@dataclass(frozen=True)
class ProfileSummary:
    """A cProfile of the first events of one view's rebuild, summarised."""

    view: str
    events: int
    seconds: float
    phases: list[tuple[str, float]]
    areas: list[tuple[str, float]]
    top: list[tuple[str, int, float]]


@dataclass(frozen=True)
class RunInfo:
    """About the run as a whole."""

    workdir: Path
    wall_s: float
    load_start: float
    code: dict[str, str]
    """Digests of agentlog's source files at the start (the write and the baselines)."""
    git: str


@dataclass(frozen=True)
class Measured:
    """One view's rebuild with its profile (None when profiling is off)."""

    result: ViewResult
    profile: ProfileSummary | None


class _StopRebuildError(Exception):
    """Raised from the progress callback to end a rebuild early."""


_DONE = object()  # what next() returns once an agent's life is over


# --- the workload -------------------------------------------------------------------


def new_agent(index: int) -> Agent:
    """A fresh agent with a running task, as a worker would start it."""
    config = AgentConfig(
        model=MODEL,
        system_prompt=SYSTEM_PROMPT,
        tool_policies={"read_file": Policy.ALLOW, "run_tests": Policy.ALLOW},
    )
    agent = Agent.create(f"bench-{index}", config)
    agent.start_task(GOAL)
    return agent


def agent_life(agent: Agent, finish_at: int | None) -> Iterator[None]:
    """One worker step at a time (1-2 new events each), until the task is completed
    once the agent has ``finish_at`` events (never, if None)."""
    for i in itertools.count():
        if finish_at is not None and agent.version >= finish_at:
            agent.complete(RESULT)
            yield
            return
        if i % USER_EVERY == USER_EVERY - 1:
            agent.receive_user_message(USER_TEXT)
            yield
        yield from tool_round(agent, i)
        if i % COMPACT_EVERY == COMPACT_EVERY - 1:
            agent.compact(agent.version, SUMMARY, summarizer=f"model:{MODEL}")
            yield


def tool_round(agent: Agent, i: int) -> Iterator[None]:
    """The model asks for a tool; the call is asked about if need be, run, and ends."""
    asks = i % ASK_EVERY == ASK_EVERY - 1
    tool = "write_file" if asks else ("run_tests" if i % 3 == 0 else "read_file")
    request = ToolCallRequest(call_id=f"call-{i}", tool=tool, args={"path": f"src/m_{i}.py"})
    usage = TokenUsage(prompt=1_200 + i % 700, completion=80 + i % 40)
    agent.record_model_response(MODEL_TEXT, model=MODEL, tool_calls=(request,), usage=usage)
    effect = EffectClass.IDEMPOTENT if asks else EffectClass.PURE
    agent.call_tool(request, effect=effect)
    yield
    if asks:
        agent.request_permission(request.call_id)
        yield
        if (i // ASK_EVERY) % DENY_EVERY == DENY_EVERY - 1:
            agent.deny(request.call_id, approver="alice", reason="not in this change")
            yield
            return
        agent.grant(request.call_id, approver="alice")
        yield
    agent.start_tool(request.call_id, worker_id="worker-1")
    yield
    if i % FAIL_EVERY == FAIL_EVERY - 1:
        agent.fail_tool(request.call_id, "TimeoutError: tool took longer than 30 s")
    else:
        agent.succeed(request.call_id, {"content": TOOL_OUTPUT, "lines": 24})
    yield


def write_events(app: AgentLog, events: int, agent_count: int) -> int:
    """Store exactly ``events`` events; return how many saves that took.

    Every round, each agent still working takes one step, and the round is saved in one
    ``app.save(*agents)``: the log interleaves the agents like concurrent workers do.
    """
    agents = [new_agent(i) for i in range(agent_count)]
    finish_at = int(events / agent_count * FINISH_AT)
    lives = {
        agent.id: agent_life(agent, finish_at if i % FINISH_EVERY == FINISH_EVERY - 1 else None)
        for i, agent in enumerate(agents)
    }
    app.save(*agents)
    total, saves, reported = 2 * agent_count, 1, 0
    while events - total >= 2:
        total += step_round(agents, lives, events - total)
        app.save(*agents)
        saves += 1
        if total * 10 // events > reported:
            reported = total * 10 // events
            log(f"  wrote {total:,} events")
    if total < events:  # one event left: a person says something to an agent that works on
        agents[0].receive_user_message(USER_TEXT)
        app.save(agents[0])
        saves += 1
    return saves


def step_round(agents: list[Agent], lives: dict[UUID, Iterator[None]], room: int) -> int:
    """Advance each working agent by one step while 2 more events fit; events added."""
    added = 0
    for agent in agents:
        life = lives.get(agent.id)
        if life is None:
            continue
        if room - added < 2:
            break
        before = agent.version
        if next(life, _DONE) is _DONE:
            del lives[agent.id]  # the task is over
        added += agent.version - before
    return added


def write_store(path: Path, opts: Options) -> WriteResult:
    """Write the store with snapshots and views off; check it holds exactly N events."""
    app = open_log(store_url(path), snapshot_interval=0)
    try:
        start = time.perf_counter()
        saves = write_events(app, opts.events, opts.agents)
        seconds = time.perf_counter() - start
        head = app.recorder.max_notification_id()
    finally:
        app.close()
    if head != opts.events:
        msg = f"wrote {head} events, expected {opts.events}"
        raise RuntimeError(msg)
    mix, per_page = log_shape(path)
    return WriteResult(opts.events, opts.agents, seconds, saves, db_bytes(path), mix, per_page)


def kept_paths(path: Path) -> tuple[Path, Path]:
    """Where ``--reuse-store`` keeps the written store, and what writing it cost."""
    return path.with_name(f"kept-{path.name}"), path.with_name(f"kept-{path.stem}.json")


def keep_store(path: Path, write: WriteResult) -> None:
    """Keep a copy of the store as written (before any view is built in it)."""
    kept, meta = kept_paths(path)
    shutil.copyfile(path, kept)
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    meta.write_text(json.dumps({**asdict(write), "reused_from": when}))


def reused_store(path: Path, opts: Options) -> WriteResult | None:
    """A fresh copy of the store kept by an earlier run with the same events and agents,
    and what writing it cost then; None if there is none."""
    kept, meta = kept_paths(path)
    if not (kept.exists() and meta.exists()):
        return None
    data = json.loads(meta.read_text())
    if (data["events"], data["agents"]) != (opts.events, opts.agents):
        return None
    log(f"copying the store kept by a run of {data['reused_from']} ...")
    shutil.copyfile(kept, path)
    mix = [(str(topic), int(n)) for topic, n in data.pop("mix")]
    return WriteResult(**data, mix=mix)


def log_shape(path: Path) -> tuple[list[tuple[str, int]], float]:
    """The event mix, and how many distinct agents a page of the log holds on average."""
    conn = sqlite3.connect(path)
    try:
        mix = [(short_topic(t), int(n)) for t, n in conn.execute(EVENT_MIX)]
        (per_page,) = conn.execute(PAGE_SHAPE, (PAGE,)).fetchone()
    finally:
        conn.close()
    return mix, float(per_page)


def short_topic(topic: str) -> str:
    """'agentlog:Agent.ToolCalled@1' -> 'ToolCalled'."""
    name = topic.rsplit(":", maxsplit=1)[-1].split("@", maxsplit=1)[0]
    return name.rsplit(".", maxsplit=1)[-1]


def store_url(path: Path) -> str:
    """The agentlog URL of a SQLite file (native engine)."""
    return f"sqlite:///{path}"


def db_bytes(path: Path) -> int:
    """Size of a SQLite database with its WAL files."""
    names = (path, Path(f"{path}-wal"), Path(f"{path}-shm"))
    return sum(p.stat().st_size for p in names if p.exists())


# --- baselines ----------------------------------------------------------------------


def raw_connect(path: Path) -> sqlite3.Connection:
    """A connection set up as eventsourcing.sqlite sets up its own (autocommit, WAL)."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL;")
    return conn


def raw_pages(conn: sqlite3.Connection) -> Iterator[list[Any]]:
    """Every stored event, a page at a time, in log order (plain tuples)."""
    last = 0
    while rows := conn.execute(RAW_PAGE, (last, PAGE)).fetchall():
        yield rows
        last = rows[-1][0]


def clock() -> tuple[float, float]:
    """Now, on the wall clock and in this process's CPU time."""
    return time.perf_counter(), time.process_time()


def since(start: tuple[float, float]) -> tuple[float, float]:
    """Wall and CPU seconds since ``start`` (from :func:`clock`)."""
    wall, cpu = clock()
    return wall - start[0], cpu - start[1]


Timed = tuple[int, float, float]  # rows, wall seconds, CPU seconds


def raw_read(path: Path, *, decode_json: bool) -> Timed:
    """One paged read of every row, with or without ``json.loads`` of each state."""
    conn = raw_connect(path)
    try:
        start, count = clock(), 0
        for rows in raw_pages(conn):
            if decode_json:
                for row in rows:
                    json.loads(inflate(row[4]))
            count += len(rows)
        return count, *since(start)
    finally:
        conn.close()


def decoded_read(path: Path) -> Timed:
    """agentlog's own read and decode of every event, as a follower does, with no view."""
    app = open_log(store_url(path), snapshot_interval=0)
    try:
        decode = app.mapper.to_domain_event
        start, position, count = clock(), 0, 0
        while notifications := app.recorder.select_notifications(position + 1, PAGE):
            for notification in notifications:
                decode(notification)
            count += len(notifications)
            position = notifications[-1].id
        return count, *since(start)
    finally:
        app.close()


def baseline(label: str, short: str, read: Callable[[], Timed], runs: int) -> Baseline:
    """The medians of ``runs`` reads."""
    results = [read() for _ in range(runs)]
    wall = statistics.median(r[1] for r in results)
    cpu = statistics.median(r[2] for r in results)
    return Baseline(label, short, results[0][0], wall, cpu, runs)


def measure_baselines(path: Path) -> list[Baseline]:
    """Raw sqlite3, raw sqlite3 + json, and agentlog read + decode, on the same rows."""
    return [
        baseline(
            "raw sqlite3 read",
            "raw read",
            lambda: raw_read(path, decode_json=False),
            RAW_RUNS,
        ),
        baseline(
            "raw sqlite3 read + inflate + json.loads",
            "raw read + json",
            lambda: raw_read(path, decode_json=True),
            RAW_RUNS,
        ),
        baseline(
            "agentlog read + decode, no view",
            "read + decode",
            lambda: decoded_read(path),
            1,
        ),
    ]


# --- one view, in a child process ---------------------------------------------------


def max_rss_kib() -> int:
    """This process's peak resident set size so far, in KiB (Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def open_for_rebuild(path: Path, names: list[str]) -> tuple[Store, int]:
    """The store with views neither embedded nor caught up, and the log's head."""
    store = open_store(store_url(path), embedded=False, catch_up=False)
    for name in names:
        store.views.view_class(name)  # fails now on an unknown view
    return store, store.log.recorder.max_notification_id() or 0


def target_label(names: list[str]) -> str:
    """What a rebuild is called in the tables: its view, or the views of one pass."""
    if len(names) == 1:
        return names[0]
    return ONE_PASS if set(names) == set(VIEWS) else f"one pass: {'+'.join(names)}"


def timed_rebuild(path: Path, names: list[str], time_limit: float) -> ViewResult:
    """Rebuild the views in one pass; stop it if it runs past ``time_limit`` seconds."""
    store, head = open_for_rebuild(path, names)
    marks: list[tuple[int, float, float]] = [(0, 0.0, 0.0)]
    decoding = timed_decoding(store.views)
    decode_cpu = [0.0]

    def progress(position: int, _head: int) -> None:
        wall, cpu = since(start)
        if position * SEGMENTS >= head * len(marks):
            marks.append((position, wall, cpu))
            decode_cpu.append(decoding[0])
        if wall > time_limit:
            if marks[-1][0] != position:
                marks.append((position, wall, cpu))
                decode_cpu.append(decoding[0])
            raise _StopRebuildError

    try:
        rss_before = max_rss_kib()
        start = clock()
        try:
            store.views.rebuild_many(names, progress)
            complete = True
        except _StopRebuildError:
            complete = False
        seconds, cpu_seconds = since(start)
        rss_peak = max_rss_kib()
        rows = sum(count_rows(store.views, name) for name in names) if complete else 0
        batch_size = store.views.batch_size
    finally:
        store.close()
    position = marks[-1][0] if not complete else head
    return ViewResult(
        target_label(names),
        head,
        position,
        seconds,
        cpu_seconds,
        complete,
        rows,
        rss_before,
        rss_peak,
        batch_size,
        marks,
        source_digests(),
        decode_cpu,
    )


def timed_decoding(views: Projections) -> list[float]:
    """Count the CPU time the views' follower spends decoding events (its ``_decode``,
    wrapped); the one-item list holds the running total."""
    follower = views._follower  # the benchmark times one of its steps
    decode = follower._decode
    total = [0.0]

    def timed(*args: Any) -> Any:
        started = time.process_time()
        try:
            return decode(*args)
        finally:
            total[0] += time.process_time() - started

    setattr(follower, "_decode", timed)  # noqa: B010 - an attribute mypy calls a method
    return total


def count_rows(views: Projections, name: str) -> int:
    """Rows in the serving table of a view."""
    with views.engine.connect() as conn:
        table = views.table(conn, name)
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def profiled_rebuild(path: Path, names: list[str], events: int) -> ProfileSummary:
    """cProfile the first ``events`` events of a rebuild (one pass), then stop it."""
    store, _ = open_for_rebuild(path, names)
    profiler = cProfile.Profile()
    reached = [0]

    def progress(position: int, _head: int) -> None:
        reached[0] = position
        if position >= events:
            raise _StopRebuildError

    try:
        start = time.perf_counter()
        profiler.enable()
        try:
            store.views.rebuild_many(names, progress)
        except _StopRebuildError:
            pass
        finally:
            profiler.disable()
        seconds = time.perf_counter() - start
    finally:
        store.close()
    return summarise(profiler, target_label(names), reached[0], seconds)


def child(target: str, path: Path, time_limit: float, profile_events: int) -> int:
    """The child process: rebuild the view (or the views of a pass, comma-separated),
    then profile it; one JSON line on stdout."""
    names = target.split(",")
    result = timed_rebuild(path, names, time_limit)
    profile = profiled_rebuild(path, names, profile_events) if profile_events else None
    data = {"result": asdict(result), "profile": asdict(profile) if profile else None}
    print(json.dumps(data))
    return 0


def measure_view(path: Path, target: str, opts: Options) -> Measured:
    """Run one view's rebuild, or one pass of several (and profile), in a fresh process."""
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        target,
        "--db",
        str(path),
        "--time-limit",
        str(opts.time_limit),
        "--profile-events",
        str(min(opts.profile_events, opts.events)),
    ]
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True)
    data = json.loads(done.stdout.strip().splitlines()[-1])
    profile = data["profile"]
    return Measured(result_from(data["result"]), profile_from(profile) if profile else None)


def result_from(data: dict[str, Any]) -> ViewResult:
    """A ViewResult back from its JSON form (tuples come back as lists)."""
    marks = [(int(p), float(w), float(c)) for p, w, c in data.pop("marks")]
    return ViewResult(**data, marks=marks)


def profile_from(data: dict[str, Any]) -> ProfileSummary:
    """A summary back from its JSON form (tuples come back as lists)."""
    return ProfileSummary(
        view=data["view"],
        events=data["events"],
        seconds=data["seconds"],
        phases=[(str(n), float(s)) for n, s in data["phases"]],
        areas=[(str(n), float(s)) for n, s in data["areas"]],
        top=[(str(n), int(c), float(s)) for n, c, s in data["top"]],
    )


# --- profile summary ----------------------------------------------------------------


def where_of(code: CodeType | str) -> str:
    """The file a profiled function lives in, or a C function's description."""
    return code.co_filename if isinstance(code, CodeType) else code


def label_of(code: CodeType) -> str:
    """'projections/agent_rows.py:80(_store)' for a function of agentlog."""
    relative = Path(code.co_filename).resolve().relative_to(PACKAGE_ROOT)
    return f"{relative}:{code.co_firstlineno}({code.co_name})"


def area_of(code: CodeType | str) -> str:
    """Which of AREAS a profiled function's self time belongs to."""
    where = where_of(code)
    return next((name for name, test in AREAS if test(where)), OTHER_AREA)


def agentlog_part(where: str) -> str | None:
    """'projections', 'domain' ... for a file of agentlog's own code, else None."""
    try:
        relative = Path(where).resolve().relative_to(PACKAGE_ROOT)
    except ValueError:
        return None
    part = relative.parts[0] if relative.parts else ""
    return part if part in AGENTLOG_PARTS else None


def is_agentlog(code: CodeType | str) -> TypeGuard[CodeType]:
    """True for functions defined in agentlog's own code."""
    return isinstance(code, CodeType) and agentlog_part(code.co_filename) is not None


Entries: TypeAlias = "list[profiler_entry]"  # what cProfile.Profile.getstats() returns


def summarise(profiler: cProfile.Profile, view: str, events: int, seconds: float) -> ProfileSummary:
    """Phases (by cumulative time), areas (by self time), and agentlog's top functions."""
    entries: Entries = profiler.getstats()
    return ProfileSummary(
        view, events, seconds, phase_times(entries, seconds), area_times(entries), top(entries)
    )


def area_times(entries: Entries) -> list[tuple[str, float]]:
    """Self time summed by area, largest first."""
    areas: dict[str, float] = {}
    for entry in entries:
        area = area_of(entry.code)
        areas[area] = areas.get(area, 0.0) + entry.inlinetime
    return sorted(areas.items(), key=lambda kv: -kv[1])


def cumulative(entries: Entries, part: str, file: str, function: str) -> float:
    """Cumulative time of the functions named ``function`` in files ending with ``file``
    (in agentlog's ``part`` folder, or anywhere if ``part`` is empty)."""
    return sum(
        e.totaltime
        for e in entries
        if isinstance(e.code, CodeType)
        and e.code.co_name == function
        and e.code.co_filename.endswith(file)
        and (not part or agentlog_part(e.code.co_filename) == part)
    )


def phase_times(entries: Entries, seconds: float) -> list[tuple[str, float]]:
    """Where a rebuild's time goes, by the follower's steps (cumulative times)."""
    read = cumulative(entries, "", "eventsourcing/sqlite.py", "select_notifications")
    decode = cumulative(entries, "projections", "follower.py", "_decode")
    batches = cumulative(entries, "projections", "follower.py", "_apply")
    flushes = cumulative(entries, "projections", "follower.py", "_flush")
    process = cumulative(entries, "projections", ".py", "process")
    write = cumulative(entries, "projections", ".py", "flush")
    swap = cumulative(entries, "projections", "builds.py", "swap")
    phases = [
        ("read the log (select_notifications)", read),
        ("decode events (mapper, pydantic)", decode),
        ("the views' process() (in memory: replay, rows)", process),
        ("the views' flush() (bulk writes)", write),
        ("move the positions and commit", batches + flushes - process - write),
        ("index and swap in", swap),
    ]
    rest = seconds - sum(s for _, s in phases)
    return [*phases, ("the rest (new tables, catalog, profiler)", rest)]


def top(entries: Entries) -> list[tuple[str, int, float]]:
    """agentlog's functions below the framework (follower, process), by cumulative time."""
    rows = [
        (label_of(e.code), e.callcount, e.totaltime)
        for e in entries
        if is_agentlog(e.code)
        and e.code.co_name not in FRAMEWORK_NAMES
        and Path(e.code.co_filename).name not in FRAMEWORK_FILES
    ]
    return sorted(rows, key=lambda row: -row[2])[:TOP_FUNCTIONS]


# --- running ------------------------------------------------------------------------


def run(opts: Options, workdir: Path) -> tuple[WriteResult, list[Baseline], list[Measured]]:
    """Write the store (or copy the one kept), read it raw, then rebuild each view in its
    own process."""
    path = workdir / DB_NAME
    write = reused_store(path, opts) if opts.reuse_store else None
    if write is None:
        log(f"writing {opts.events:,} events of {opts.agents:,} agents ...")
        write = write_store(path, opts)
        if opts.reuse_store:
            keep_store(path, write)
    log(f"  store ready (written in {write.seconds:,.0f} s); baselines ...")
    baselines = measure_baselines(path)
    for b in baselines:
        log(f"  {b.label}: {b.rate:,.0f} rows/s")
    measured: list[Measured] = []
    targets = [*opts.views, *([",".join(opts.views)] if len(opts.views) > 1 else [])]
    for target in targets:
        label = target_label(target.split(","))
        log(f"rebuilding {label} ...")
        measured.append(m := measure_view(path, target, opts))
        note = "" if m.result.complete else f" (stopped at {m.result.position:,})"
        log(f"  {label}: {m.result.rate:,.0f} events/s, {m.result.seconds:,.1f} s{note}")
    return write, baselines, measured


# --- reporting ----------------------------------------------------------------------


def pct(part: float, whole: float) -> str:
    """A share as a whole percentage."""
    return f"{100 * part / whole:.0f}%" if whole else "-"


def rebuild_table(measured: list[Measured], baselines: list[Baseline]) -> str:
    """Each view's rebuild, and its CPU time per event over each baseline's per row."""
    header = [
        "view",
        "events",
        "rebuild s",
        "events/s",
        "CPU s",
        "CPU µs/event",
        "events/CPU s",
        *(f"vs {b.short}" for b in baselines),
    ]
    return markdown_table(header, [rebuild_row(m.result, baselines) for m in measured])


def shape_table(measured: list[Measured]) -> str:
    """Whether the cost per event grows along the log, the rebuilt rows, and memory."""
    header = [
        "view",
        "CPU µs/event, first tenth",
        "last tenth",
        "last / first",
        "same, over decoding",
        "rows in view",
        "peak RSS MiB",
        "RSS growth MiB",
    ]
    rows = [
        [
            r.view,
            fmt(r.segment_cpu_us(1), 1),
            fmt(r.segment_cpu_us(len(r.marks) - 1), 1),
            f"{r.growth:.1f}x",
            "-" if r.relative_growth is None else f"{r.relative_growth:.1f}x",
            fmt(r.rows) if r.complete else "-",
            fmt(r.rss_peak_kib / 1024),
            fmt((r.rss_peak_kib - r.rss_before_kib) / 1024),
        ]
        for r in (m.result for m in measured)
    ]
    return markdown_table(header, rows)


def rebuild_row(r: ViewResult, baselines: list[Baseline]) -> list[str]:
    """One view's row of the rebuild table."""
    return [
        r.view,
        fmt(r.head) if r.complete else f"{fmt(r.position)} of {fmt(r.head)}",
        fmt(r.seconds, 1) if r.complete else f"{fmt(r.full_seconds)} (extrapolated)",
        fmt(r.rate),
        fmt(r.cpu_seconds, 1),
        fmt(r.cpu_us, 1),
        fmt(r.cpu_rate),
        *(f"{r.cpu_us / b.cpu_us:,.1f}x" for b in baselines),
    ]


def baseline_table(baselines: list[Baseline]) -> str:
    """The reads without any view."""
    header = ["read, same rows, same run", "rows", "runs", "s (median)", "rows/s"]
    header += ["CPU s (median)", "CPU µs/row"]
    rows = [
        [
            b.label,
            fmt(b.rows),
            str(b.runs),
            fmt(b.seconds, 2),
            fmt(b.rate),
            fmt(b.cpu_seconds, 2),
            fmt(b.cpu_us, 2),
        ]
        for b in baselines
    ]
    return markdown_table(header, rows)


def mix_table(write: WriteResult) -> str:
    """How many events of each type the log holds."""
    rows = [[topic, fmt(n), pct(n, write.events)] for topic, n in write.mix]
    return markdown_table(["event type", "events", "share"], rows)


def profile_section(profile: ProfileSummary) -> str:
    """One view's profile: phases, areas of self time, agentlog's top functions."""
    total = profile.seconds
    phases = "; ".join(f"{name} {pct(s, total)}" for name, s in profile.phases)
    areas = "; ".join(f"{name} {pct(s, total)}" for name, s in profile.areas if s >= total / 100)
    rows = [
        [f"`{label}`", fmt(calls / profile.events, 2), fmt(cum, 2), pct(cum, total)]
        for label, calls, cum in profile.top
    ]
    table = markdown_table(["agentlog function", "calls per event", "cumulative s", "share"], rows)
    return f"""\
**{profile.view}** (first {fmt(profile.events)} events, {fmt(profile.seconds, 1)} s profiled,
{fmt(profile.events / profile.seconds)} events/s under the profiler)

- Phases (cumulative time): {phases}.
- Self time by area: {areas}.

{table}"""


def profiles(measured: list[Measured]) -> str:
    """Every view's profile summary, or a note that profiling was off."""
    parts = [profile_section(m.profile) for m in measured if m.profile]
    return "\n\n".join(parts) if parts else "Not profiled in this run (`--profile-events 0`)."


def phase_share(profile: ProfileSummary | None, start: str) -> float | None:
    """The share of the profiled time in the phase whose name starts with ``start``."""
    if profile is None or not profile.seconds:
        return None
    return next((s for n, s in profile.phases if n.startswith(start)), 0.0) / profile.seconds


def view_reading(m: Measured, decoded: Baseline) -> str:
    """One sentence or two on one view, computed from its numbers."""
    r, p = m.result, m.profile
    text = (
        f"- **{r.view}**: {fmt(r.rate)} events/s, {fmt(r.cpu_us, 1)} CPU µs per event; "
        f"reading and decoding alone take {fmt(decoded.cpu_us, 1)} µs, so about "
        f"{pct(decoded.cpu_us, r.cpu_us)} of the rebuild is the read and decode, the rest "
        "the view's own work."
    )
    if not r.complete:
        text += (
            f" Stopped by the time limit after {fmt(r.position)} events; the full rebuild "
            f"would take about {fmt(r.full_seconds / 60, 1)} minutes at that rate."
        )
    if r.growth >= GROWS:
        text += (
            f" Its cost per event grows along the log: {fmt(r.segment_cpu_us(1), 1)} CPU µs "
            f"in the first tenth, {fmt(r.segment_cpu_us(len(r.marks) - 1), 1)} in the last "
            f"({r.growth:.1f}x), so it grows with the agents' histories."
        )
        if r.relative_growth is not None and r.relative_growth < GROWS:
            text += (
                " Relative to the CPU time each of those tenths spent decoding events "
                f"(the same work in every tenth), {r.relative_growth:.1f}x."
            )
    process, write = phase_share(p, "the views' process"), phase_share(p, "the views' flush")
    if p is not None and process is not None and write is not None:
        area, seconds = p.areas[0]
        text += (
            f" Profiled, `process()` (in memory) is {process:.0%} of the time and `flush()` "
            f"(bulk writes) {write:.0%}; the largest area of self time is {area}, "
            f"{pct(seconds, p.seconds)}."
        )
        if p.top:
            label, calls, seconds = p.top[0]
            text += (
                f" Heaviest agentlog function outside the follower: `{label}`, "
                f"{fmt(calls / p.events, 2)} calls per event, {pct(seconds, p.seconds)}."
            )
    return text


def targets(measured: list[Measured]) -> list[str]:
    """Whether the rebuilds reach the rates issue 8 asks for (wall-clock events/s)."""
    lines = []
    for m in measured:
        r = m.result
        goal = ONE_PASS_GOAL if r.view.startswith(("one pass", ONE_PASS)) else VIEW_GOAL
        met = "met" if r.complete and r.rate >= goal else "**not met**"
        lines.append(
            f"- Goal for {r.view}: {fmt(goal)} events/s; {fmt(r.rate)} measured "
            f"({fmt(r.cpu_rate)} per CPU second): {met}."
        )
    return lines


def contention(measured: list[Measured]) -> str:
    """How much of a core the rebuilds got: the rest of the wall time they waited."""
    share = sum(m.result.cpu_seconds for m in measured) / sum(m.result.seconds for m in measured)
    if share >= 0.9:
        return f"- The rebuilds ran on the CPU {share:.0%} of their wall time."
    return (
        f"- The rebuilds ran on the CPU only {share:.0%} of their wall time; the rest they "
        "waited, for the disk or for the other processes on the machine (see the load "
        "average), so wall times and events/s depend on the machine's other work; CPU "
        "times, and the ratios computed from them, are the steadier numbers."
    )


def code_changes(measured: list[Measured], code: dict[str, str]) -> str | None:
    """Which views ran on other source than the write and the baselines, if any did."""
    changed = {m.result.view: changed_files(code, m.result.code) for m in measured}
    if not any(changed.values()):
        return None
    views = "; ".join(f"{view}: {', '.join(files)}" for view, files in changed.items() if files)
    digests = {combined(m.result.code) for m in measured}
    among = (
        "All views ran on the same source as each other."
        if len(digests) == 1
        else "**The views ran on different source from each other**: compare them with care."
    )
    return (
        f"- **The code changed during the run** (other work on the repository): compared "
        "with the source that wrote the store and took the baselines, these views ran on "
        f"changed files: {views}. {among}"
    )


def reading(
    write: WriteResult, baselines: list[Baseline], measured: list[Measured], code: dict[str, str]
) -> str:
    """A short reading of the numbers, generated from them."""
    raw, raw_json, decoded = baselines
    lines = [
        f"- The floor, in CPU time per row: a raw paged read takes {fmt(raw.cpu_us, 2)} µs; "
        f"with `json.loads` of each state, {fmt(raw_json.cpu_us, 1)} µs; agentlog's own "
        f"read and decode into pydantic events (no view), {fmt(decoded.cpu_us, 1)} µs, "
        f"{decoded.cpu_us / raw.cpu_us:,.0f}x the raw read. No view rebuilds faster than "
        "that last number on this engine.",
        *(view_reading(m, decoded) for m in measured),
        f"- The log interleaves {fmt(write.agents)} agents: a page of {PAGE:,} events "
        f"touches {fmt(write.agents_per_page)} distinct agents on average. Views with one "
        "row per agent (state, runnable) keep the agents in memory while they rebuild and "
        "write each changed agent once per flush (every "
        f"{REBUILD_BATCHES} batches), so this costs them little.",
        *targets(measured),
    ]
    slow = [m.result for m in measured if not m.result.complete]
    if slow:
        names = ", ".join(r.view for r in slow)
        lines.append(
            f"- **Too slow to rebuild {fmt(slow[0].head)} events within the time limit**: "
            f"{names}. Their rows above are measured on the first events and extrapolated."
        )
    if measured:
        lines.append(contention(measured))
    if warning := code_changes(measured, code):
        lines.append(warning)
    return "\n".join(lines)


def source_digests() -> dict[str, str]:
    """A digest of each of agentlog's source files (adapters, domain, projections) now."""
    return {
        str(path.relative_to(PACKAGE_ROOT)): hashlib.sha256(path.read_bytes()).hexdigest()[:12]
        for part in ("adapters", "domain", "projections")
        for path in sorted((PACKAGE_ROOT / part).rglob("*.py"))
    }


def combined(digests: dict[str, str]) -> str:
    """One digest for all the files."""
    text = "".join(f"{name}:{digest}\n" for name, digest in sorted(digests.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def changed_files(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """The files added, removed or changed from ``before`` to ``after``."""
    return sorted(n for n in before.keys() | after.keys() if before.get(n) != after.get(n))


def machine_info(info: RunInfo) -> str:
    """Where the numbers were measured, and on which code."""
    return (
        common.machine_info(info.workdir / DB_NAME, info.load_start)
        + f"\n- agentlog: git {info.git}; source digest {combined(info.code)} (adapters, "
        "domain, projections, at the start of the run)"
    )


def command_line(opts: Options) -> str:
    """The command that reproduces this run."""
    return " ".join(
        [
            ".venv/bin/python bench/bench_rebuild.py",
            f"--events {opts.events}",
            f"--agents {opts.agents}",
            f"--views {','.join(opts.views)}",
            f"--profile-events {opts.profile_events}",
            f"--time-limit {opts.time_limit:g}",
            "--out docs/benchmarks.md",
        ]
    )


def writing(write: WriteResult) -> str:
    """What writing the store cost: reported, not measured against anything."""
    reused = (
        ""
        if write.reused_from is None
        else f"The store is a copy of one written by an earlier run ({write.reused_from}, "
        "`--reuse-store`); the numbers of its writing are that run's. "
    )
    return reused + (
        f"Writing the store took {fmt(write.seconds)} s ({fmt(write.events / write.seconds)} "
        f"events/s, {fmt(write.saves)} saves of about {fmt(write.events / write.saves)} events "
        f"each, snapshots and views off); the file is {fmt(write.db_bytes / 1e6)} MB. "
        "Not the measured quantity: the agents' commands (pydantic events, hash chain) "
        "dominate it."
    )


def method(opts: Options, measured: list[Measured]) -> str:
    """How the numbers were taken, so they can be judged."""
    batch = measured[0].result.batch_size if measured else PAGE
    return f"""\
- Workload: {fmt(opts.agents)} agents (Created, TaskStarted with a system prompt), then
  rounds of ModelResponded (about {len(MODEL_TEXT)} characters, one tool call, token usage)
  + ToolCalled, ToolStarted, ToolSucceeded (about {len(TOOL_OUTPUT)} characters of output);
  every {ASK_EVERY}th round the tool's policy is 'ask' (PermissionRequested, then Granted,
  or Denied one time in {DENY_EVERY}); one run in {FAIL_EVERY} fails (ToolFailed); a user
  message every {USER_EVERY} rounds; a ContextCompacted every {COMPACT_EVERY} rounds; one
  agent in {FINISH_EVERY} completes its task (TaskCompleted). All made with the Agent's
  commands, so every event is valid and chained.
- Writing: each round, every working agent takes one step (1-2 events) and the round is
  one `app.save(*agents)`: the log interleaves agents as concurrent workers would. Native
  SQLite engine, `snapshot_interval=0` (no snapshot store), no views attached. Exactly
  N events; checked.
- Rebuild: each view in a fresh Python process on the same file: `open_store(url,
  embedded=False, catch_up=False)`, then `views.rebuild(name, progress)` timed: a new
  build from position 0 into fresh tables (without their indexes), read in batches of
  {batch} events; the build keeps what it made in memory and writes it in bulk, with
  its position, in one transaction at least every {REBUILD_BATCHES} batches (sooner for
  a view whose memory is full), then its indexes are created and it is swapped in. Then
  "{ONE_PASS}": `views.rebuild_many([all four], progress)` in one more fresh process,
  one read and decode of the log for the four builds. (The serving builds, empty at
  position 0 since the store was written with views off, are not followed by a
  rebuild.) "rows in view" counts the rebuilt tables, to check they are complete. A
  rebuild still running after
  {opts.time_limit:g} s is stopped and its time extrapolated from the events it applied
  (marked so in the table).
- Memory: `ru_maxrss` of the child process after opening the store and before the
  rebuild, and after it: "RSS growth" is what the rebuild added to the peak.
- Cost along the log: CPU time per event between the progress callbacks nearest each
  tenth of the log (the first tenth and the last). A view whose work per event depends
  on an agent's history shows a ratio above 1; one that does not, about 1. Other work
  on the machine slows some tenths more than others (decoding the same events cost up
  to 1.8x more in one tenth than in another here): "same, over decoding" divides each
  tenth's CPU time by the CPU time the follower spent decoding events in that tenth
  (timed around its `_decode`), the same work in every tenth, so that a slower machine
  cancels out and what is left is the view's own cost relative to a fixed one.
- Baselines, same file, same run, after writing and before the views: the raw read is
  `{RAW_PAGE}` with `LIMIT {PAGE}` from the last rowid read (pages like the follower's)
  on a connection set up like eventsourcing.sqlite's (autocommit, WAL), rows as plain
  tuples (median of {RAW_RUNS}); then the same plus `json.loads` of each state (median
  of {RAW_RUNS}); then agentlog's own `recorder.select_notifications` +
  `mapper.to_domain_event` for every event, no view (one run).
- The "vs" columns: the rebuild's CPU time per event over that read's CPU time per row,
  i.e. how many times slower than that read the rebuild is. CPU time
  (`time.process_time`, user + system), because other work on the machine stretches
  wall times unevenly over a long run; "rebuild s" and "events/s" are wall-clock.
- Profile: a second rebuild of the same view(s) in the same child, under cProfile, stopped
  at the end of the batch that reaches {fmt(min(opts.profile_events, opts.events))}
  events. Phases are cumulative times of the follower's steps; areas are self times
  grouped by the package (or C function) they are spent in. cProfile slows Python-heavy
  code (SQLAlchemy, pydantic's Python parts) more than C (SQLite, json), so read the
  shares as a ranking, not exact. The first events are the agents' youngest: costs that
  grow with an agent's history weigh more in the full rebuild than here.
- Code: the digest of agentlog's source is taken at the start and in each view's
  process; a view measured on other code is flagged in the reading.
- Other work on the machine (see load average) makes every number noisier; one run."""


def render(
    write: WriteResult,
    baselines: list[Baseline],
    measured: list[Measured],
    opts: Options,
    info: RunInfo,
) -> str:
    """This benchmark's section of docs/benchmarks.md (without the markers)."""
    return f"""\
# Rebuild benchmarks

Generated by `bench/bench_rebuild.py` from measurements taken in one run; do not edit by
hand, run it again. How fast is each view rebuilt from {fmt(write.events)} stored events,
and how does that compare with reading the same rows with raw `sqlite3`?

## Reproduce

```
{command_line(opts)}
```

Wall time of this run: {info.wall_s:,.0f} s. {writing(write)}

## Machine

{machine_info(info)}

## Rebuild of each view

{rebuild_table(measured, baselines)}

## Cost along the log, rows and memory

{shape_table(measured)}

## Baselines: the same rows without a view

{baseline_table(baselines)}

## Where the time goes

{profiles(measured)}

## Reading

{reading(write, baselines, measured, info.code)}

## The log

{fmt(write.events)} events of {fmt(write.agents)} agents; a page of {PAGE:,} events holds
{fmt(write.agents_per_page)} distinct agents on average.

{mix_table(write)}

## Method

{method(opts, measured)}
"""


# --- command line -------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    """The command line's parser (the --child options are internal)."""
    p = argument_parser(__doc__)
    p.add_argument("--events", type=int, default=DEFAULT_EVENTS, help="(default: %(default)s)")
    p.add_argument("--agents", type=int, default=DEFAULT_AGENTS, help="(default: %(default)s)")
    p.add_argument("--views", default=",".join(VIEWS), help="comma-separated (default: all)")
    p.add_argument(
        "--profile-events",
        type=int,
        default=DEFAULT_PROFILE_EVENTS,
        help="events of each view's rebuild to profile; 0: none (default: %(default)s)",
    )
    p.add_argument(
        "--time-limit",
        type=float,
        default=DEFAULT_TIME_LIMIT,
        help="seconds per view before its rebuild is stopped and extrapolated "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--workdir", type=Path, default=None, help="keep the database here (default: a temp dir)"
    )
    p.add_argument(
        "--reuse-store",
        action="store_true",
        help="with --workdir: keep a copy of the store written, and rebuild from a fresh "
        "copy of it in later runs with the same --events and --agents (writing 1M events "
        "takes minutes)",
    )
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--db", type=Path, default=None, help=argparse.SUPPRESS)
    return p


def options(args: argparse.Namespace, p: argparse.ArgumentParser) -> Options:
    """The parsed command line, validated."""
    views = names(p, "--views", args.views, VIEWS)
    if args.agents < 1 or args.events < 4 * args.agents:
        p.error("--agents must be at least 1, and --events at least 4 per agent")
    if args.profile_events < 0 or args.time_limit <= 0:
        p.error("--profile-events must be >= 0 and --time-limit > 0")
    if args.reuse_store and args.workdir is None:
        p.error("--reuse-store needs --workdir (where the store is kept)")
    return Options(
        args.events,
        args.agents,
        views,
        args.out,
        args.profile_events,
        args.time_limit,
        args.workdir,
        args.reuse_store,
    )


def benchmark(opts: Options) -> int:
    """Run the benchmark, print the tables and write the report section."""
    started, load_start = time.perf_counter(), os.getloadavg()[0]
    code, git = source_digests(), git_version(PACKAGE_ROOT)
    with tempfile.TemporaryDirectory(prefix="agentlog-bench-rebuild-") as tmp:
        workdir = opts.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        for suffix in ("", "-wal", "-shm"):
            (workdir / f"{DB_NAME}{suffix}").unlink(missing_ok=True)
        write, baselines, measured = run(opts, workdir)
        info = RunInfo(workdir, time.perf_counter() - started, load_start, code, git)
        section = render(write, baselines, measured, opts, info)
    print(rebuild_table(measured, baselines), baseline_table(baselines), sep="\n\n")
    print(f"\nwall time {info.wall_s:,.0f} s; section written to {opts.out}")
    write_section(opts.out, "bench_rebuild", section)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, or (internally) one view's rebuild in a child process."""
    p = parser()
    args = p.parse_args(argv)
    if args.child is not None:
        if args.db is None or not set(args.child.split(",")) <= set(VIEWS):
            p.error("--child needs a known view and --db")
        return child(args.child, args.db, args.time_limit, args.profile_events)
    return benchmark(options(args, p))


if __name__ == "__main__":
    sys.exit(main())
