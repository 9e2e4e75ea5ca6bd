"""The README's main job: ``agentlog demo`` survives a kill -9 wherever it lands."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.parametrize("crash_at", ["mid-tool", "before-tool", "none"])
def test_demo_finishes_and_writes_exactly_once(tmp_path: Path, crash_at: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTLOG_")}
    done = subprocess.run(
        [sys.executable, "-m", "agentlog.cli", "demo", "--crash-at", crash_at],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    out = done.stdout
    assert "TaskCompleted" in out
    assert "PermissionGranted    demo-user" in out
    if crash_at == "none":
        assert "ToolOutcomeUnknown" not in out
    else:
        assert "exited with -9" in out
        assert "ToolOutcomeUnknown" in out
    writes = sum("ToolStarted" in line and '"write-1"' in line for line in out.splitlines())
    assert writes == (1 if crash_at != "before-tool" else 2)  # re-run only if it never ran
    if crash_at == "mid-tool":
        assert "reconciled   write-1: it had happened" in out
    haiku = tmp_path / ".agentlog" / "sandbox" / "haiku.txt"
    assert haiku.read_text().startswith("append-only lines")
