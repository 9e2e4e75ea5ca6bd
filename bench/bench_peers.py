"""Peers benchmark: agentlog next to raw sqlite3, eventsourcing, the OpenAI Agents SDK and
LangGraph, recording the same agent steps, in the same run and in lockstep.

For each history length N (in steps; ``peers.py`` says what a step is), every system
writes a conversation of N steps to its own fresh SQLite file (untimed), then takes
timed steps in rounds (each round, one step of each system, in a rotating order, so the
machine's load falls on all alike), and finally each system's conversation is resumed
in fresh processes: open the file, load the conversation state. Peers that are not
installed (the ``bench`` extra) are skipped and named in the report; a system whose next
point would blow the time or disk budget is capped and named too.

The results replace this benchmark's own section of ``docs/benchmarks.md``; plots go to
``docs/img/`` (with matplotlib)::

    .venv/bin/pip install -e '.[bench]'
    .venv/bin/python bench/bench_peers.py [--steps 100,1000,10000,100000]
"""

from __future__ import annotations

import gc
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import common
import peer_agentlog
import peers
import plots
from common import (
    RESUME_CHILD,
    Sweep,
    db_bytes,
    flat_verdict,
    fmt,
    git_version,
    log,
    machine_info,
    markdown_table,
    median,
    parse_sweep,
    percentile,
    plots_option,
    preamble,
    report_resume,
    resume_in_child,
    settled_bytes,
    sweep_parser,
    timed_us,
    write_section,
)
from peers import KEYS, Spec, System, spec_of

DEFAULT_STEPS = (100, 1_000, 10_000, 100_000)
DEFAULT_TIMED = 100  # timed steps per system and N (at most)
DEFAULT_BUDGET_S = 20.0  # ... or fewer, once this many seconds went into them
DEFAULT_RESUMES = 3  # fresh processes per system and N
DEFAULT_CAP_S = 900.0  # a point predicted to take longer than this is not run
DEFAULT_MAX_FILE_GB = 4.0  # a system stops stepping once its file is this large
MIN_STEPS = 5  # timed steps even past the budget
WARM_UP = 2  # untimed steps per system before timing
THIS = Path(__file__).resolve()


@dataclass
class Point:
    """One system at one history length."""

    key: str
    steps: int
    build_s: float = float("nan")
    step_us: list[float] = field(default_factory=list)
    bytes_before: int = 0
    bytes_after: int = 0
    resume_key: str = ""
    resume_ms: list[float] = field(default_factory=list)
    items: int = 0  # what a resume loaded (messages, items, events, rows)
    note: str = ""  # why it was not (fully) measured

    @property
    def bytes_per_step(self) -> float:
        """Growth of the file per timed step."""
        return (self.bytes_after - self.bytes_before) / max(len(self.step_us), 1)


@dataclass(frozen=True)
class Options(Sweep):
    """Parsed command line."""

    timed: int
    budget_s: float
    max_file_gb: float


PLOTS: tuple[plots.Plot[Point], ...] = (
    ("peers-step", "median step, µs", lambda p: median(p.step_us)),
    ("peers-resume", "resume (open + load), ms", lambda p: median(p.resume_ms)),
)


# --- one history length -------------------------------------------------------------


def build(specs: list[Spec], steps: int, workdir: Path) -> dict[str, tuple[System, Point]]:
    """Every system with a history of ``steps`` steps in its own file (untimed)."""
    built: dict[str, tuple[System, Point]] = {}
    for spec in specs:
        log(f"N={steps:>7,}: {spec.key}: writing the history ...")
        point = Point(spec.key, steps)
        system = spec.factory()(workdir)
        started = time.perf_counter()
        system.build(steps)
        point.build_s = time.perf_counter() - started
        for _ in range(WARM_UP):
            system.step()
            system.between()
        point.bytes_before = settled_bytes(system.path)
        built[spec.key] = (system, point)
    return built


def lockstep(built: dict[str, tuple[System, Point]], opts: Options) -> None:
    """Timed steps in rounds, one step of each system per round, in a rotating order."""
    active = list(built)
    spent = dict.fromkeys(active, 0.0)
    gc.collect()
    for round_ in range(opts.timed):
        if not active:
            return
        shift = round_ % len(active)
        for key in active[shift:] + active[:shift]:
            system, point = built[key]
            point.step_us.append(timed_us(system.step))
            spent[key] += point.step_us[-1] / 1e6
            system.between()
        for key in list(active):
            system, point = built[key]
            if db_bytes(system.path) >= opts.max_file_gb * 1e9:
                point.note = (
                    f"stopped after {len(point.step_us)} steps: file over {opts.max_file_gb:g} GB"
                )
                active.remove(key)
            elif len(point.step_us) >= MIN_STEPS and spent[key] >= opts.budget_s:
                active.remove(key)


def child(key: str, path: Path, resume_key: str) -> int:
    """In the fresh process: import (untimed), then time opening and loading."""
    resume = spec_of(key).resumer()
    return report_resume(lambda: resume(path, resume_key))


def measure(specs: list[Spec], steps: int, opts: Options, workdir: Path) -> list[Point]:
    """All systems at one history length: build, lockstep, bytes, resume."""
    workdir.mkdir()
    built = build(specs, steps, workdir)
    log(f"N={steps:>7,}: timing steps of {', '.join(built)} in lockstep ...")
    lockstep(built, opts)
    for system, point in built.values():
        point.bytes_after = settled_bytes(system.path)
        point.resume_key = system.resume_key()
        system.close()
    log(f"N={steps:>7,}: resuming in fresh processes ...")
    for _ in range(opts.resumes):
        for system, point in built.values():
            ms, point.items = resume_in_child(THIS, point.key, str(system.path), point.resume_key)
            point.resume_ms.append(ms)
    for system, _ in built.values():
        for suffix in ("", "-wal", "-shm"):
            Path(f"{system.path}{suffix}").unlink(missing_ok=True)
    return [point for _, point in built.values()]


def predicted_s(point: Point, steps: int, opts: Options) -> float:
    """What ``point``'s system would take at ``steps``, if its costs grew linearly."""
    growth = steps / point.steps
    resume = median(point.resume_ms) * opts.resumes / 1e3
    return growth * (point.build_s + MIN_STEPS * median(point.step_us) / 1e6 + resume)


def run(opts: Options, workdir: Path) -> list[Point]:
    """Every installed system at every length; capped when the next point would be too long."""
    points: list[Point] = []
    last: dict[str, Point] = {}
    for steps in opts.steps:
        specs = []
        for key in opts.systems:
            before = last.get(key)
            if before is not None and predicted_s(before, steps, opts) > opts.cap_s:
                guess = predicted_s(before, steps, opts)
                note = (
                    f"capped: at N={before.steps:,} it took {before.build_s:,.0f} s to write "
                    f"and {median(before.step_us) / 1e3:,.0f} ms a step; linear growth "
                    f"predicts {guess:,.0f} s here, over the {opts.cap_s:g} s budget"
                )
                points.append(Point(key, steps, note=note))
            else:
                specs.append(spec_of(key))
        measured = measure(specs, steps, opts, workdir / f"n{steps}")
        points += measured
        last.update({p.key: p for p in measured})
    return points


# --- reporting ----------------------------------------------------------------------


def of(points: list[Point], key: str) -> list[Point]:
    """A system's measured points, by N."""
    return [p for p in points if p.key == key and p.step_us]


def floor_of(points: list[Point], steps: int) -> float:
    """The median step of raw sqlite3, one commit a step, at ``steps`` (NaN if absent)."""
    found = [p for p in points if p.key == "sqlite1" and p.steps == steps and p.step_us]
    return median(found[0].step_us) if found else float("nan")


def step_table(points: list[Point], opts: Options) -> str:
    """Per-step cost of every system at every N."""
    header = [
        "system",
        "N steps",
        "steps timed",
        "step median µs",
        "step p99 µs",
        "step mean µs",
        "median / sqlite3 1-commit",
        "bytes on disk per step",
    ]
    rows = []
    for key in opts.systems:
        for p in of(points, key):
            ratio = median(p.step_us) / floor_of(points, p.steps)
            rows.append(
                [
                    spec_of(key).label,
                    fmt(p.steps),
                    fmt(len(p.step_us)),
                    fmt(median(p.step_us)),
                    fmt(percentile(p.step_us, 99)),
                    fmt(sum(p.step_us) / len(p.step_us)),
                    "-" if ratio != ratio else f"{ratio:,.1f}x",
                    fmt(p.bytes_per_step),
                ]
            )
    return markdown_table(header, rows)


def resume_table(points: list[Point], opts: Options) -> str:
    """Resume cost, what it loads, and the history's cost to write and keep."""
    header = [
        "system",
        "N steps",
        "resume ms (median)",
        "resume ms (max)",
        "items loaded",
        "file MB (after timing)",
        "write history s",
    ]
    rows = [
        [
            spec_of(key).label,
            fmt(p.steps),
            fmt(median(p.resume_ms), 1),
            fmt(max(p.resume_ms), 1),
            fmt(p.items),
            fmt(p.bytes_after / 1e6, 1),
            fmt(p.build_s, 1),
        ]
        for key in opts.systems
        for p in of(points, key)
    ]
    return markdown_table(header, rows)


def not_measured(points: list[Point], skipped: list[Spec]) -> str:
    """What could not be measured, and why."""
    lines = [
        f"- **{spec.label}**: not installed here (`pip install -e '.[bench]'`); skipped."
        for spec in skipped
    ]
    lines += [f"- **{spec_of(p.key).label}** at N={p.steps:,}: {p.note}." for p in points if p.note]
    return "\n".join(lines) if lines else "- Nothing: every system ran at every N."


def reading(points: list[Point], opts: Options) -> str:
    """Per system, whether step cost, resume and bytes per step stay flat as N grows."""
    lines = []
    for key in opts.systems:
        ps = of(points, key)
        if not ps:
            continue
        span = f"N={ps[0].steps:,} to N={ps[-1].steps:,}"
        steps = [median(p.step_us) for p in ps]
        resumes = [median(p.resume_ms) for p in ps]
        sizes = [max(p.bytes_per_step, 1.0) for p in ps]
        lines.append(
            f"- **{spec_of(key).label}** ({span}): median step "
            f"{fmt(steps[0])} → {fmt(steps[-1])} µs, {flat_verdict(steps, 'N')}; resume "
            f"{fmt(resumes[0], 1)} → {fmt(resumes[-1], 1)} ms, {flat_verdict(resumes, 'N')}; "
            f"bytes per step {fmt(sizes[0])} → {fmt(sizes[-1])}, {flat_verdict(sizes, 'N')}."
        )
    return "\n".join(lines)


PACKAGES = (
    "eventsourcing",
    "sqlalchemy",
    "pydantic",
    "openai-agents",
    "langgraph",
    "langgraph-checkpoint-sqlite",
    "langchain-core",
    "matplotlib",
)


def method(opts: Options) -> str:
    """How the numbers were taken, so they can be judged."""
    return f"""\
- One **step** is one round of an agent as agentlog's runtime records it: the model's
  response (about {len(peers.TEXT)} bytes of text, one tool call with {len(peers.ARGS_JSON)}
  bytes of JSON arguments), the claim on the call and the tool's result ({len(peers.RESULT):,}
  bytes). No model and no tool run: the model answers at once, the tool returns at once.
  Each system records the step its own way, durably before the step returns:
  - **sqlite3, 1 commit/step**: the step's four rows (JSON states) in one transaction,
    in a table like eventsourcing's, on a connection set up like eventsourcing's
    (autocommit with an explicit `BEGIN`, WAL, default `synchronous`): the floor.
  - **sqlite3, 3 commits/step**: the same rows in agentlog's three commits (response with
    its call; the claim, before the tool runs; the result).
  - **eventsourcing.sqlite, plain aggregate**: a `Conversation` aggregate written as
    eventsourcing's README writes one (`@event` methods, its messages kept as state),
    held in memory between steps, three saves a step; no snapshots.
  - **OpenAI Agents SDK `SQLiteSession`**: one `add_items` of the step's three items
    (assistant message, function call, function call output), as the Runner stores them.
    The SDK has no claim: a call is not on disk before its tool runs.
  - **LangGraph `SqliteSaver`**: a two-node graph (model → tool) over `MessagesState`,
    compiled with the saver; a step is one `invoke(..., durability="sync")`, which writes a
    checkpoint per super-step, each holding the whole message list (the saver keeps
    channel values inline). The history is one `update_state` with N steps' messages (a
    real graph would have written N times as many checkpoints: its file would be larger).
  - **agentlog, log only**: `Runtime.advance` twice (a model step: ModelResponded +
    ToolCalled in one save; a tool step: ToolStarted saved before the tool runs, then
    ToolSucceeded) on `open_log(url)` with its defaults: loading the agent (kept in
    memory by the log's aggregate cache, brought up to date with the events stored after
    it: one read), the model's context (the latest compaction and what followed, kept by
    the runtime between steps), deciding, saving. Every {peer_agentlog.COMPACT_EVERY}
    steps a summarizer records a compaction, untimed, so the context stays short.
  - **agentlog, worker**: as `Worker.work` runs an agent: the store opened with the views
    off the write path (`open_store(url, embedded=False)`); each pass of the work loop
    (every {peer_agentlog.TURN} advances) calls `Worker.runnable()`, which catches the
    views up, and builds the worker's runtime; that cost lands on the pass's first step
    (see p99 and the mean). Compactions as for the log only.
  agentlog and the plain aggregate load nothing per step that grows with N; agentlog also
  reads the model's context each model step, which the peers here do not read at all.
- Histories: for each N, every system writes N steps to its own fresh file, untimed and
  as fast as it allows (big batches), then takes {WARM_UP} untimed steps. For agentlog's
  worker, "write history s" includes opening the store, which catches the views up with
  the whole history.
- Lockstep: then rounds, each one step of every system, in an order that rotates each
  round, so the machine's load falls on all alike; each step timed with `perf_counter_ns`.
  Up to {opts.timed} timed steps per system, or fewer once {opts.budget_s:g} s went into its
  steps (at least {MIN_STEPS}); a system stops once its file passes {opts.max_file_gb:g} GB.
  p99 is the nearest-rank 99th percentile, so with about 100 steps it is the second
  slowest step.
- Bytes on disk per step: the file's growth over the timed steps, measured with its WAL
  checkpointed into it (`PRAGMA wal_checkpoint(TRUNCATE)`), divided by the steps; for
  agentlog it includes snapshots, compactions and (worker) the views' rows.
- Resume: after the steps, each system's file is opened in a fresh Python process, which
  imports its libraries (untimed), then times opening the file and loading the
  conversation: raw sqlite3 reads and decodes every row; eventsourcing gets the
  aggregate (replaying every event); the SDK's `get_items()` (what the Runner reads
  before a run); LangGraph's `get_state` (the latest checkpoint); agentlog loads the
  agent (the newest snapshot + tail) and the model's context (the worker path opens the
  store as a worker does, catching the views up first). Median of {opts.resumes} processes,
  interleaved across systems. The peers load the whole conversation: that is what their
  APIs give back, and what their runners read before a run ("items loaded"). agentlog
  loads what the next step needs, the agent's bounded state and the messages since the
  last compaction; the rest of the transcript stays in the log, read by version when
  wanted.
- Caps: a system whose next N is predicted, growing linearly from its last point, to take
  more than {opts.cap_s:g} s (writing the history, {MIN_STEPS} steps and the resumes) is not
  run there, and the report says so.
- "Flat" means the value at the largest N is less than {common.FLAT_RATIO:g}x the lowest.
  One run on a shared 2-core machine: the load average is in the machine section."""


def render(
    points: list[Point], opts: Options, info: tuple[Path, float, float], drawn: list[Path]
) -> str:
    """This benchmark's section of docs/benchmarks.md (without the markers)."""
    workdir, wall_s, load_start = info
    skipped = [spec_of(k) for k in opts.systems if not spec_of(k).installed]
    question = (
        "What does recording one agent step durably cost agentlog next to raw `sqlite3`, "
        "eventsourcing, the OpenAI Agents SDK and LangGraph, measured side by side in one "
        "run, and what does resuming a conversation of N steps cost each?"
    )
    opening = preamble(
        "bench_peers.py", "Peers, side by side", question, command_line(opts), wall_s
    )
    return f"""\
{opening}

## Machine

{machine_info(workdir, load_start, PACKAGES)}
- agentlog: git {git_version()}

## Per step

{step_table(points, opts)}

## Resume, and what a history costs to keep

{resume_table(points, opts)}

## Plots

{plots.figures(drawn, opts.out)}

## Not measured

{not_measured(points, skipped)}

## Reading

{reading(points, opts)}

## Method

{method(opts)}
"""


def command_line(opts: Options) -> str:
    """The command that reproduces this run."""
    return " ".join(
        [
            ".venv/bin/python bench/bench_peers.py",
            f"--steps {','.join(map(str, opts.steps))}",
            f"--timed {opts.timed}",
            f"--budget {opts.budget_s:g}",
            f"--resumes {opts.resumes}",
            f"--cap {opts.cap_s:g}",
            f"--max-file-gb {opts.max_file_gb:g}",
            plots_option(opts.plots),
            "--out docs/benchmarks.md",
        ]
    )


# --- command line -------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> Options:
    """The command line, validated."""
    parser = sweep_parser(
        __doc__, DEFAULT_STEPS, "systems", KEYS, resumes=DEFAULT_RESUMES, cap_s=DEFAULT_CAP_S
    )
    add = parser.add_argument
    add("--timed", type=int, default=DEFAULT_TIMED, help="most timed steps per system and N")
    add("--budget", type=float, default=DEFAULT_BUDGET_S, help="seconds of steps per point")
    add("--max-file-gb", type=float, default=DEFAULT_MAX_FILE_GB, help="file size cap")
    args, sweep = parse_sweep(parser, argv, "systems", KEYS)
    if args.timed < MIN_STEPS:
        parser.error(f"--timed must be at least {MIN_STEPS}")
    return Options(
        **vars(sweep), timed=args.timed, budget_s=args.budget, max_file_gb=args.max_file_gb
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, print the tables and write the report (or be a resume child)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == [RESUME_CHILD]:
        return child(argv[1], Path(argv[2]), argv[3])
    opts = parse_args(argv)
    started, load_start = time.perf_counter(), os.getloadavg()[0]
    installed = [k for k in opts.systems if spec_of(k).installed]
    for key in set(opts.systems) - set(installed):
        log(f"{key}: not installed, skipped")
    with tempfile.TemporaryDirectory(prefix="agentlog-bench-peers-") as tmp:
        workdir = Path(tmp)
        points = run(replace(opts, systems=installed), workdir)
        wall_s = time.perf_counter() - started
    labels = {s.key: s.label for s in peers.SPECS}
    measured = [p for p in points if p.step_us]
    drawn = plots.draw(measured, opts.plots, labels, PLOTS) if opts.plots is not None else []
    section = render(points, opts, (workdir, wall_s, load_start), drawn)
    print(step_table(points, opts), resume_table(points, opts), sep="\n\n")
    print(f"\nwall time {wall_s:,.0f} s; section written to {opts.out}")
    write_section(opts.out, "bench_peers", section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
