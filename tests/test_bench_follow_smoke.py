"""Smoke test of the follow benchmark, so that it does not rot between real runs."""

from __future__ import annotations

from pathlib import Path

from bench_runs import bench_usage_error, run_bench

EXISTING = "# Storage benchmarks\n\nSomeone else's section: left exactly as it is.\n"


def test_tiny_run_writes_its_section_only(tmp_path: Path) -> None:
    argv = ["--stores", "sqlite", "--agents", "40", "--touched", "35", "--rounds", "2"]

    run = run_bench("bench_follow", tmp_path / "benchmarks.md", *argv, existing=EXISTING)

    assert run.report.startswith(EXISTING)
    section = run.section("bench_follow")
    assert "# Follow benchmark" in section
    assert "--agents 40 --touched 35" in section
    assert "| sqlite |" in section


def test_an_unknown_store_is_a_usage_error() -> None:
    assert "--stores" in bench_usage_error("bench_follow", "--stores", "oracle")
