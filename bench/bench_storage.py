"""Storage benchmark: save and load cost of one agent as its history grows.

For each engine and history length N, build one agent of N realistic events on a fresh
SQLite file, then measure:

* per-save time of real single-step saves (1-2 events each) at that history length;
* load time of the whole agent (``app.get``) with snapshots on and with full replay,
  each in a fresh ``AgentLog`` so no cache helps, and the tracemalloc peak of one load;
* a raw ``sqlite3`` baseline in the same run: the same rows (topic and state bytes) put
  one per transaction into an events table like eventsourcing's, with the same journal
  settings, and read back in one query.

The tables and a short reading of them go to ``docs/benchmarks.md``::

    .venv/bin/python bench/bench_storage.py [--sizes 100,1000,10000,100000]
        [--engines native,sqlalchemy] [--out docs/benchmarks.md]
"""

from __future__ import annotations

import itertools
import os
import sqlite3
import statistics
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

from common import (
    CORE_PACKAGES,
    FLAT_RATIO,
    GOAL,
    MODEL,
    MODEL_TEXT,
    RAW_INSERT,
    RAW_TABLE,
    TOOL_OUTPUT,
    argument_parser,
    db_bytes,
    flat_verdict,
    fmt,
    log,
    machine_info,
    markdown_table,
    names,
    percentile,
    preamble,
    raw_connect,
    timed_us,
    whole_numbers,
    write_section,
)

from agentlog.adapters.storage import env_for, open_log
from agentlog.domain.agent import Agent
from agentlog.domain.application import AgentLog
from agentlog.domain.values import (
    AgentConfig,
    EffectClass,
    Policy,
    TokenUsage,
    ToolCallRequest,
)

DEFAULT_SIZES = (100, 1_000, 10_000, 100_000)
ENGINES = ("native", "sqlalchemy")
SNAPSHOT_INTERVAL = 50
TIMED_EVENTS = 600  # the last events of each history are built by timed single-step saves
BATCH_FROM = 10_000  # histories this long build their untimed prefix in batches
OFF_RUNS_LARGE = 3  # full replays of huge histories are slow: fewer runs from BATCH_FROM up
WARM_UP_SIZE = 200
ON_RUNS_FACTOR = 4  # loads from a snapshot take a millisecond or so: run them more often

# eventsourcing.sqlite's events table (SQLiteApplicationRecorder), reproduced for the baseline.
RAW_SELECT = "SELECT * FROM stored_events WHERE originator_id=? ORDER BY originator_version ASC"


@dataclass(frozen=True)
class WriteResult:
    """What building one history cost."""

    events: int
    build_s: float
    batch_steps: int
    save_us: list[float]
    db_bytes: int


@dataclass(frozen=True)
class ReadResult:
    """What loading one agent cost, with snapshots on and off."""

    on_cold_ms: float
    on_warm_ms: float
    off_ms: float
    off_runs: int
    peak_on_kb: float
    peak_off_kb: float


@dataclass(frozen=True)
class Baseline:
    """Raw sqlite3 on the same rows."""

    insert_us: list[float]
    read_ms: float


@dataclass(frozen=True)
class Measurement:
    """One engine at one history length, with the baseline for that length."""

    engine: str
    size: int
    write: WriteResult
    read: ReadResult
    baseline: Baseline


@dataclass(frozen=True)
class Options:
    """Parsed command line."""

    sizes: list[int]
    engines: list[str]
    out: Path
    runs: int
    batch_steps: int


# --- the workload -------------------------------------------------------------------


def new_agent() -> Agent:
    """A fresh agent with a running task, as a worker would start it."""
    config = AgentConfig(model=MODEL, tool_policies={"read_file": Policy.ALLOW})
    agent = Agent.create("bench", config)
    agent.start_task(GOAL)
    return agent


def agent_steps(agent: Agent) -> Iterator[int]:
    """Forever, one worker step at a time; yields after each step (1-2 new events).

    A round is: the model responds with a tool call (ModelResponded + ToolCalled), the
    tool starts (ToolStarted), the tool succeeds (ToolSucceeded).
    """
    for i in itertools.count():
        request = ToolCallRequest(
            call_id=f"call-{i}", tool="read_file", args={"path": f"src/pkg/module_{i}.py"}
        )
        usage = TokenUsage(prompt=1_200 + i % 700, completion=80 + i % 40)
        agent.record_model_response(MODEL_TEXT, model=MODEL, tool_calls=(request,), usage=usage)
        agent.call_tool(request, effect=EffectClass.PURE)
        yield 2
        agent.start_tool(request.call_id, worker_id="worker-1")
        yield 1
        agent.succeed(request.call_id, {"content": TOOL_OUTPUT, "lines": 24})
        yield 1


def build_history(app: AgentLog, size: int, batch_steps: int) -> tuple[UUID, list[float]]:
    """Store one agent of about ``size`` events; returns its id and timed per-save µs.

    The untimed prefix is saved ``batch_steps`` steps at a time; the last
    ``min(size // 2, TIMED_EVENTS)`` events are saved one step per save, each timed.
    """
    agent = new_agent()
    app.save(agent)
    steps = agent_steps(agent)
    timed_from = size - min(size // 2, TIMED_EVENTS)
    while agent.version < timed_from:
        for _ in range(batch_steps):
            next(steps)
        app.save(agent)
    save_us: list[float] = []
    while agent.version < size:
        next(steps)
        save_us.append(timed_us(lambda: app.save(agent)))
    return agent.id, save_us


# --- measuring ----------------------------------------------------------------------


def peak_kb(action: Callable[[], object]) -> float:
    """Peak of memory newly allocated by one call of ``action``, in KiB (tracemalloc)."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        action()
        return tracemalloc.get_traced_memory()[1] / 1024
    finally:
        tracemalloc.stop()


def store_url(path: Path, engine: str) -> str:
    """The agentlog URL of a SQLite file on an engine."""
    url = f"sqlite:///{path}"
    return url + "?engine=sqlalchemy" if engine == "sqlalchemy" else url


def open_for_load(url: str, *, snapshots: bool) -> AgentLog:
    """A fresh AgentLog; without snapshots it neither reads nor takes any (full replay).

    ``snapshot_interval=0`` alone only stops *taking* snapshots: existing ones are still
    read on load, so the snapshot store is switched off as well.
    """
    env = env_for(url, snapshot_interval=SNAPSHOT_INTERVAL if snapshots else 0)
    if not snapshots:
        env["IS_SNAPSHOTTING_ENABLED"] = "n"
    return AgentLog(env)


def load_once(url: str, agent_id: UUID, version: int, *, snapshots: bool) -> tuple[float, float]:
    """Cold then warm load time (ms) of the agent in one fresh AgentLog."""
    app = open_for_load(url, snapshots=snapshots)
    try:
        assert (app.snapshots is not None) is snapshots
        cold = timed_us(lambda: check_version(app.get(agent_id), version)) / 1_000
        warm = timed_us(lambda: check_version(app.get(agent_id), version)) / 1_000
    finally:
        app.close()
    return cold, warm


def check_version(agent: Agent, version: int) -> None:
    """Fail loudly if a load returned the wrong agent state."""
    if agent.version != version:
        msg = f"loaded version {agent.version}, expected {version}"
        raise RuntimeError(msg)


def load_peak_kb(url: str, agent_id: UUID, *, snapshots: bool) -> float:
    """tracemalloc peak of one cold load (the AgentLog is built before tracing starts)."""
    app = open_for_load(url, snapshots=snapshots)
    try:
        return peak_kb(lambda: app.get(agent_id))
    finally:
        app.close()


def measure_loads(url: str, agent_id: UUID, version: int, runs: int) -> ReadResult:
    """Median load times with and without snapshots, and peak memory of each."""
    on_runs = runs * ON_RUNS_FACTOR
    on = [load_once(url, agent_id, version, snapshots=True) for _ in range(on_runs)]
    off_runs = runs if version < BATCH_FROM else min(runs, OFF_RUNS_LARGE)
    off = [load_once(url, agent_id, version, snapshots=False)[0] for _ in range(off_runs)]
    return ReadResult(
        on_cold_ms=statistics.median(cold for cold, _ in on),
        on_warm_ms=statistics.median(warm for _, warm in on),
        off_ms=statistics.median(off),
        off_runs=off_runs,
        peak_on_kb=load_peak_kb(url, agent_id, snapshots=True),
        peak_off_kb=load_peak_kb(url, agent_id, snapshots=False),
    )


def measure_engine(
    workdir: Path, engine: str, size: int, opts: Options
) -> tuple[Path, WriteResult, ReadResult]:
    """Build a history on a fresh file and measure its saves and loads."""
    path = workdir / f"{engine}-{size}.db"
    url = store_url(path, engine)
    batch = opts.batch_steps if size >= BATCH_FROM else 1
    app = open_log(url, snapshot_interval=SNAPSHOT_INTERVAL)
    try:
        start = time.perf_counter()
        agent_id, save_us = build_history(app, size, batch)
        build_s = time.perf_counter() - start
        version = app.get(agent_id).version
    finally:
        app.close()
    write = WriteResult(version, build_s, batch, save_us, db_bytes(path))
    return path, write, measure_loads(url, agent_id, version, opts.runs)


# --- raw sqlite3 baseline -------------------------------------------------------------


def event_rows(path: Path) -> list[tuple[str, bytes]]:
    """Topic and state of every stored event in an agentlog SQLite file, in order."""
    conn = sqlite3.connect(path)
    try:
        names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        table = "stored_events" if "stored_events" in names else f"{AgentLog.name}_events"
        rows = conn.execute(f"SELECT topic, state FROM {table} ORDER BY rowid").fetchall()
    finally:
        conn.close()
    return [(str(topic), bytes(state)) for topic, state in rows]


def raw_inserts(conn: sqlite3.Connection, rows: list[tuple[str, bytes]], oid: str) -> list[float]:
    """Insert rows one transaction each (BEGIN ... COMMIT); µs per insert."""
    conn.execute(RAW_TABLE)
    times: list[float] = []
    for version, (topic, state) in enumerate(rows, start=1):
        start = time.perf_counter_ns()
        conn.execute("BEGIN")
        conn.execute(RAW_INSERT, (oid, version, topic, state))
        conn.commit()
        times.append((time.perf_counter_ns() - start) / 1_000)
    return times


def raw_read_ms(path: Path, oid: str, count: int) -> float:
    """One read of all an originator's rows on a fresh connection, in ms."""
    conn = raw_connect(path)
    try:
        start = time.perf_counter_ns()
        rows = conn.execute(RAW_SELECT, (oid,)).fetchall()
        elapsed = (time.perf_counter_ns() - start) / 1e6
    finally:
        conn.close()
    if len(rows) != count:
        msg = f"raw read {len(rows)} rows, expected {count}"
        raise RuntimeError(msg)
    return elapsed


def measure_baseline(workdir: Path, rows: list[tuple[str, bytes]], runs: int) -> Baseline:
    """Raw sqlite3 inserts and reads of the same rows on a fresh file."""
    path = workdir / f"raw-{len(rows)}.db"
    oid = uuid.uuid4().hex
    conn = raw_connect(path)
    try:
        insert_us = raw_inserts(conn, rows, oid)
    finally:
        conn.close()
    window = min(len(rows) // 2, TIMED_EVENTS)
    read_ms = statistics.median(raw_read_ms(path, oid, len(rows)) for _ in range(runs))
    return Baseline(insert_us[len(insert_us) - window :], read_ms)


# --- running ------------------------------------------------------------------------


def run(opts: Options, workdir: Path) -> list[Measurement]:
    """Every engine at every size, with the raw baseline for each size."""
    warm_up(workdir, opts)
    results: list[Measurement] = []
    for size in opts.sizes:
        measured: list[tuple[str, WriteResult, ReadResult]] = []
        path = workdir
        for engine in opts.engines:
            log(f"{engine:>10} N={size:>7,}: building and loading ...")
            path, write, read = measure_engine(workdir, engine, size, opts)
            measured.append((engine, write, read))
        log(f"{'sqlite3':>10} N={size:>7,}: raw baseline ...")
        baseline = measure_baseline(workdir, event_rows(path), opts.runs)
        results += [Measurement(e, size, w, r, baseline) for e, w, r in measured]
    return results


def warm_up(workdir: Path, opts: Options) -> None:
    """One small unreported round per engine, so the first size pays no first-use costs."""
    log("warming up ...")
    path = workdir / "warm-up"
    path.mkdir()
    warm = Options(opts.sizes, opts.engines, opts.out, 1, 1)
    for engine in opts.engines:
        db, _, _ = measure_engine(path, engine, WARM_UP_SIZE, warm)
    measure_baseline(path, event_rows(db), 1)


# --- reporting ----------------------------------------------------------------------


def write_table(results: list[Measurement]) -> str:
    """Per-save cost vs raw sqlite3 inserts."""
    header = [
        "engine",
        "N events",
        "saves timed",
        "save median µs",
        "save p95 µs",
        "raw insert median µs",
        "raw insert p95 µs",
        "save / raw (median)",
        "build s",
        "steps per save (prefix)",
        "file MB",
    ]
    rows = []
    for m in results:
        save_med = statistics.median(m.write.save_us)
        raw_med = statistics.median(m.baseline.insert_us)
        rows.append(
            [
                m.engine,
                fmt(m.write.events),
                fmt(len(m.write.save_us)),
                fmt(save_med),
                fmt(percentile(m.write.save_us, 95)),
                fmt(raw_med),
                fmt(percentile(m.baseline.insert_us, 95)),
                f"{save_med / raw_med:.1f}x",
                fmt(m.write.build_s, 1),
                str(m.write.batch_steps),
                fmt(m.write.db_bytes / 1e6, 1),
            ]
        )
    return markdown_table(header, rows)


def read_table(results: list[Measurement]) -> str:
    """Load cost with and without snapshots vs a raw read of the same rows."""
    header = [
        "engine",
        "N events",
        "load, snapshots on (cold) ms",
        "load, snapshots on (warm) ms",
        "load, full replay ms",
        "replay µs/event",
        "raw read ms",
        "replay / raw read",
        "peak KiB, snapshots on",
        "peak KiB, full replay",
    ]
    rows = []
    for m in results:
        r = m.read
        rows.append(
            [
                m.engine,
                fmt(m.write.events),
                fmt(r.on_cold_ms, 2),
                fmt(r.on_warm_ms, 2),
                fmt(r.off_ms, 1),
                fmt(r.off_ms * 1_000 / m.write.events, 1),
                fmt(m.baseline.read_ms, 2),
                f"{r.off_ms / m.baseline.read_ms:.0f}x",
                fmt(r.peak_on_kb),
                fmt(r.peak_off_kb),
            ]
        )
    return markdown_table(header, rows)


def flatness(label: str, ms: list[Measurement], values: list[float], unit: str) -> str:
    """One sentence on whether ``values`` (one per measurement, by N) grow with N."""
    digits = 2 if max(values) < 10 else 0
    shown = ", ".join(
        f"{fmt(v, digits)} at N={fmt(m.size)}" for m, v in zip(ms, values, strict=True)
    )
    return f"- {label}: {shown} {unit}; {flat_verdict(values, 'size')}."


def span(values: list[float], digits: int) -> str:
    """'low-high' of some values, or one value if they round alike."""
    low, high = fmt(min(values), digits), fmt(max(values), digits)
    return low if low == high else f"{low}-{high}"


def engine_reading(results: list[Measurement], engine: str) -> list[str]:
    """The observations for one engine, computed from its measurements."""
    ms = [m for m in results if m.engine == engine]
    save_med = [statistics.median(m.write.save_us) for m in ms]
    save_ratio = [
        s / statistics.median(m.baseline.insert_us) for m, s in zip(ms, save_med, strict=True)
    ]
    replay_us = [m.read.off_ms * 1_000 / m.write.events for m in ms]
    replay_ratio = [m.read.off_ms / m.baseline.read_ms for m in ms]
    last = ms[-1]
    return [
        f"**{engine}**",
        "",
        flatness("Load with snapshots (cold)", ms, [m.read.on_cold_ms for m in ms], "ms"),
        flatness("Load with snapshots (warm)", ms, [m.read.on_warm_ms for m in ms], "ms"),
        flatness(
            "Peak memory of a load with snapshots", ms, [m.read.peak_on_kb for m in ms], "KiB"
        ),
        flatness("Median save", ms, save_med, "µs"),
        f"- Full replay: {span(replay_us, 1)} µs per event, so "
        f"its time and memory grow with N: {fmt(last.read.off_ms)} ms and "
        f"{fmt(last.read.peak_off_kb / 1024, 1)} MiB peak at N={fmt(last.write.events)} "
        "(the recorder fetches all of an agent's rows into one list before replaying).",
        f"- Against raw sqlite3: a save costs {span(save_ratio, 1)}x a raw one-row "
        f"transaction; a full replay costs {span(replay_ratio, 0)}x a raw read of the same "
        "rows (decoding JSON, validating "
        "pydantic events and applying them).",
    ]


def reading(results: list[Measurement], engines: list[str]) -> str:
    """A short reading of the numbers, generated from them."""
    lines: list[str] = []
    for engine in engines:
        lines += [*engine_reading(results, engine), ""]
    if len(engines) > 1:
        lines.append(compare_engines(results, engines))
    return "\n".join(lines).rstrip()


def compare_engines(results: list[Measurement], engines: list[str]) -> str:
    """Each engine's typical save, cold load and replay cost against the first engine's."""
    metrics: dict[str, Callable[[Measurement], float]] = {
        "median save": lambda m: statistics.median(m.write.save_us),
        "cold load with snapshots": lambda m: m.read.on_cold_ms * 1_000,
        "full replay per event": lambda m: m.read.off_ms * 1_000 / m.write.events,
    }
    first, lines = engines[0], ["Engines compared (median over the sizes):", ""]
    for name, metric in metrics.items():
        typical = {
            e: statistics.median(metric(m) for m in results if m.engine == e) for e in engines
        }
        others = ", ".join(f"{e} {typical[e] / typical[first]:.1f}x" for e in engines[1:])
        lines.append(f"- {name}: {first} {fmt(typical[first], 1)} µs; {others}.")
    return "\n".join(lines)


def command_line(opts: Options) -> str:
    """The command that reproduces this run."""
    return " ".join(
        [
            ".venv/bin/python bench/bench_storage.py",
            f"--sizes {','.join(map(str, opts.sizes))}",
            f"--engines {','.join(opts.engines)}",
            f"--runs {opts.runs}",
            f"--batch-steps {opts.batch_steps}",
            "--out docs/benchmarks.md",
        ]
    )


def batching(opts: Options) -> str:
    """How the untimed part of each history was saved."""
    if opts.batch_steps == 1:
        return "Every step of every history is its own save, as a worker saves it."
    return (
        f"For N >= {BATCH_FROM:,} the untimed prefix is saved {opts.batch_steps} steps per "
        'save to keep the run short ("steps per save" column); smaller histories save '
        "every step on its own."
    )


def method(opts: Options) -> str:
    """How the numbers were taken, so they can be judged."""
    return f"""\
- Workload: one agent; Created, TaskStarted, then rounds of ModelResponded (about
  {len(MODEL_TEXT)} characters of text, one tool call, token usage) + ToolCalled, then
  ToolStarted, then ToolSucceeded (about {len(TOOL_OUTPUT)} characters of output), made
  with the Agent's commands. A worker step is one save: 2 events, then 1, then 1.
- Building: each size gets a fresh SQLite file. The last min(N/2, {TIMED_EVENTS}) events
  are saved one step per save and each `app.save(agent)` is timed: those are the save
  columns (median and p95; a save that crosses a multiple of {SNAPSHOT_INTERVAL} also
  writes a snapshot, which shows in p95). {batching(opts)} "build s" is the time of the
  whole build. A small unreported warm-up round runs first.
- Loading: `app.get(id)` in a fresh `AgentLog` on the same file; median of
  {opts.runs * ON_RUNS_FACTOR} runs with snapshots, {opts.runs} full replays
  ({min(opts.runs, OFF_RUNS_LARGE)} at N >= {BATCH_FROM:,}). "Cold"
  is the first load in that AgentLog (it opens the connection), "warm" a second load in
  it (the application has no aggregate cache, so it reads and decodes again). Snapshots
  on: interval {SNAPSHOT_INTERVAL}, so a load is the newest snapshot plus fewer than
  {SNAPSHOT_INTERVAL} events. Full replay: snapshot store switched off
  (`IS_SNAPSHOTTING_ENABLED=n`); `snapshot_interval=0` alone only stops *taking*
  snapshots and still reads the ones stored. Peak memory: tracemalloc peak of one cold
  load, in a separate run (tracing slows it down).
- "Flat" in the reading means the value at the largest N is less than {FLAT_RATIO:g}x the
  lowest value measured: sub-millisecond timings jitter by tens of percent on a shared
  machine, while a cost linear in history would grow with N, by up to
  {max(opts.sizes) / min(opts.sizes):,.0f}x across these sizes.
- Raw sqlite3 baseline, same run: the same (topic, state) bytes read from the agentlog
  file, inserted one row per transaction (`BEGIN`, `INSERT`, commit) into a table shaped
  like eventsourcing.sqlite's, with its settings: autocommit connection, WAL journal,
  default `synchronous`. The raw insert columns cover the same last rows as the save
  columns. Raw read: one `SELECT` of all N rows by originator id, ordered by version,
  fetched as `sqlite3.Row`s on a fresh connection (median of {opts.runs}). An agentlog
  save of a step writes 1-2 event rows, so save / raw compares one step to one row.
- Small histories live in new files whose WAL is still growing, so commits can cost more
  there, for raw sqlite3 as for agentlog: compare the raw insert column across N."""


def render(
    results: list[Measurement], opts: Options, workdir: Path, wall_s: float, load_start: float
) -> str:
    """The whole of docs/benchmarks.md."""
    question = (
        "How far do saves and loads of one agent stay flat as its history grows, and what "
        "does each storage engine cost over raw `sqlite3`?"
    )
    opening = preamble(
        "bench_storage.py", "Storage benchmarks", question, command_line(opts), wall_s
    )
    packages = (*CORE_PACKAGES[:1], "eventsourcing-sqlalchemy", *CORE_PACKAGES[1:])
    return f"""\
{opening}

## Machine

{machine_info(workdir, load_start, packages)}

## Writes: one save per worker step

{write_table(results)}

## Reads: loading one agent

{read_table(results)}

## Reading

{reading(results, opts.engines)}

## Method

{method(opts)}
"""


# --- command line -------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> Options:
    """The command line, validated."""
    parser = argument_parser(__doc__)
    parser.add_argument(
        "--sizes",
        default=",".join(map(str, DEFAULT_SIZES)),
        help="history lengths, comma-separated (default: %(default)s)",
    )
    parser.add_argument(
        "--engines",
        default=",".join(ENGINES),
        help="storage engines, comma-separated (default: %(default)s)",
    )
    parser.add_argument(
        "--runs",
        type=int,
        default=5,
        help="load runs per measurement, median reported (default: 5)",
    )
    parser.add_argument(
        "--batch-steps",
        type=int,
        default=1,
        help=f"steps per save of the untimed prefix when N >= {BATCH_FROM:,} "
        "(default: %(default)s; 1 = every step its own save)",
    )
    args = parser.parse_args(argv)
    sizes = whole_numbers(parser, "--sizes", args.sizes)
    engines = names(parser, "--engines", args.engines, ENGINES)
    if min(sizes) < 10:
        parser.error("--sizes: each history needs at least 10 events")
    if args.runs < 1 or args.batch_steps < 1:
        parser.error("--runs and --batch-steps must be at least 1")
    return Options(sorted(set(sizes)), engines, args.out, args.runs, args.batch_steps)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the tables and write the report."""
    opts = parse_args(argv)
    started, load_start = time.perf_counter(), os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="agentlog-bench-") as tmp:
        workdir = Path(tmp)
        results = run(opts, workdir)
        wall_s = time.perf_counter() - started
        report = render(results, opts, workdir, wall_s, load_start)
    print(write_table(results), read_table(results), sep="\n\n")
    print(f"\nwall time {wall_s:,.0f} s; report written to {opts.out}")
    write_section(opts.out, "bench_storage", report, first=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
