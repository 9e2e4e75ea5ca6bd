"""Smoke test of the scale benchmark: a tiny grid (a few agents, an instant model, a
second-long window) runs real worker processes, measures from the log, checks that the
views converge, and writes its section and plot. PostgreSQL joins in where its server
binaries are installed."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench" / "bench_scale.py"
START, END = "<!-- bench_scale:start -->", "<!-- bench_scale:end -->"
PAGE = "# Scaling\n\nThe design, written by hand: left exactly as it is.\n"
TINY = (
    "--shards 1 --workers 2 --concurrency 2 --agents 6 --latency 0 --turns 200 "
    "--warmup 0.5 --window 1 --no-fsync-test"
)
HEADINGS = (
    "### Reproduce",
    "### Machine",
    "### Workload",
    "### Must show",
    "### Steps per second",
    "### Step latency",
    "### CPU",
)


def load_bench() -> ModuleType:
    """bench/bench_scale.py as a module (bench/ is a folder of scripts, not a package)."""
    if str(BENCH.parent) not in sys.path:
        sys.path.insert(0, str(BENCH.parent))  # its shared modules
    spec = importlib.util.spec_from_file_location("bench_scale", BENCH)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def section_of(page: str) -> str:
    """The text between the markers (asserting there is exactly one pair)."""
    assert page.count(START) == 1
    assert page.count(END) == 1
    return page.split(START, 1)[1].split(END, 1)[0]


def test_tiny_grid_measures_steps_and_writes_its_section_only(tmp_path: Path) -> None:
    bench = load_bench()
    stores = "sqlite,postgres" if bench.find_bindir() is not None else "sqlite"
    out, plot = tmp_path / "scaling.md", tmp_path / "img" / "scaling.png"
    out.write_text(PAGE, encoding="utf-8")
    argv = ["--stores", stores, *TINY.split()]

    assert bench.main([*argv, "--out", str(out), "--plot", str(plot)]) == 0

    page = out.read_text(encoding="utf-8")
    assert page.startswith(PAGE)
    section = section_of(page)
    for heading in HEADINGS:
        assert f"\n{heading}\n" in section
    assert " ".join(argv) in section
    rows = [line for line in section.splitlines() if line.startswith("| SQLite | 2 | 2 | 4 |")]
    assert len(rows) == 1
    model_steps = float(rows[0].split("|")[6].replace(",", ""))
    assert model_steps > 0  # counted from the log, in the window
    assert "PASS views converge" in section
    if "postgres" in stores:
        assert "| PostgreSQL, S=1 | 2 | 2 | 4 |" in section
        assert "fsync = on" in section
    if importlib.util.find_spec("matplotlib") is not None:
        assert plot.is_file()
        assert "](img/scaling.png)" in section


def test_bad_arguments_are_one_line_errors(capsys: pytest.CaptureFixture[str]) -> None:
    bench = load_bench()
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["--stores", "mongodb"])
    assert exit_info.value.code == 2
    assert "unknown mongodb" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench.main(["--workers", "1,x"])
    assert "--workers: give whole numbers" in capsys.readouterr().err
