"""Smoke test of bench/bench_langgraph.py, so that it does not rot between real runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench" / "bench_langgraph.py"


def test_bench_prints_a_row_per_saver_and_mark() -> None:
    out = subprocess.run(
        [sys.executable, str(BENCH), "--steps", "40"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    rows = [line for line in out.splitlines() if line.startswith("| AgentLogSaver")]
    assert [row.split("|")[2].strip() for row in rows] == ["20", "40"]
