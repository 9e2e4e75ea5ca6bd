"""The scale benchmark's tables, must-show checks and plot."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import plots
from common import fmt, markdown_table
from scale_run import Config, Result

BOUND_SHARE = 0.75  # of W x K / latency, at W=4, K=32 on PostgreSQL
SPEED_UP = 3.0  # W=4 over W=1 at K=32


def bound(config: Config, latency: float) -> float:
    """Model steps per second if every thread always waited on the model: W x K / latency."""
    return config.slots / latency if latency > 0 else float("nan")


def find(results: Sequence[Result], config: Config) -> Result | None:
    """The result of a configuration, if it ran without errors."""
    return next((r for r in results if r.config == config and not r.errors), None)


def speed_up(results: Sequence[Result], result: Result) -> float:
    """Model steps/s over the same store and K with one worker."""
    one = Config(result.config.store, result.config.shards, 1, result.config.concurrency)
    base = find(results, one)
    if base is None or not base.model_steps:
        return float("nan")
    return result.model_steps / result.window_s / base.per_s(base.model_steps)


def pct(value: float) -> str:
    """A share as a percentage ('-' for NaN)."""
    return "-" if value != value else f"{100 * value:.0f}%"


def throughput_table(results: Sequence[Result], latency: float) -> str:
    """Steps per second against the latency bound, one row per run."""
    header = [
        "store",
        "W",
        "K",
        "W x K",
        "bound, model steps/s",
        "model steps/s",
        "of bound",
        "x W=1",
        "tool steps/s",
        "all steps/s",
        "agents done",
    ]
    rows = []
    for r in results:
        c, model = r.config, r.per_s(r.model_steps)
        rows.append(
            [
                c.label,
                str(c.workers),
                str(c.concurrency),
                str(c.slots),
                fmt(bound(c, latency)),
                fmt(model, 1),
                pct(model / bound(c, latency)),
                fmt(speed_up(results, r), 2),
                fmt(r.per_s(r.tool_steps), 1),
                fmt(r.per_s(r.model_steps + r.tool_steps), 1),
                str(r.finished),
            ]
        )
    return markdown_table(header, rows)


def latency_table(results: Sequence[Result]) -> str:
    """Step latency percentiles, one row per run."""
    header = [
        "store",
        "W",
        "K",
        "model step p50, ms",
        "model step p99, ms",
        "tool step p50, ms",
        "tool step p99, ms",
        "model steps timed",
    ]
    rows = [
        [
            r.config.label,
            str(r.config.workers),
            str(r.config.concurrency),
            fmt(r.latency("model", 50), 1),
            fmt(r.latency("model", 99), 1),
            fmt(r.latency("tool", 50), 1),
            fmt(r.latency("tool", 99), 1),
            f"{len(r.model_gaps_ms):,}",
        ]
        for r in results
    ]
    return markdown_table(header, rows)


def cpu_table(results: Sequence[Result], cores: int) -> str:
    """Where the CPU went in the window, and the step rate it would allow."""
    header = [
        "store",
        "W",
        "K",
        "workers' CPU",
        "database CPU",
        "machine busy",
        "others' CPU",
        "workers' ms/step",
        "database ms/step",
        "CPU ms/step",
        "CPU-bound ceiling, steps/s",
    ]
    rows = []
    for r in results:
        window = r.window_s or float("nan")
        db = r.db_cpu_s
        others = r.busy_s - r.worker_cpu_s - (db or 0.0)
        ceiling = cores * 1000 / r.cpu_ms_per_step
        steps = (r.model_steps + r.tool_steps) or float("nan")
        rows.append(
            [
                r.config.label,
                str(r.config.workers),
                str(r.config.concurrency),
                pct(r.worker_cpu_s / window),
                "no server" if db is None else pct(db / window),
                pct(r.busy_s / window),
                pct(others / window),
                fmt(1000 * r.worker_cpu_s / steps, 2),
                "-" if db is None else fmt(1000 * db / steps, 2),
                fmt(r.cpu_ms_per_step, 2),
                fmt(ceiling),
            ]
        )
    return markdown_table(header, rows)


def postgres_table(results: Sequence[Result]) -> str:
    """What the server did in the window: transactions, WAL syncs, lock waits, connections."""
    header = [
        "store",
        "W",
        "K",
        "transactions/s",
        "transactions/step",
        "WAL syncs/s",
        "WAL syncs/step",
        "backends waiting, by lock (mean)",
        "peak connections",
    ]
    rows = []
    for r in results:
        if r.commits is None or r.wal_syncs is None:
            continue
        steps = r.model_steps + r.tool_steps
        rows.append(
            [
                r.config.label,
                str(r.config.workers),
                str(r.config.concurrency),
                fmt(r.per_s(r.commits)),
                per_step(r.commits, steps),
                fmt(r.per_s(r.wal_syncs)),
                per_step(r.wal_syncs, steps),
                waiters(r.lock_waiters or {}),
                str(r.peak_connections),
            ]
        )
    return markdown_table(header, rows) if rows else "No PostgreSQL run."


def waiters(by_lock: dict[str, float]) -> str:
    """Backends waiting on each lock (mean), the most waited-on first; '0' if none."""
    shown = [f"{name} {count:.1f}" for name, count in by_lock.items() if count >= 0.05][:3]
    return ", ".join(shown) or "0"


def per_step(count: int, steps: int) -> str:
    """A count over the steps it served ('-' without steps)."""
    return fmt(count / steps, 2) if steps else "-"


def checks(results: Sequence[Result], latency: float) -> list[str]:
    """The issue's must-show lines: PASS, FAIL, or SKIP when a run is missing."""
    lines = []
    shards = sorted({r.config.shards for r in results if r.config.store == "postgres"})
    for s in shards:
        big = find(results, Config("postgres", s, 4, 32))
        name = f"PostgreSQL S={s}, W=4 x K=32"
        if big is None:
            lines.append(f"SKIP {name}: not measured (or failed) in this run")
            continue
        share = big.per_s(big.model_steps) / bound(big.config, latency)
        verdict = "PASS" if share >= BOUND_SHARE else "FAIL"
        lines.append(
            f"{verdict} {name}: {pct(share)} of the latency bound "
            f"({fmt(big.per_s(big.model_steps), 1)} of {fmt(bound(big.config, latency))} "
            f"model steps/s; needs >= {pct(BOUND_SHARE)})"
        )
        times = speed_up(results, big)
        if times != times:
            lines.append(f"SKIP {name}: one worker at K=32 not measured (or failed) in this run")
        else:
            verdict = "PASS" if times >= SPEED_UP else "FAIL"
            lines.append(
                f"{verdict} {name}: {fmt(times, 2)}x one worker at K=32 (needs >= {SPEED_UP:g}x)"
            )
        lines.append(cpu_note(big, latency))
    checked = [r for r in results if r.converged is not None]
    bad = [r for r in checked if not r.converged]
    if not checked:
        lines.append("SKIP views converge: no run got as far as the check")
    else:
        verdict = "FAIL" if bad else "PASS"
        rows = sum(r.view_rows for r in checked)
        lines.append(
            f"{verdict} views converge: in {len(checked) - len(bad)} of {len(checked)} "
            f"runs every view caught up equals its rebuild, row for row, and every rebuilt "
            f"view is at the head of each shard ({rows:,} rows compared; shards per store: "
            f"{', '.join(sorted({str(r.view_shards) for r in checked}))})"
        )
    return lines


def cpu_note(result: Result, latency: float) -> str:
    """What reaching the bound share would take in CPU, at the CPU per step measured."""
    steps = result.model_steps + result.tool_steps
    if not result.model_steps or not result.window_s:
        return "NOTE no steps measured"
    wanted = BOUND_SHARE * bound(result.config, latency) * steps / result.model_steps
    cores = wanted * result.cpu_ms_per_step / 1000
    window = result.window_s
    got = (result.worker_cpu_s + (result.db_cpu_s or 0.0)) / window
    others = result.busy_s / window - got
    return (
        f"NOTE  CPU: {pct(BOUND_SHARE)} of the bound is {fmt(wanted)} steps/s (model and tool); "
        f"at the {fmt(result.cpu_ms_per_step, 2)} CPU ms per step measured that needs "
        f"{fmt(cores, 1)} cores; this run's workers and server got {fmt(got, 2)} cores "
        f"(other processes on the machine: {fmt(others, 2)})"
    )


def draw(results: Sequence[Result], latency: float, path: Path) -> Path | None:
    """The PNG: model steps/s against W x K, a line per store; None without matplotlib."""
    loaded = plots.pyplot()
    if loaded is None:
        return None
    figure, axes = loaded.subplots(figsize=(8, 5), dpi=110)
    ok = [r for r in results if not r.errors and r.model_steps]
    for label in dict.fromkeys(r.config.label for r in ok):
        mine = sorted(
            (r for r in ok if r.config.label == label),
            key=lambda r: (r.config.slots, r.config.workers),
        )
        xs, ys = [r.config.slots for r in mine], [r.per_s(r.model_steps) for r in mine]
        axes.plot(xs, ys, marker="o", label=label)
    if latency > 0 and ok:
        slots = sorted({r.config.slots for r in ok})
        axes.plot(slots, [s / latency for s in slots], "k--", label=f"bound: W x K / {latency:g} s")
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("worker processes x threads (W x K)")
    axes.set_ylabel("model steps/s (each followed by a tool step)")
    axes.grid(True, which="both", alpha=0.3)
    if axes.get_lines():
        axes.legend(fontsize="small")
    path.parent.mkdir(parents=True, exist_ok=True)
    return plots.save(loaded, figure, path)
