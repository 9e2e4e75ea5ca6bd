"""PNG plots of bench_peers.py's results (log-log): step cost and resume against N.

matplotlib comes from the ``bench`` extra; without it, no plots are drawn."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from common import median


class Measured(Protocol):
    """What a plot reads of one system at one N."""

    key: str
    steps: int
    step_us: list[float]
    resume_ms: list[float]


PLOTS: tuple[tuple[str, str, Callable[[Measured], float]], ...] = (
    ("peers-step", "median step, µs", lambda p: median(p.step_us)),
    ("peers-resume", "resume (open + load), ms", lambda p: median(p.resume_ms)),
)


def draw(points: Sequence[Measured], folder: Path, labels: Mapping[str, str]) -> list[Path]:
    """One PNG per plot in ``folder``; none without matplotlib."""
    if importlib.util.find_spec("matplotlib") is None:
        return []
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, ylabel, value in PLOTS:
        figure, axes = pyplot.subplots(figsize=(8, 5), dpi=110)
        for key, label in labels.items():
            mine = [p for p in points if p.key == key and p.step_us]
            if mine:
                xs, ys = [p.steps for p in mine], [value(p) for p in mine]
                axes.plot(xs, ys, marker="o", label=label)
        style(axes, ylabel)
        path = folder / f"{name}.png"
        figure.tight_layout()
        figure.savefig(path)
        pyplot.close(figure)
        written.append(path)
    return written


def style(axes: Any, ylabel: str) -> None:
    """Log-log axes, labelled, with a legend."""
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("history length N, steps")
    axes.set_ylabel(ylabel)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize="small")
