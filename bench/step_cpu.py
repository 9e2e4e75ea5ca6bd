"""CPU of a worker's steps alone, for A/B comparisons of the step's code on a busy machine.

Runs ``bench_step``'s production worker rig (aggregate cache, cached transcripts, a
compaction every 50 steps) with the views left out, on a fresh SQLite history, and
prints the CPU per step by kind. CPU time on a shared machine moves with the load; the
instructions a step executes do not. To count them, run it under valgrind with two step
counts and take the difference (the setup is the same in both)::

    valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null \\
        .venv/bin/python bench/step_cpu.py --steps 40     # then --steps 240
    # (I refs at 240 - I refs at 40) / 200 = instructions per step

To compare two trees, put each first on ``PYTHONPATH`` (a folder holding ``agentlog/``).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from bench_step import CONFIGS, build_history, rig_for

from agentlog.domain.steps import StepKind

WARM_UP = 40


def main() -> None:
    """Time ``--steps`` worker steps and print CPU µs per step by kind."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600, help="steps timed")
    parser.add_argument("--length", type=int, default=1000, help="events in the history")
    args = parser.parse_args()
    cpu: dict[StepKind, list[float]] = {StepKind.MODEL: [], StepKind.TOOL: []}
    with tempfile.TemporaryDirectory() as folder:
        history = build_history(Path(folder), args.length, compacted=True)
        with rig_for(CONFIGS[0], history) as rig:
            rig.views = None  # the step alone: views are caught up beside it
            for _ in range(WARM_UP):
                rig.step()
                rig.compact_if_due()
            started = time.process_time()
            for i in range(args.steps):
                sample = rig.step()
                cpu.setdefault(sample.kind, []).append(sample.cpu_us)
                if i % 2:
                    rig.compact_if_due()
            spent = time.process_time() - started
    for kind, values in cpu.items():
        if values:
            print(f"{kind.value:6s} steps: CPU median {statistics.median(values):,.0f} µs")
    print(f"all: {spent / max(args.steps, 1) * 1e6:,.0f} µs CPU per step (process)")


if __name__ == "__main__":
    main()
