"""Smoke test of the group commit benchmark, so that it does not rot between real runs."""

from __future__ import annotations

from pathlib import Path

from bench_runs import run_bench

EXISTING = "# Storage benchmarks\n\nSomeone else's text: left exactly as it is.\n"


def test_tiny_run_writes_its_section_only(tmp_path: Path) -> None:
    argv = ["--ks", "1,2", "--seconds", "0.3", "--repeats", "1", "--profile-steps", "10"]

    run = run_bench("bench_group_commit", tmp_path / "benchmarks.md", *argv, existing=EXISTING)

    assert run.report.startswith(EXISTING)
    section = run.section("bench_group_commit")
    for heading in ("# Group commit benchmarks", "## Steps per second", "## Reading", "## Method"):
        assert f"\n{heading}\n" in section
    assert "--ks 1,2 --seconds 0.3 --repeats 1 --profile-steps 10" in section
    assert section.count("\n| 1 | ") == 2 + 6  # two results rows, and a row per configuration
    assert section.count("\n| 2 | ") == 2 + 6
    assert "| `sqlite3.Connection.commit` |" in section
    assert "- What the bar needs here:" in section  # with the events-alone measure
