"""Smoke test of the scale benchmark: a tiny grid (a few agents, an instant model, a
second-long window) runs real worker processes, measures from the log, checks that the
views converge, and writes its section and plot. PostgreSQL joins in where its server
binaries are installed."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from bench_runs import bench_usage_error, load_bench, run_bench

PAGE = "# Scaling\n\nThe design, written by hand: left exactly as it is.\n"
TINY = (
    "--shards 1 --workers 2 --concurrency 2 --agents 6 --latency 0 --turns 200 "
    "--warmup 0.5 --window 1 --no-fsync-test"
)
HEADINGS = (
    "### Reproduce",
    "### Machine",
    "### Workload",
    "### Must show",
    "### Steps per second",
    "### Step latency",
    "### CPU",
)


def test_tiny_grid_measures_steps_and_writes_its_section_only(tmp_path: Path) -> None:
    stores = "sqlite,postgres" if load_bench("bench_scale").find_bindir() is not None else "sqlite"
    out, plot = tmp_path / "scaling.md", tmp_path / "img" / "scaling.png"
    argv = ["--stores", stores, *TINY.split()]

    run = run_bench("bench_scale", out, *argv, "--plot", str(plot), existing=PAGE)

    assert run.report.startswith(PAGE)
    section = run.section("bench_scale")
    for heading in HEADINGS:
        assert f"\n{heading}\n" in section
    assert " ".join(argv) in section
    rows = [line for line in section.splitlines() if line.startswith("| SQLite | 2 | 2 | 4 |")]
    assert len(rows) == 1
    model_steps = float(rows[0].split("|")[6].replace(",", ""))
    assert model_steps > 0  # counted from the log, in the window
    assert "PASS views converge" in section
    if "postgres" in stores:
        assert "| PostgreSQL, S=1 | 2 | 2 | 4 |" in section
        assert "fsync = on" in section
    if importlib.util.find_spec("matplotlib") is not None:
        assert plot.is_file()
        assert "](img/scaling.png)" in section


def test_bad_arguments_are_one_line_errors() -> None:
    assert "unknown mongodb" in bench_usage_error("bench_scale", "--stores", "mongodb")
    assert "--workers: give whole numbers" in bench_usage_error("bench_scale", "--workers", "1,x")
