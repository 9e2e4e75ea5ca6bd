"""Smoke test of the rebuild benchmark, so that it does not rot between real runs."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench" / "bench_rebuild.py"
START, END = "<!-- bench_rebuild:start -->", "<!-- bench_rebuild:end -->"
EXISTING = "# Storage benchmarks\n\nSomeone else's section: left exactly as it is.\n"
SECTIONS = (
    "# Rebuild benchmarks",
    "## Reproduce",
    "## Machine",
    "## Rebuild of each view",
    "## Cost along the log, rows and memory",
    "## Baselines: the same rows without a view",
    "## Where the time goes",
    "## Reading",
    "## The log",
    "## Method",
)


def load_bench() -> ModuleType:
    """bench/bench_rebuild.py as a module (bench/ is a folder of scripts, not a package)."""
    spec = importlib.util.spec_from_file_location("bench_rebuild", BENCH)
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


def test_tiny_run_writes_its_section_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "benchmarks.md"
    out.write_text(EXISTING, encoding="utf-8")
    argv = ["--events", "300", "--agents", "10", "--profile-events", "200", "--out", str(out)]

    assert load_bench().main(argv) == 0

    report = out.read_text(encoding="utf-8")
    assert report.startswith(EXISTING)
    section = section_of(report)
    for heading in SECTIONS:
        assert f"\n{heading}\n" in section
    assert "--events 300 --agents 10" in section
    assert "| view | events | rebuild s | events/s |" in section
    for view in ("state", "audit", "transcript", "runnable"):
        assert f"| {view} | 300 |" in section
        assert f"**{view}** (first 300 events" in section  # one batch: all 300
    assert "| raw sqlite3 read | 300 |" in section
    assert "source digest" in section
    assert "The code changed during the run" not in section
    assert "| state | 300 |" in capsys.readouterr().out


def test_a_second_run_replaces_the_section(tmp_path: Path) -> None:
    out = tmp_path / "benchmarks.md"
    out.write_text(EXISTING, encoding="utf-8")
    bench = load_bench()
    common = ["--agents", "5", "--profile-events", "0", "--out", str(out)]

    assert bench.main(["--events", "40", "--views", "audit", *common]) == 0
    assert bench.main(["--events", "60", "--views", "state", *common]) == 0

    report = out.read_text(encoding="utf-8")
    assert report.startswith(EXISTING)
    section = section_of(report)
    assert "| state | 60 |" in section
    assert "| audit |" not in section
    assert "Not profiled in this run" in section


def test_splice_keeps_text_around_the_markers() -> None:
    splice = load_bench().splice
    document = f"before\n\n{START}\nold\n{END}\n\nafter\n"

    assert splice(document, "new") == f"before\n\n{START}\nnew\n{END}\n\nafter\n"
    assert splice("", "new") == f"{START}\nnew\n{END}\n"


def test_rejects_unknown_view(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        load_bench().main(["--views", "billing"])
    assert "unknown billing" in capsys.readouterr().err


def test_names_the_files_that_changed_under_a_view() -> None:
    bench = load_bench()
    start = {"projections/audit.py": "a1", "domain/agent.py": "d1"}
    later = {"projections/audit.py": "a2", "domain/agent.py": "d1", "domain/new.py": "n1"}

    def measured(view: str, code: dict[str, str]) -> SimpleNamespace:
        return SimpleNamespace(result=SimpleNamespace(view=view, code=code))

    assert bench.code_changes([measured("state", start)], start) is None
    note = bench.code_changes([measured("state", start), measured("audit", later)], start)
    assert "audit: domain/new.py, projections/audit.py" in note
    assert "state:" not in note
    assert "different source from each other" in note
