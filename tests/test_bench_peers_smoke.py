"""Smoke test of the peers benchmark: it runs without the bench extra (peers that are not
installed are skipped and named; no plots without matplotlib)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from bench_runs import bench_usage_error, run_bench

EXISTING = "# Storage benchmarks\n\nSomeone else's section: left exactly as it is.\n"
SECTIONS = (
    "# Peers, side by side",
    "## Reproduce",
    "## Machine",
    "## Per step",
    "## Resume, and what a history costs to keep",
    "## Plots",
    "## Not measured",
    "## Reading",
    "## Method",
)
ALWAYS = (
    "sqlite3, 1 commit/step",
    "sqlite3, 3 commits/step",
    "eventsourcing.sqlite, plain aggregate",
    "agentlog, log only",
    "agentlog, worker",
)
PEERS = {
    "OpenAI Agents SDK SQLiteSession": "agents",
    "LangGraph SqliteSaver (2-node graph)": "langgraph.checkpoint.sqlite",
}


def installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def test_tiny_run_writes_its_section_only(tmp_path: Path) -> None:
    plots = tmp_path / "img"
    argv = ["--steps", "3,6", "--timed", "5", "--budget", "0", "--resumes", "1"]

    run = run_bench(
        "bench_peers", tmp_path / "benchmarks.md", *argv, "--plots", str(plots), existing=EXISTING
    )

    assert run.report.startswith(EXISTING)
    section = run.section("bench_peers")
    for heading in SECTIONS:
        assert f"\n{heading}\n" in section
    assert "--steps 3,6 --timed 5 --budget 0 --resumes 1" in section
    for label in ALWAYS:
        assert section.count(f"| {label} | 3 | 5 |") == 1
        assert section.count(f"| {label} | 6 |") == 2  # in both tables
    for label, module in PEERS.items():
        if installed(module):
            assert f"| {label} | 6 |" in section
        else:
            assert f"**{label}**: not installed here" in section
    if installed("matplotlib"):
        assert (plots / "peers-step.png").is_file()
        assert "](" in section
    else:
        assert not plots.exists()
        assert "No plots in this run" in section
    assert "| sqlite3, 1 commit/step | 3 |" in run.stdout


def test_a_point_predicted_over_the_cap_is_not_run(tmp_path: Path) -> None:
    argv = ["--steps", "3,30", "--systems", "sqlite1", "--timed", "5", "--budget", "0"]

    run = run_bench(
        "bench_peers", tmp_path / "benchmarks.md", *argv, "--cap", "0.000001", "--plots", "none"
    )

    section = run.section("bench_peers")
    assert "| sqlite3, 1 commit/step | 3 | 5 |" in section
    assert "| sqlite3, 1 commit/step | 30 |" not in section
    assert "**sqlite3, 1 commit/step** at N=30: capped: at N=3 it took" in section


def test_rejects_unknown_system() -> None:
    assert "unknown mongodb" in bench_usage_error("bench_peers", "--systems", "mongodb")
