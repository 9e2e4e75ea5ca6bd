"""Smoke test of bench/bench_langgraph.py at tiny sizes, so that it does not rot between
real runs (LangGraph's own savers come from the ``bench`` extra: skipped without it)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from bench_runs import run_bench


def _bench(tmp_path: Path, *args: str) -> tuple[str, str]:
    out = tmp_path / "benchmarks.md"
    run = run_bench("bench_langgraph", out, "--resumes", "1", "--plots", "none", *args)
    return run.stdout, run.report


def _rows(text: str, label: str) -> list[list[str]]:
    lines = [line for line in text.splitlines() if line.startswith(f"| {label} |")]
    return [[cell.strip() for cell in line.split("|")[2:-1]] for line in lines]


def test_bench_measures_each_saver_at_each_mark_and_writes_its_section(tmp_path: Path) -> None:
    stdout, doc = _bench(tmp_path, "--kinds", "agentlog-sqlite,sqlite-saver", "--steps", "10,20")
    rows = _rows(stdout, "AgentLogSaver (SQLite)")
    assert [row[0] for row in rows] == ["10", "20"]
    for row in rows:
        assert float(row[2]) > 0  # time in the saver
        assert float(row[6].replace(",", "")) > 0  # bytes per step
        assert int(row[9]) == 1 + 2 * int(row[0])  # a fresh process loaded them all
    assert doc.startswith("<!-- bench_langgraph:start -->")
    assert doc.rstrip().endswith("<!-- bench_langgraph:end -->")
    if importlib.util.find_spec("langgraph.checkpoint.sqlite") is None:
        assert "**SqliteSaver**: `langgraph.checkpoint.sqlite` not installed" in doc
    else:
        assert [row[0] for row in _rows(stdout, "SqliteSaver")] == ["10", "20"]


def test_a_saver_over_the_size_cap_is_stopped_and_the_table_says_so(tmp_path: Path) -> None:
    stdout, _ = _bench(
        tmp_path, "--kinds", "agentlog-sqlite", "--steps", "30,60", "--max-gb", "0.000001"
    )
    rows = _rows(stdout, "AgentLogSaver (SQLite)")
    assert [row[0] for row in rows] == ["30", "60"]
    assert all(row[1].startswith("capped at step 25: its store held") for row in rows)
