"""Smoke test of the rebuild benchmark, so that it does not rot between real runs."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from types import SimpleNamespace

from bench_runs import bench_usage_error, load_bench, run_bench

EXISTING = "# Storage benchmarks\n\nSomeone else's section: left exactly as it is.\n"
SECTIONS = (
    "# Rebuild benchmarks",
    "## Reproduce",
    "## Machine",
    "## Rebuild of each view",
    "## Cost along the log, rows and memory",
    "## Baselines: the same rows without a view",
    "## Where the time goes",
    "## Reading",
    "## The log",
    "## Method",
)


def test_tiny_run_writes_its_section_only(tmp_path: Path) -> None:
    argv = ["--events", "300", "--agents", "10", "--profile-events", "200"]

    run = run_bench("bench_rebuild", tmp_path / "benchmarks.md", *argv, existing=EXISTING)

    assert run.report.startswith(EXISTING)
    section = run.section("bench_rebuild")
    for heading in SECTIONS:
        assert f"\n{heading}\n" in section
    assert "--events 300 --agents 10" in section
    assert "| view | events | rebuild s | events/s |" in section
    for view in ("state", "audit", "transcript", "runnable"):
        assert f"| {view} | 300 |" in section
        assert f"**{view}** (first 300 events" in section  # one batch: all 300
    assert "| raw sqlite3 read | 300 |" in section
    assert "source digest" in section
    assert "The code changed during the run" not in section
    assert "| state | 300 |" in run.stdout


def test_a_second_run_replaces_the_section(tmp_path: Path) -> None:
    out = tmp_path / "benchmarks.md"
    tiny = ["--agents", "5", "--profile-events", "0"]

    run_bench("bench_rebuild", out, "--events", "40", "--views", "audit", *tiny, existing=EXISTING)
    run = run_bench("bench_rebuild", out, "--events", "60", "--views", "state", *tiny)

    assert run.report.startswith(EXISTING)
    section = run.section("bench_rebuild")
    assert "| state | 60 |" in section
    assert "| audit |" not in section
    assert "Not profiled in this run" in section


def test_rejects_unknown_view() -> None:
    assert "unknown billing" in bench_usage_error("bench_rebuild", "--views", "billing")


def test_names_the_files_that_changed_under_a_view() -> None:
    bench = load_bench("bench_rebuild")
    start = {"projections/audit.py": "a1", "domain/agent.py": "d1"}
    later = {"projections/audit.py": "a2", "domain/agent.py": "d1", "domain/new.py": "n1"}

    def measured(view: str, code: dict[str, str]) -> SimpleNamespace:
        return SimpleNamespace(result=SimpleNamespace(view=view, code=code))

    assert bench.code_changes([measured("state", start)], start) is None
    note = bench.code_changes([measured("state", start), measured("audit", later)], start)
    assert "audit: domain/new.py, projections/audit.py" in note
    assert "state:" not in note
    assert "different source from each other" in note


def test_reuse_store_writes_the_store_once_and_rebuilds_from_a_fresh_copy(tmp_path: Path) -> None:
    out, workdir = tmp_path / "benchmarks.md", tmp_path / "work"
    argv = ["--events", "80", "--agents", "5", "--views", "audit", "--profile-events", "0"]
    reuse = ["--workdir", str(workdir), "--reuse-store"]

    first = run_bench("bench_rebuild", out, *argv, *reuse)
    second = run_bench("bench_rebuild", out, *argv, *reuse)
    other = run_bench("bench_rebuild", out, "--events", "90", *argv[2:], *reuse)

    assert "writing 80 events" in first.stderr
    assert "copy of one written by an earlier run" not in first.section("bench_rebuild")
    assert "writing" not in second.stderr
    assert "copying the store kept" in second.stderr
    assert "copy of one written by an earlier run" in second.section("bench_rebuild")
    assert "| audit | 80 |" in second.section("bench_rebuild")
    with sqlite3.connect(workdir / "kept-rebuild.db") as kept:  # as written: no view built
        tables = [name for (name,) in kept.execute("SELECT name FROM sqlite_master")]
    assert "stored_events" in tables
    assert not [name for name in tables if name.startswith("agentlog_audit")]
    assert "writing 90 events" in other.stderr  # another size: written anew


def test_reuse_store_needs_a_workdir() -> None:
    assert "--reuse-store needs --workdir" in bench_usage_error("bench_rebuild", "--reuse-store")
