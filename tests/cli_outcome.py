"""Running the real CLI (in process, or as a process) and checking its one-line errors."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from click.testing import CliRunner

from agentlog.cli import main

AGENTLOG = Path(sys.executable).parent / "agentlog"
BLOCKER = Path(__file__).parent / "data" / "block_imports"
"""A folder with a ``sitecustomize`` that makes the modules in $BLOCK_MODULES unimportable."""


@dataclass(frozen=True)
class Outcome:
    """What a command did: exit code and its two streams."""

    code: int
    stdout: str
    stderr: str

    @property
    def first_error(self) -> str:
        """The first line of stderr."""
        return (self.stderr.splitlines() or [""])[0]

    @property
    def output(self) -> str:
        """Both streams."""
        return self.stdout + self.stderr


def invoke(*args: str, env: dict[str, str] | None = None) -> Outcome:
    """The CLI, in this process (click's runner)."""
    result = CliRunner().invoke(main, list(args), env=env)
    return Outcome(result.exit_code, result.stdout, result.stderr)


def spawn(*args: str, env: dict[str, str] | None = None, prefix: tuple[str, ...] = ()) -> Outcome:
    """The ``agentlog`` executable, as a process (``prefix`` runs it under another command)."""
    done = subprocess.run(
        [*prefix, str(AGENTLOG), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
        check=False,
    )
    return Outcome(done.returncode, done.stdout, done.stderr)


def without(*modules: str) -> dict[str, str]:
    """The environment of a process in which these modules cannot be imported."""
    path = os.pathsep.join(filter(None, [str(BLOCKER), os.environ.get("PYTHONPATH")]))
    return {"PYTHONPATH": path, "BLOCK_MODULES": ",".join(modules)}


def fails_in_one_line(outcome: Outcome, first_line: str, code: int = 1) -> None:
    """The command failed with ``code`` and a first stderr line starting ``first_line``,
    and nothing it printed is a traceback."""
    assert outcome.code == code, outcome.output
    assert outcome.first_error.startswith(first_line), outcome.output
    assert "Traceback" not in outcome.output


def unprivileged() -> tuple[str, ...]:
    """A prefix under which file permissions hold even for root (no DAC override)."""
    if os.geteuid() != 0:
        return ()
    setpriv = shutil.which("setpriv")
    assert setpriv is not None, "root without setpriv cannot test read-only files"
    return (setpriv, "--bounding-set=-dac_override,-dac_read_search,-fowner")
