"""The README's main job runs from a clean folder and tells the agent's whole story."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

WALKTHROUGH = Path(__file__).resolve().parent.parent / "examples" / "walkthrough.py"


def test_walkthrough_survives_a_killed_worker_and_completes(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "AGENTLOG_DB"}
    done = subprocess.run(
        [sys.executable, str(WALKTHROUGH)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "write_file (awaiting_permission)" in done.stdout
    assert "ToolOutcomeUnknown" in done.stdout
    assert "TaskCompleted" in done.stdout
    assert done.stdout.count("ToolStarted") == 2  # read once, write once: never re-run
    assert (tmp_path / ".agentlog" / "agentlog.db").exists()
    assert (tmp_path / ".agentlog" / "sandbox" / "haiku.txt").read_text().startswith("append")
