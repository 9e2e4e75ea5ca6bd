"""Smoke test of the peers benchmark: it runs without the bench extra (peers that are not
installed are skipped and named; no plots without matplotlib)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench" / "bench_peers.py"
START, END = "<!-- bench_peers:start -->", "<!-- bench_peers:end -->"
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


def load_bench() -> ModuleType:
    """bench/bench_peers.py as a module (bench/ is a folder of scripts, not a package)."""
    if str(BENCH.parent) not in sys.path:
        sys.path.insert(0, str(BENCH.parent))  # its shared modules
    spec = importlib.util.spec_from_file_location("bench_peers", BENCH)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def section_of(report: str) -> str:
    """The text between the markers (asserting there is exactly one pair)."""
    assert report.count(START) == 1
    assert report.count(END) == 1
    return report.split(START, 1)[1].split(END, 1)[0]


def installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def test_tiny_run_writes_its_section_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "benchmarks.md"
    out.write_text(EXISTING, encoding="utf-8")
    plots = tmp_path / "img"
    argv = ["--steps", "3,6", "--timed", "5", "--budget", "0", "--resumes", "1"]

    assert load_bench().main([*argv, "--plots", str(plots), "--out", str(out)]) == 0

    report = out.read_text(encoding="utf-8")
    assert report.startswith(EXISTING)
    section = section_of(report)
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
    assert "| sqlite3, 1 commit/step | 3 |" in capsys.readouterr().out


def test_a_point_predicted_over_the_cap_is_not_run(tmp_path: Path) -> None:
    out = tmp_path / "benchmarks.md"
    argv = ["--steps", "3,30", "--systems", "sqlite1", "--timed", "5", "--budget", "0"]

    assert (
        load_bench().main([*argv, "--cap", "0.000001", "--plots", "none", "--out", str(out)]) == 0
    )

    section = section_of(out.read_text(encoding="utf-8"))
    assert "| sqlite3, 1 commit/step | 3 | 5 |" in section
    assert "| sqlite3, 1 commit/step | 30 |" not in section
    assert "**sqlite3, 1 commit/step** at N=30: capped: at N=3 it took" in section


def test_rejects_unknown_system(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        load_bench().main(["--systems", "mongodb"])
    assert "unknown mongodb" in capsys.readouterr().err
