"""PNG plots of bench_langgraph.py's results (log-log): time in the saver per step,
bytes per step and resume, against the history's length.

matplotlib comes from the ``bench`` extra; without it, no plots are drawn."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Protocol

from common import median
from peer_plots import style


class Measured(Protocol):
    """What a plot reads of one saver at one mark."""

    key: str
    steps: int
    saver_ms: list[float]
    bytes_per_step: float
    resume_ms: list[float]


PLOTS: tuple[tuple[str, str, Callable[[Measured], float]], ...] = (
    ("langgraph-step", "time in the saver per step (median), ms", lambda p: median(p.saver_ms)),
    ("langgraph-bytes", "bytes on disk per step", lambda p: p.bytes_per_step),
    ("langgraph-resume", "resume (open + latest checkpoint), ms", lambda p: median(p.resume_ms)),
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
            mine = [p for p in points if p.key == key and p.saver_ms]
            if mine:
                axes.plot(
                    [p.steps for p in mine], [value(p) for p in mine], marker="o", label=label
                )
        style(axes, ylabel)
        path = folder / f"{name}.png"
        figure.tight_layout()
        figure.savefig(path)
        pyplot.close(figure)
        written.append(path)
    return written
