"""Smoke test of the group commit benchmark, so that it does not rot between real runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench" / "bench_group_commit.py"
START, END = "<!-- bench_group_commit:start -->", "<!-- bench_group_commit:end -->"
EXISTING = "# Storage benchmarks\n\nSomeone else's text: left exactly as it is.\n"


def test_tiny_run_writes_its_section_only(tmp_path: Path) -> None:
    out = tmp_path / "benchmarks.md"
    out.write_text(EXISTING, encoding="utf-8")
    argv = ["--ks", "1,2", "--seconds", "0.3", "--repeats", "1", "--profile-steps", "10"]

    subprocess.run([sys.executable, str(BENCH), *argv, "--out", str(out)], check=True)

    report = out.read_text(encoding="utf-8")
    assert report.startswith(EXISTING)
    section = report.split(START, 1)[1].split(END, 1)[0]
    for heading in ("# Group commit benchmarks", "## Steps per second", "## Reading", "## Method"):
        assert f"\n{heading}\n" in section
    assert "--ks 1,2 --seconds 0.3 --repeats 1 --profile-steps 10" in section
    assert section.count("\n| 1 | ") == 2 + 6  # two results rows, and a row per configuration
    assert section.count("\n| 2 | ") == 2 + 6
    assert "| `sqlite3.Connection.commit` |" in section
