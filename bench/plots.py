"""PNG plots of the benchmarks' results: one line per system, log-log against N.

matplotlib comes from the ``bench`` extra; without it, no plots are drawn and the
report says so (``figures``)."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

NO_PLOTS = "No plots in this run (matplotlib not installed, or `--plots none`)."


class Point(Protocol):
    """What a plot needs of every point: whose it is, and at which N."""

    key: str
    steps: int


P = TypeVar("P", bound=Point)
Plot = tuple[str, str, Callable[[P], float]]  # file name (no .png), y label, the value


def pyplot() -> Any | None:
    """matplotlib's pyplot drawing to files only, or None where it is not installed."""
    if importlib.util.find_spec("matplotlib") is None:
        return None
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as loaded

    return loaded


def save(loaded: Any, figure: Any, path: Path) -> Path:
    """Write ``figure`` to ``path`` and release it (``loaded``: what ``pyplot()`` gave)."""
    figure.tight_layout()
    figure.savefig(path)
    loaded.close(figure)
    return path


def draw(
    points: Sequence[P], folder: Path, labels: Mapping[str, str], plots: Sequence[Plot[P]]
) -> list[Path]:
    """One PNG per plot in ``folder``, a line per key of ``labels`` that has points;
    none without matplotlib."""
    loaded = pyplot()
    if loaded is None:
        return []
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, ylabel, value in plots:
        figure, axes = loaded.subplots(figsize=(8, 5), dpi=110)
        for key, label in labels.items():
            mine = [p for p in points if p.key == key]
            if mine:
                axes.plot(
                    [p.steps for p in mine], [value(p) for p in mine], marker="o", label=label
                )
        style(axes, ylabel)
        written.append(save(loaded, figure, folder / f"{name}.png"))
    return written


def style(axes: Any, ylabel: str) -> None:
    """Log-log axes against the history's length, labelled, with a legend."""
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("history length N, steps")
    axes.set_ylabel(ylabel)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize="small")


def figures(plots: Sequence[Path], out: Path) -> str:
    """The report's markdown for ``plots``, linked relative to the report ``out``."""
    links = [f"![{plot.stem}]({os.path.relpath(plot, out.parent)})" for plot in plots]
    return "\n\n".join(links) or NO_PLOTS
