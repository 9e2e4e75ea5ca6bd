"""Smoke test of the storage benchmark, so that it does not rot between real runs."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench" / "bench_storage.py"
SECTIONS = (
    "# Storage benchmarks",
    "## Reproduce",
    "## Machine",
    "## Writes: one save per worker step",
    "## Reads: loading one agent",
    "## Reading",
    "## Method",
)


def load_bench() -> ModuleType:
    """bench/bench_storage.py as a module (bench/ is a folder of scripts, not a package)."""
    if str(BENCH.parent) not in sys.path:
        sys.path.insert(0, str(BENCH.parent))  # its shared module, common.py
    spec = importlib.util.spec_from_file_location("bench_storage", BENCH)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_tiny_run_writes_every_section(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "benchmarks.md"
    argv = ["--sizes", "20,60", "--engines", "native", "--runs", "2", "--out", str(out)]

    assert load_bench().main(argv) == 0

    report = out.read_text(encoding="utf-8")
    for section in SECTIONS:
        assert f"\n{section}\n" in f"\n{report}"
    assert "--sizes 20,60 --engines native" in report
    assert "| native | 20 |" in report
    assert "| native | 60 |" in report
    assert "sqlalchemy |" not in report
    assert "Load with snapshots (cold)" in report
    assert "save median µs" in capsys.readouterr().out


def test_rejects_unknown_engine(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        load_bench().main(["--engines", "mongodb"])
    assert "unknown mongodb" in capsys.readouterr().err
