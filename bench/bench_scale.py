"""Scale benchmark: many agents, several worker processes of K threads each, one
PostgreSQL (S shards) or one SQLite file; steps per second against the latency bound.

Every run sets up a fresh store with N agents (default 1,000), each with a task and a
scripted model that answers after ``--latency`` seconds (default 0.2): a call of the
built-in pure ``calculator`` tool each turn, then done, so an agent alternates model
steps and tool steps like a real one. Then W real ``agentlog worker --concurrency K``
processes run through a warm-up and a timed window, and are stopped (SIGTERM). Steps,
step latency and the agents finished are read from the log (the events' recorded
timestamps); CPU from /proc (the workers' processes, the PostgreSQL server's processes,
the whole machine). After each run the views are caught up and compared, row for row,
with a rebuild of every view.

PostgreSQL is a throwaway cluster of its own on 127.0.0.1 (``scale_server.py``: default
settings, ``fsync`` on). The results replace this benchmark's section of
``docs/scaling.md`` (between its marker comments); the plot goes to
``docs/img/scaling.png``::

    .venv/bin/pip install -e '.[postgres,bench]'
    .venv/bin/python bench/bench_scale.py            # the full grid, ~25 minutes
    .venv/bin/python bench/bench_scale.py --stores sqlite --agents 20 --window 2 \\
        --warmup 2 --out /tmp/s.md --plot none     # a quick look
"""

from __future__ import annotations

import argparse
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import scale_report
from common import DOCS, fmt, log, machine_info, names, preamble, whole_numbers, write_section
from scale_run import AGENTLOG, Config, Environment, Result, Workload, cores, model_spec, run
from scale_server import Server, find_bindir

SCRIPT = "bench_scale.py"
SECTION = "bench_scale"
DEFAULT_OUT = DOCS / "scaling.md"
DEFAULT_PLOT = DOCS / "img" / "scaling.png"
STORES = ("postgres", "sqlite")
SLACK_S = 10.0  # seconds of work past the window that every run's script must hold
MIN_TURNS = 3


@dataclass(frozen=True)
class Options:
    """The command line, checked."""

    configs: list[Config]
    workload: Workload
    out: Path
    fsync_test: bool
    section: str
    plot: Path | None
    max_connections: int
    command: str


def parse_args(argv: Sequence[str]) -> Options:
    """The command line, validated; what is missing from this agentlog is an error."""
    parser = argparse.ArgumentParser(
        prog=f"python bench/{SCRIPT}",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--agents", type=int, default=1000, help="agents in each run (default: 1000)")
    add("--latency", type=float, default=0.2, help="seconds the model takes to answer (0.2)")
    add(
        "--turns",
        type=int,
        default=0,
        help="model turns in each agent's script; 0 (default): enough that the agents "
        "cannot run out of work before the window ends at the bound",
    )
    add("--workers", default="1,2,4", help="worker processes W, comma-separated (1,2,4)")
    add("--concurrency", default="1,8,32", help="threads K per worker (1,8,32)")
    add("--shards", default="1,4", help="PostgreSQL shards S (1,4); SQLite runs S=1 only")
    add("--stores", default=",".join(STORES), help="postgres and/or sqlite (both)")
    add(
        "--warmup",
        type=float,
        default=6.0,
        help="seconds from every worker's first step to the window (6)",
    )
    add("--window", type=float, default=20.0, help="seconds of the timed window (20)")
    add("--poll", type=float, default=0.1, help="each worker's --poll when idle (0.1)")
    add(
        "--worker-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="an extra option for every `agentlog worker`, e.g. --worker-arg=--no-group-commit "
        "(repeatable)",
    )
    add(
        "--max-connections",
        type=int,
        default=500,
        help="the PostgreSQL server's max_connections (default 500; PostgreSQL's own is 100)",
    )
    add(
        "--fsync-test",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="measure the disk's fdatasync rate with pg_test_fsync first (~15 s; default on)",
    )
    add("--out", type=Path, default=DEFAULT_OUT, help="page whose section is replaced")
    add("--plot", default=str(DEFAULT_PLOT), help="PNG to draw, or 'none'")
    add(
        "--section",
        default=SECTION,
        help=f"name of the section written (default {SECTION}; another name adds a section, "
        "e.g. for a run with other --worker-arg)",
    )
    args = parser.parse_args(argv)
    stores = names(parser, "--stores", args.stores, STORES)
    workers = whole_numbers(parser, "--workers", args.workers)
    threads = whole_numbers(parser, "--concurrency", args.concurrency)
    shards = whole_numbers(parser, "--shards", args.shards)
    if args.agents < 1 or args.latency < 0 or args.window <= 0 or args.warmup < 0:
        parser.error("--agents >= 1, --latency >= 0, --window > 0 and --warmup >= 0")
    configs = [
        Config(store, s, w, k)
        for store in stores
        for s in (shards if store == "postgres" else [1])
        for k in threads
        for w in workers
    ]
    turns = args.turns or auto_turns(args, max(c.slots for c in configs))
    if turns < 1:
        parser.error("--turns must be at least 1")
    workload = Workload(
        args.agents,
        args.latency,
        turns,
        args.warmup,
        args.window,
        args.poll,
        tuple(args.worker_arg),
    )
    if problem := missing(configs, workload):
        parser.exit(2, f"Error: {problem}\n")
    plot = None if args.plot == "none" else Path(args.plot)
    command = " ".join([".venv/bin/python", f"bench/{SCRIPT}", *argv])
    if not re.fullmatch(r"[a-z0-9_]+", args.section):
        parser.error("--section: lower-case letters, digits and _ only")
    return Options(
        configs,
        workload,
        args.out,
        args.fsync_test,
        args.section,
        plot,
        args.max_connections,
        command,
    )


def auto_turns(args: argparse.Namespace, slots: int) -> int:
    """Turns per agent so that N agents hold more work than the biggest run can do."""
    if args.latency <= 0:
        return 10
    steps = float(args.warmup + args.window + SLACK_S) * slots / float(args.latency)
    return max(MIN_TURNS, math.ceil(1.5 * steps / int(args.agents)) + 1)


def missing(configs: Sequence[Config], workload: Workload) -> str | None:
    """What this agentlog lacks for these runs (an option, a model), or None."""
    if any(c.store == "postgres" for c in configs) and find_bindir() is None:
        return "no PostgreSQL server binaries (initdb, pg_ctl): install them, or --stores sqlite"
    if any(c.concurrency > 1 for c in configs) and "--concurrency" not in helps("worker"):
        return "this agentlog's worker has no --concurrency option: run with --concurrency 1"
    if any(c.shards > 1 for c in configs if c.store == "postgres") and "--shards" not in helps(
        "init"
    ):
        return "this agentlog's init has no --shards option: run with --shards 1"
    for arg in workload.worker_args:
        if arg.split("=")[0].startswith("--") and arg.split("=")[0] not in helps("worker"):
            return f"this agentlog's worker has no {arg.split('=')[0]} option (--worker-arg)"
    if workload.latency > 0:
        return latency_missing(workload.latency)
    return None


def helps(command: str) -> str:
    """The --help text of an agentlog command."""
    done = subprocess.run(
        [AGENTLOG, command, "--help"], check=False, capture_output=True, text=True
    )
    return done.stdout


def latency_missing(latency: float) -> str | None:
    """Why a scripted model with latency cannot be built here, or None."""
    from agentlog.adapters.models import model_for
    from agentlog.domain import AgentError

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "script.json"
        path.write_text('[{"text": "done", "done": true}]')
        try:
            model_for(model_spec(path, latency))
        except AgentError as e:
            return f"no scripted model with latency here ({e}): run with --latency 0"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Run every configuration, print the tables and checks, write the section and plot."""
    opts = parse_args(list(sys.argv[1:] if argv is None else argv))
    started, load_start = time.perf_counter(), os.getloadavg()[0]
    needs_server = any(c.store == "postgres" for c in opts.configs)
    bindir = find_bindir()
    server = Server(bindir, opts.max_connections) if needs_server and bindir else None
    results: list[Result] = []
    try:
        pg_settings = server.settings() if server else {}
        if server is not None and opts.fsync_test:
            pg_settings["disk: one 8 kB write + fdatasync (pg_test_fsync)"] = server.fsync_rate()
        with tempfile.TemporaryDirectory(prefix="agentlog-bench-scale-") as tmp:
            env = Environment(Path(tmp), server)
            for n, config in enumerate(opts.configs, 1):
                log(
                    f"run {n}/{len(opts.configs)}: {config.label}, W={config.workers}, "
                    f"K={config.concurrency}"
                )
                results.append(run(config, opts.workload, env))
                say(results[-1])
    finally:
        if server is not None:
            server.stop()
    wall_s = time.perf_counter() - started
    plot = scale_report.draw(results, opts.workload.latency, opts.plot) if opts.plot else None
    lines = scale_report.checks(results, opts.workload.latency)
    section = render(opts, results, lines, plot, pg_settings, (Path(tmp), wall_s, load_start))
    print(scale_report.throughput_table(results, opts.workload.latency), "", *lines, sep="\n")
    write_section(opts.out, opts.section, section)
    print(f"\nwall time {wall_s:,.0f} s; section written to {opts.out}")
    return 1 if any(r.errors for r in results) else 0


def say(result: Result) -> None:
    """One progress line per run."""
    if result.errors:
        log(f"  FAILED: {'; '.join(result.errors)}")
        return
    log(
        f"  {fmt(result.per_s(result.model_steps), 1)} model steps/s, "
        f"{fmt(result.per_s(result.tool_steps), 1)} tool steps/s, "
        f"views converge: {result.converged}"
    )


def render(
    opts: Options,
    results: Sequence[Result],
    lines: Sequence[str],
    plot: Path | None,
    pg_settings: dict[str, str],
    where: tuple[Path, float, float],
) -> str:
    """The section of docs/scaling.md (its headings one level down from the page's)."""
    workdir, wall_s, load_start = where
    w, latency, ncores = opts.workload, opts.workload.latency, cores()
    head = preamble(
        SCRIPT,
        "Measured: steps per second against workers x threads"
        + (f" (workers with {' '.join(w.worker_args)})" if w.worker_args else ""),
        "What W worker processes of K threads store per second, on PostgreSQL "
        "and on SQLite, next to the latency bound W x K / model latency.",
        opts.command,
        wall_s,
    )
    settings = ", ".join(f"{k} = {v}" for k, v in pg_settings.items()) or "no PostgreSQL run"
    figure = (
        f"![model steps/s against W x K]({os.path.relpath(plot, opts.out.parent)})"
        if plot
        else "No plot in this run (matplotlib not installed, or `--plot none`)."
    )
    errors = [
        f"- {r.config.label}, W={r.config.workers}, K={r.config.concurrency}: {'; '.join(r.errors)}"
        for r in results
        if r.errors
    ]
    failures = sorted({k for r in results for k in r.failures})
    body = f"""\
{head}

## Machine

{machine_info(workdir, load_start)}
- PostgreSQL (a throwaway cluster of its own on 127.0.0.1): {settings}
- CPUs this run may use: {ncores}. Every process of the benchmark (workers, PostgreSQL)
  shares them, with whatever else runs on the machine ("others' CPU" below).

## Workload

- {w.agents:,} agents per run, each with a task and a scripted model that answers after
  {latency:g} s; its script: a call of the pure built-in `calculator` tool each turn,
  {w.turns} turns, then done ({w.turns - 1} tool calls). An agent alternates model steps
  and tool steps.
- Each run: a fresh store and fresh agents (set up untimed), W `agentlog worker
  --concurrency K --poll {w.poll:g}{"".join(" " + a for a in w.worker_args)}` processes,
  {w.warmup:g} s warm-up once every worker has taken a step (printed its first step
  line), a {w.window:g} s window, then SIGTERM.
- **Model steps/s**: `ModelResponded` events whose recorded timestamp falls in the window,
  per second; **tool steps**: `ToolSucceeded`/`ToolFailed`. **Bound**: W x K / {latency:g} s,
  the model steps/s if every thread always waited on the model and nothing else took
  time. **x W=1**: model steps/s over one worker's at the same store and K.
- **Step latency**: per agent, the time from its previous step event to this one, for
  step events in the window (a model step's includes the model's {latency:g} s; the gap
  before an agent's first step is not counted). An agent that waits for a free thread
  between turns shows it here.
- **CPU**: utime + stime from /proc at the window's ends: the workers' processes, the
  PostgreSQL server's processes (postmaster, backends, background; reaped backends
  included), and the whole machine (busy = not idle). **CPU ms/step**: (workers' +
  database CPU) / (model + tool steps); **CPU-bound ceiling** = {ncores} cores x 1000 /
  CPU ms per step: the steps/s this machine could give at that cost per step.
- **Views converge**: after the workers stopped, the views are caught up, read, then
  every view is rebuilt from the log and read again: the rows must be equal.
{f"- Failures recorded by agents (summed over runs): {', '.join(failures)}" if failures else ""}

## Must show

```
{chr(10).join(lines)}
```

## Steps per second

{scale_report.throughput_table(results, latency)}

{figure}

## Step latency

{scale_report.latency_table(results)}

## CPU

{scale_report.cpu_table(results, ncores)}

## PostgreSQL

Transactions are those committed in the run's database, reads included
(`pg_stat_database.xact_commit`); WAL syncs are the server's (`pg_stat_wal.wal_sync`:
each makes commits durable, several at once when they wait together), both over the
window; lock waiters are the backends with an ungranted lock in `pg_locks`, sampled once
a second.

{scale_report.postgres_table(results)}
{chr(10) + "## Runs that failed" + chr(10) * 2 + chr(10).join(errors) if errors else ""}"""
    return demote(body)


def demote(markdown: str) -> str:
    """Every heading one level down (the page has its own title)."""
    return re.sub(r"^(#+) ", r"#\1 ", markdown, flags=re.MULTILINE)


if __name__ == "__main__":
    sys.exit(main())
