"""Smoke test of the storage benchmark, so that it does not rot between real runs."""

from __future__ import annotations

from pathlib import Path

from bench_runs import bench_usage_error, run_bench

SECTIONS = (
    "# Storage benchmarks",
    "## Reproduce",
    "## Machine",
    "## Writes: one save per worker step",
    "## Reads: loading one agent",
    "## Reading",
    "## Method",
)


def test_tiny_run_writes_every_section(tmp_path: Path) -> None:
    argv = ["--sizes", "20,60", "--engines", "native", "--runs", "2"]

    run = run_bench("bench_storage", tmp_path / "benchmarks.md", *argv)

    report = run.report
    for section in SECTIONS:
        assert f"\n{section}\n" in f"\n{report}"
    assert "--sizes 20,60 --engines native" in report
    assert "| native | 20 |" in report
    assert "| native | 60 |" in report
    assert "sqlalchemy |" not in report
    assert "Load with snapshots (cold)" in report
    assert "save median µs" in run.stdout


def test_rejects_unknown_engine() -> None:
    assert "unknown mongodb" in bench_usage_error("bench_storage", "--engines", "mongodb")
