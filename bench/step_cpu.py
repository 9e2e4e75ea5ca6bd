"""CPU of a worker's steps alone, for A/B comparisons of the step's code on a busy machine.

Runs ``bench_step``'s production worker rig (aggregate cache, cached transcripts, a
compaction every 50 steps) with the views left out, on a fresh history (SQLite, or an
empty PostgreSQL database with ``--url``), and prints the CPU per step by kind. CPU
time on a shared machine moves with the load; the instructions a step executes do not.
To count them for all steps (whole rounds, compactions included), run it under
valgrind with two step counts and take the difference (the setup is the same in both)::

    valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null \\
        .venv/bin/python bench/step_cpu.py --steps 40     # then --steps 240
    # (I refs at 240 - I refs at 40) / 200 = instructions per step

To count one kind of step alone, run it under callgrind with ``--kind``: it turns
collection on around each step of that kind only (through callgrind's client request,
in a helper it compiles with ``cc``), so the total is those steps' instructions::

    valgrind --tool=callgrind --collect-atstart=no --callgrind-out-file=/tmp/model.cg \\
        .venv/bin/python bench/step_cpu.py --steps 200 --kind model
    # Collected / 100 = instructions per model step (callgrind_annotate: where)

Callgrind counts the thread that takes the step: the tool's own thread (a no-op here)
is left out. To compare two trees, put each first on ``PYTHONPATH`` (a folder holding
``agentlog/``).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from bench_step import CONFIGS, build_history, rig_for

from agentlog.domain.steps import StepKind

WARM_UP = 40
_TOGGLE_C = b"#include <valgrind/callgrind.h>\nvoid toggle(void) { CALLGRIND_TOGGLE_COLLECT; }\n"


def main() -> None:
    """Time ``--steps`` worker steps and print CPU µs per step by kind."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600, help="steps timed")
    parser.add_argument("--length", type=int, default=1000, help="events in the history")
    parser.add_argument(
        "--url", help="an empty store to build the history in (postgresql+psycopg://...)"
    )
    parser.add_argument(
        "--kind",
        choices=[StepKind.MODEL.value, StepKind.TOOL.value],
        help="under callgrind (--collect-atstart=no): collect the steps of this kind only",
    )
    parser.add_argument(
        "--group-commit",
        action="store_true",
        help="saves go through group commit (a worker with --concurrency above 1)",
    )
    args = parser.parse_args()
    cpu: dict[StepKind, list[float]] = {StepKind.MODEL: [], StepKind.TOOL: []}
    with tempfile.TemporaryDirectory() as folder:
        toggle = _collector(Path(folder)) if args.kind else None
        history = build_history(Path(folder), args.length, compacted=True, url=args.url)
        with rig_for(CONFIGS[0], history, group_commit=args.group_commit) as rig:
            rig.views = None  # the step alone: views are caught up beside it
            for _ in range(WARM_UP):
                rig.step()
                rig.compact_if_due()
            started = time.process_time()
            for i in range(args.steps):
                kind = StepKind.MODEL if i % 2 == 0 else StepKind.TOOL  # rounds: model, tool
                with _collecting(toggle if args.kind == kind.value else None):
                    sample = rig.step()
                if sample.kind is not kind:
                    raise RuntimeError(f"step {i} was a {sample.kind} step, not {kind}")
                cpu.setdefault(sample.kind, []).append(sample.cpu_us)
                if i % 2:
                    rig.compact_if_due()
            spent = time.process_time() - started
    for kind, values in cpu.items():
        if values:
            print(f"{kind.value:6s} steps: CPU median {statistics.median(values):,.0f} µs")
    print(f"all: {spent / max(args.steps, 1) * 1e6:,.0f} µs CPU per step (process)")


def _collector(folder: Path) -> Callable[[], None]:
    """Callgrind's ``CALLGRIND_TOGGLE_COLLECT``, from a helper compiled here (a no-op
    outside valgrind)."""
    source, library = folder / "toggle.c", folder / "toggle.so"
    source.write_bytes(_TOGGLE_C)
    subprocess.run(["cc", "-O1", "-shared", "-fPIC", "-o", library, source], check=True)
    toggle: Callable[[], None] = ctypes.CDLL(str(library)).toggle
    return toggle


@contextlib.contextmanager
def _collecting(toggle: Callable[[], None] | None) -> Iterator[None]:
    if toggle is None:
        yield
        return
    toggle()
    try:
        yield
    finally:
        toggle()


if __name__ == "__main__":
    main()
