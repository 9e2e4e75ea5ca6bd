"""Running a script of ``bench/`` for its smoke test: as ``python bench/NAME.py`` in a
subprocess, at a tiny size, writing its section into a report under ``tmp_path``.

A script that fails fails the test with its exit status and the end of its stderr.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

BENCH = Path(__file__).resolve().parent.parent / "bench"
TIMEOUT_S = 240


@dataclass(frozen=True)
class BenchRun:
    """What a benchmark run printed, and the report it wrote."""

    stdout: str
    stderr: str
    report: str  # the whole file, other people's text included

    def section(self, name: str) -> str:
        """The text between benchmark ``name``'s markers (exactly one pair of them)."""
        return section_of(self.report, name)


def run_bench(script: str, out: Path, *args: str, existing: str | None = None) -> BenchRun:
    """Run ``bench/{script}.py`` with ``args`` and ``--out out`` (holding ``existing``
    first, if given); the run must succeed."""
    if existing is not None:
        out.write_text(existing, encoding="utf-8")
    done = _run(script, *args, "--out", str(out))
    if done.returncode != 0:
        raise AssertionError(_failure(done))
    return BenchRun(done.stdout, done.stderr, out.read_text(encoding="utf-8"))


def bench_usage_error(script: str, *args: str) -> str:
    """Run ``bench/{script}.py`` with bad ``args``: it must exit 2; its stderr."""
    done = _run(script, *args)
    if done.returncode != 2:
        raise AssertionError(_failure(done, wanted="2 (a usage error)"))
    return done.stderr


def section_of(report: str, name: str) -> str:
    """The text between benchmark ``name``'s markers, asserting there is one pair."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    assert report.count(start) == 1, f"{start} found {report.count(start)} times"
    assert report.count(end) == 1, f"{end} found {report.count(end)} times"
    return report.split(start, 1)[1].split(end, 1)[0]


def load_bench(script: str) -> ModuleType:
    """``bench/{script}.py`` as a module, for tests of its functions (bench/ is a folder
    of scripts, not a package: it goes on ``sys.path`` for their shared modules)."""
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    return importlib.import_module(script)


def _run(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, str(BENCH / f"{script}.py"), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)


def _failure(done: subprocess.CompletedProcess[str], wanted: str = "0") -> str:
    command = " ".join(str(part) for part in done.args[1:])
    return (
        f"{command} exited {done.returncode}, not {wanted}; its stderr ends:\n{done.stderr[-3000:]}"
    )
