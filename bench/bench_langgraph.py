"""LangGraph checkpointers side by side: ``AgentLogSaver`` (SQLite, PostgreSQL) against
LangGraph's ``SqliteSaver`` and ``PostgresSaver``, on one tool-calling agent's loop.

Every saver runs the same graph (``lg_graph.graph``: model -> tool -> model ..., each
step appends an assistant message with a tool call and the tool's result to the message
list) in one long run, and the runs advance in lockstep: one step of each saver per
round, in an order that rotates, so the machine's load falls on all alike. At each mark
(100, 1,000, 10,000 steps) it records, over a window of steps just before the mark, the
time of a step (the whole graph) and the time spent inside the saver's methods, the
bytes a step added to the store, and the time a fresh process takes to open the store
and load the thread's latest checkpoint. A saver whose next mark would take too long,
or whose store would grow too large, is capped, and the report says so.

    .venv/bin/pip install -e '.[bench]'
    .venv/bin/python bench/bench_langgraph.py [--steps 100,1000,10000]

Without the ``bench`` extra, LangGraph's own savers are skipped (and named as such).
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import plots
from common import (
    RESUME_CHILD,
    Sweep,
    flat_verdict,
    fmt,
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
    sweep_parser,
    write_section,
)
from lg_savers import KINDS, TEXT, Store, kind_of, resume, steps

DEFAULT_STEPS = (100, 1_000, 10_000)
DEFAULT_WINDOW = 100  # timed steps before each mark (at most a fifth of the mark)
DEFAULT_RESUMES = 3
DEFAULT_CAP_S = 900.0  # seconds of stepping a saver may spend
DEFAULT_MAX_GB = 3.0  # a saver's store may not grow (or be predicted to grow) past this
CHECK_EVERY = 25  # steps between checks of a saver's store size and budget
THIS = Path(__file__).resolve()
SAVER_METHODS = ("get_tuple", "put", "put_writes", "list")


@dataclass
class Point:
    """One saver at one mark."""

    key: str
    steps: int
    step_ms: list[float] = field(default_factory=list)
    saver_ms: list[float] = field(default_factory=list)
    bytes_per_step: float = float("nan")
    store_bytes: int = 0
    resume_ms: list[float] = field(default_factory=list)
    messages: int = 0
    note: str = ""  # why it was not measured


@dataclass
class Runner:
    """A saver's store, its paused graph run, and what its steps cost so far."""

    store: Store
    run: Iterator[None]
    clock: SaverClock
    step_ms: list[float] = field(default_factory=list)
    saver_ms: list[float] = field(default_factory=list)
    spent_s: float = 0.0
    window_start_bytes: int = 0
    last_check: tuple[int, int] = (0, 0)  # (step, store bytes)


@dataclass(frozen=True)
class Options(Sweep):
    """The parsed command line (``systems``: the savers' keys)."""

    window: int
    max_gb: float


PLOTS: tuple[plots.Plot[Point], ...] = (
    ("langgraph-step", "time in the saver per step (median), ms", lambda p: median(p.saver_ms)),
    ("langgraph-bytes", "bytes on disk per step", lambda p: p.bytes_per_step),
    ("langgraph-resume", "resume (open + latest checkpoint), ms", lambda p: median(p.resume_ms)),
)


# --- stepping -----------------------------------------------------------------------


class SaverClock:
    """Seconds spent inside a saver's methods, summed over LangGraph's threads (it saves
    checkpoints and writes in the background), and a wait for the calls in flight."""

    def __init__(self, saver: Any) -> None:
        self.spent = 0.0
        self._in_flight = 0
        self._idle = threading.Condition()
        for name in SAVER_METHODS:
            setattr(saver, name, self._timed(getattr(saver, name)))

    def _timed(self, method: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            with self._idle:
                self._in_flight += 1
            started = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                with self._idle:
                    self.spent += time.perf_counter() - started
                    self._in_flight -= 1
                    self._idle.notify_all()

        return timed

    def settle(self) -> None:
        """Wait until no call of the saver is running."""
        with self._idle:
            self._idle.wait_for(lambda: self._in_flight == 0)


def start(key: str, folder: Path) -> Runner:
    """A saver on a fresh store, its agent's run started and paused."""
    store = kind_of(key).fresh(folder)
    clock = SaverClock(store.saver)
    return Runner(store, steps(store.saver), clock)


def step(runner: Runner) -> None:
    """One step of the agent, timed in all and inside the saver."""
    runner.clock.spent = 0.0
    started = time.perf_counter()
    next(runner.run)
    runner.clock.settle()  # writes still saving in the background belong to this step
    took = time.perf_counter() - started
    runner.spent_s += took
    runner.step_ms.append(took * 1e3)
    runner.saver_ms.append(runner.clock.spent * 1e3)


def window(mark: int, opts: Options) -> int:
    """How many steps before ``mark`` are measured."""
    return max(1, min(opts.window, mark // 5))


def over_budget(runner: Runner, done: int, mark: int, opts: Options) -> str | None:
    """Why the saver should stop before ``mark``, or None: its steps took the time
    budget, or its store holds (or, growing per step in proportion to the history, as
    a saver that stores the whole list does, would hold at the mark) more than the cap.
    Time is not predicted: on a shared machine a step's time is too noisy for that."""
    size = runner.store.size()
    before_step, before_size = runner.last_check
    runner.last_check = (done, size)
    if done - before_step <= 0:
        return None
    growth = (mark + done) / (2 * done)  # mean growth to the mark / growth now, if linear
    size_then = size + (mark - done) * (size - before_size) / (done - before_step) * growth
    if size >= opts.max_gb * 1e9 or size_then > opts.max_gb * 1e9:
        return (
            f"capped at step {done:,}: its store held {size / 1e6:,.0f} MB and would hold "
            f"about {size_then / 1e9:,.1f} GB at step {mark:,}, over the {opts.max_gb:g} GB cap"
        )
    if runner.spent_s > opts.cap_s:
        return (
            f"capped at step {done:,}: its steps took {runner.spent_s:,.0f} s, over the "
            f"{opts.cap_s:g} s cap (the step then: {median(runner.step_ms[-CHECK_EVERY:]):,.0f} ms)"
        )
    return None


def measure_mark(runners: dict[str, Runner], mark: int, opts: Options) -> list[Point]:
    """Every running saver at ``mark``: its window of steps, bytes and fresh resumes."""
    points: dict[str, Point] = {}
    if not runners:
        return []
    width = window(mark, opts)
    for key, runner in runners.items():
        size = runner.store.size()
        point = Point(key, mark, runner.step_ms[-width:], runner.saver_ms[-width:])
        point.bytes_per_step = (size - runner.window_start_bytes) / width
        point.store_bytes = size
        points[key] = point
    log(f"step {mark:>6,}: resuming {', '.join(runners)} in fresh processes ...")
    for _ in range(opts.resumes):
        for key, runner in runners.items():
            ms, points[key].messages = resume_in_child(THIS, key, runner.store.where)
            points[key].resume_ms.append(ms)
    return list(points.values())


def run(opts: Options, folder: Path) -> list[Point]:
    """Every saver, stepped in lockstep to the last mark (or its cap)."""
    runners = {key: start(key, folder) for key in opts.systems}
    points: list[Point] = []
    for done in range(1, opts.steps[-1] + 1):
        if not runners:
            break
        keys = list(runners)
        shift = done % max(len(keys), 1)
        for key in keys[shift:] + keys[:shift]:
            step(runners[key])
        mark = next(m for m in opts.steps if m >= done)
        if done == mark - window(mark, opts):
            for runner in runners.values():
                runner.window_start_bytes = runner.store.size()
        if done in opts.steps and runners:
            points += measure_mark(runners, done, opts)
            log(f"step {done:>6,}: " + ", ".join(_last(points, k) for k in runners))
        elif done % CHECK_EVERY == 0:
            for key in keys:
                if note := over_budget(runners[key], done, mark, opts):
                    log(f"{key}: {note}")
                    points += [Point(key, m, note=note) for m in opts.steps if m >= mark]
                    runners.pop(key).store.close()
    for runner in runners.values():
        runner.store.close()
    return points


def _last(points: list[Point], key: str) -> str:
    point = [p for p in points if p.key == key][-1]
    return f"{key} {median(point.saver_ms):.2f} ms in saver"


# --- resume in a fresh process --------------------------------------------------------


def child(key: str, where: str) -> int:
    """In the fresh process: imports are untimed; opening and loading are."""
    return report_resume(lambda: resume(key, where))


# --- reporting ----------------------------------------------------------------------


def table(points: list[Point], opts: Options) -> str:
    """One row per saver and mark (capped ones say so)."""
    header = [
        "saver",
        "N steps",
        "steps timed",
        "saver ms / step (median)",
        "saver ms / step (p95)",
        "graph step ms (median)",
        "graph step ms (p95)",
        "bytes / step",
        "store MB",
        "resume ms (median)",
        "messages loaded",
    ]
    rows = []
    for key in opts.systems:
        for p in (p for p in points if p.key == key):
            label = kind_of(key).label
            if p.note:
                rows.append([label, fmt(p.steps), p.note, *["-"] * (len(header) - 3)])
                continue
            rows.append(
                [
                    label,
                    fmt(p.steps),
                    fmt(len(p.step_ms)),
                    fmt(median(p.saver_ms), 2),
                    fmt(percentile(p.saver_ms, 95), 2),
                    fmt(median(p.step_ms), 2),
                    fmt(percentile(p.step_ms, 95), 2),
                    fmt(p.bytes_per_step),
                    fmt(p.store_bytes / 1e6, 1),
                    fmt(median(p.resume_ms), 1),
                    fmt(p.messages),
                ]
            )
    return markdown_table(header, rows)


def reading(points: list[Point], opts: Options) -> str:
    """Per saver, whether its step cost, bytes per step and resume stay flat."""
    lines = []
    for key in opts.systems:
        ps = [p for p in points if p.key == key and not p.note]
        if not ps:
            continue
        saver = [median(p.saver_ms) for p in ps]
        sizes = [max(p.bytes_per_step, 1.0) for p in ps]
        resumes = [median(p.resume_ms) for p in ps]
        lines.append(
            f"- **{kind_of(key).label}** (N={ps[0].steps:,} to {ps[-1].steps:,}): time in the "
            f"saver per step {fmt(saver[0], 2)} → {fmt(saver[-1], 2)} ms, "
            f"{flat_verdict(saver, 'N')}; bytes per step {fmt(sizes[0])} → {fmt(sizes[-1])}, "
            f"{flat_verdict(sizes, 'N')}; resume {fmt(resumes[0], 1)} → "
            f"{fmt(resumes[-1], 1)} ms, {flat_verdict(resumes, 'N')}."
        )
    return "\n".join(lines)


PACKAGES = (
    "eventsourcing",
    "langgraph",
    "langgraph-checkpoint",
    "langgraph-checkpoint-sqlite",
    "langgraph-checkpoint-postgres",
    "langchain-core",
    "psycopg",
)


def method(opts: Options) -> str:
    """How the numbers were taken."""
    return f"""\
- The agent: `START → model → tool → model → ...` over `MessagesState`, run as one long
  `stream(..., durability="sync")` (as LangGraph runs a tool-calling agent's loop: every
  checkpoint is written before the next node runs). A step is one model node (an
  assistant message of {len(TEXT)} characters with one tool call) and one tool node
  (a tool message of the same size): two checkpoints and their pending writes. The nodes
  do no work of their own.
- Lockstep: each round takes one step of every saver still running, in an order that
  rotates each round. Each step is timed whole ("graph step": LangGraph's own work, which
  includes its `add_messages` reducer, plus the saver's) and inside the saver's methods
  (`{"`, `".join(SAVER_METHODS)}`), summed over the threads LangGraph saves from
  (it saves in the background and waits for the save before the next node): what the
  checkpointer costs. A step is over when LangGraph hands out the tool's update and
  no call of the saver is running any more.
- At each mark N the last {opts.window} steps (at most N/5) are the sample; p95 is the
  nearest-rank 95th percentile. Bytes per step: the store's growth over those steps,
  divided by them. SQLite: the file with its WAL checkpointed into it
  (`PRAGMA wal_checkpoint(TRUNCATE)`), so the WAL is counted once. PostgreSQL:
  `pg_total_relation_size` (rows, TOAST, indexes) of every table in the saver's own
  database.
- Resume: a fresh Python process, given only the store's path or URL and the thread id,
  imports (untimed), then opens the saver and calls `get_tuple` for the thread's latest
  checkpoint (what `invoke` reads before it runs); median of {opts.resumes} processes,
  interleaved across savers. Every saver returns the whole message list (LangGraph's
  API): `AgentLogSaver` folds the thread's events and concatenates its deltas.
- Caps: every {CHECK_EVERY} steps a saver is stopped if its steps took more than
  {opts.cap_s:g} s, or its store holds more than {opts.max_gb:g} GB or would by the next mark
  (bytes per step assumed to grow in proportion to the history, as they do for a saver
  that stores the whole list). The table names the step it stopped at and why.
- "Flat" means the value at the largest N is less than 2x the lowest. One run on a
  shared 2-core machine: the load average is in the machine section."""


def render(points: list[Point], opts: Options, info: tuple[Path, float, float]) -> str:
    """This benchmark's section of docs/benchmarks.md."""
    folder, wall_s, load_start = info
    question = (
        "What does a LangGraph agent's checkpointer cost per step, in time and bytes, and "
        "what does resuming the thread cost, as the message list grows: agentlog's "
        "`AgentLogSaver` against LangGraph's `SqliteSaver` and `PostgresSaver`, measured "
        "side by side in one run?"
    )
    opening = preamble(
        "bench_langgraph.py", "LangGraph checkpointers", question, command_line(opts), wall_s
    )
    labels = {k.key: k.label for k in KINDS}
    measured = [p for p in points if p.saver_ms]
    drawn = plots.draw(measured, opts.plots, labels, PLOTS) if opts.plots else []
    missing = [
        f"- **{k.label}**: {why}; skipped." for k in KINDS if (why := k.missing()) is not None
    ]
    return f"""\
{opening}

## Machine

{machine_info(folder, load_start, PACKAGES)}

## Per step and resume

{table(points, opts)}

## Plots

{plots.figures(drawn, opts.out)}

## Not measured

{chr(10).join(missing) or "- Every saver was installed and ran."}

## Reading

{reading(points, opts)}

## Method

{method(opts)}
"""


def command_line(opts: Options) -> str:
    """The command that reproduces this run."""
    return (
        f".venv/bin/python bench/bench_langgraph.py --steps {','.join(map(str, opts.steps))} "
        f"--window {opts.window} --resumes {opts.resumes} --cap {opts.cap_s:g} "
        f"--max-gb {opts.max_gb:g} {plots_option(opts.plots)} --out docs/benchmarks.md"
    )


# --- command line -------------------------------------------------------------------


def parse_args(argv: Sequence[str]) -> Options:
    """The command line, validated."""
    keys = [k.key for k in KINDS]
    parser = sweep_parser(
        __doc__, DEFAULT_STEPS, "kinds", keys, resumes=DEFAULT_RESUMES, cap_s=DEFAULT_CAP_S
    )
    add = parser.add_argument
    add("--window", type=int, default=DEFAULT_WINDOW, help="steps measured before a mark")
    add("--max-gb", type=float, default=DEFAULT_MAX_GB, help="largest store per saver")
    args, sweep = parse_sweep(parser, argv, "kinds", keys)
    if args.window < 1:
        parser.error("--window must be positive")
    return Options(**vars(sweep), window=args.window, max_gb=args.max_gb)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, print its table and write its section (or be a resume child)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == [RESUME_CHILD]:
        return child(argv[1], argv[2])
    opts = parse_args(argv)
    started, load_start = time.perf_counter(), os.getloadavg()[0]
    runnable = []
    for key in opts.systems:
        if (why := kind_of(key).missing()) is None:
            runnable.append(key)
        else:
            log(f"{key}: {why}; skipped")
    running = replace(opts, systems=runnable)
    with tempfile.TemporaryDirectory(prefix="agentlog-bench-langgraph-") as tmp:
        points = run(running, Path(tmp))
        wall_s = time.perf_counter() - started
        section = render(points, opts, (Path(tmp), wall_s, load_start))
    print(table(points, opts))
    write_section(opts.out, "bench_langgraph", section)
    print(f"\nwall time {wall_s:,.0f} s; section written to {opts.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
