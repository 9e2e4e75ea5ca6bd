"""What every benchmark here shares: timing, machine info, markdown, and its own section.

Each script in ``bench/`` writes one section of ``docs/benchmarks.md``, between its own
marker comments, and leaves the rest of the file alone. Scripts import this module as
``common``: run as ``python bench/NAME.py``, their folder is on ``sys.path``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

FLAT_RATIO = 2.0  # value at the largest N over the lowest: below this reads as flat
ROOT = Path(__file__).resolve().parent.parent  # the repository
DOCS = ROOT / "docs"
DEFAULT_OUT = DOCS / "benchmarks.md"
CORE_PACKAGES = ("eventsourcing", "sqlalchemy", "pydantic")

# eventsourcing.sqlite's events table (SQLiteApplicationRecorder), for raw baselines.
RAW_TABLE = (
    "CREATE TABLE IF NOT EXISTS stored_events (originator_id TEXT, "
    "originator_version INTEGER, topic TEXT, state BLOB, "
    "PRIMARY KEY (originator_id, originator_version))"
)
RAW_INSERT = "INSERT INTO stored_events VALUES (?,?,?,?)"

# The refactoring agent whose histories bench_storage.py and bench_rebuild.py write.
MODEL = "claude-sonnet-bench"
GOAL = "Find every module that still imports the old config loader and migrate it."
MODEL_TEXT = (
    "I'll look at the next module to see whether it still uses the old config loader. "
    "If it does, I will rewrite the import and the two call sites, then run its tests. "
) * 2
TOOL_OUTPUT = (
    "import os\nfrom app.legacy import load_config  # old loader\n\n"
    "def settings():\n    cfg = load_config(os.environ['APP_ENV'])\n    return cfg['db']\n"
) * 4


# --- timing -------------------------------------------------------------------------


def log(message: str) -> None:
    """Progress, on stderr."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def timed_us(action: Callable[[], object]) -> float:
    """Microseconds one call of ``action`` takes."""
    start = time.perf_counter_ns()
    action()
    return (time.perf_counter_ns() - start) / 1_000


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), nearest rank; NaN of nothing."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered)) - 1))
    return ordered[rank]


def median(values: Iterable[float]) -> float:
    """The median, or NaN of nothing."""
    values = list(values)
    return statistics.median(values) if values else float("nan")


# --- SQLite -------------------------------------------------------------------------


def raw_connect(path: Path) -> sqlite3.Connection:
    """A connection set up as eventsourcing.sqlite sets up its own (autocommit, WAL)."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL;")
    conn.row_factory = sqlite3.Row
    return conn


def db_bytes(path: Path) -> int:
    """Size of a SQLite database with its WAL files (0 once deleted)."""
    names = (path, Path(f"{path}-wal"), Path(f"{path}-shm"))
    return sum(p.stat().st_size for p in names if p.exists())


def settled_bytes(path: Path) -> int:
    """The file's size once its WAL is checkpointed into it (so the WAL counts once)."""
    conn = sqlite3.connect(path, timeout=30)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return db_bytes(path)


# --- resuming in a fresh process ----------------------------------------------------


RESUME_CHILD = "--resume-child"  # first argument of a script run as a resume child


def resume_in_child(script: Path, key: str, *args: str) -> tuple[float, int]:
    """Run ``script`` as a resume child of system ``key`` in a fresh Python process (it
    calls ``report_resume``): (ms it took to open and load, items it loaded)."""
    command = [sys.executable, str(script), RESUME_CHILD, key, *args]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"resuming {key} failed:\n{done.stderr[-2000:]}")
    found = json.loads(done.stdout.strip().splitlines()[-1])
    return float(found["ms"]), int(found["items"])


def report_resume(load: Callable[[], int]) -> int:
    """In the resume child (imports done, untimed): time ``load`` (open and load, giving
    the items loaded) and print both as JSON for ``resume_in_child``; exit status 0."""
    started = time.perf_counter()
    items = load()
    print(json.dumps({"ms": (time.perf_counter() - started) * 1e3, "items": items}))
    return 0


# --- markdown -----------------------------------------------------------------------


def fmt(value: float, digits: int = 0) -> str:
    """A number with thousands separators ('-' for NaN)."""
    return "-" if value != value else f"{value:,.{digits}f}"


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A GitHub markdown table, numbers right-aligned."""
    align = ["---"] + ["---:"] * (len(header) - 1)
    lines = [list(header), align, *(list(row) for row in rows)]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)


def flat_verdict(values: Sequence[float], what: str = "length") -> str:
    """Whether values measured at growing N stay flat (largest-N value over the lowest)."""
    if len(values) < 2:
        return f"only one {what} measured"
    growth = values[-1] / min(values)
    if growth < FLAT_RATIO:
        return f"flat (value at the largest N / lowest value: {growth:.2f}x)"
    return f"**NOT flat**: the value at the largest N is {growth:.1f}x the lowest"


# --- command line -------------------------------------------------------------------


def argument_parser(doc: str | None, out: Path = DEFAULT_OUT) -> argparse.ArgumentParser:
    """A benchmark's parser, described by the first paragraph of its docstring, with the
    ``--out`` every benchmark takes: the page whose section it replaces."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0] if doc else None)
    shown = out.relative_to(ROOT) if out.is_relative_to(ROOT) else out
    described = f"markdown page whose section is replaced (default: {shown})"
    parser.add_argument("--out", type=Path, default=out, help=described)
    return parser


def whole_numbers(parser: argparse.ArgumentParser, option: str, text: str) -> list[int]:
    """``option``'s comma-separated positive whole numbers, unique, in the order given
    (a usage error if there are none, or any other)."""
    try:
        values = list(dict.fromkeys(int(part) for part in text.split(",") if part.strip()))
    except ValueError:
        parser.error(f"{option}: give whole numbers separated by commas, e.g. 100,1000")
    if not values or min(values) < 1:
        parser.error(f"{option}: every value must be at least 1")
    return values


def names(
    parser: argparse.ArgumentParser, option: str, text: str, known: Sequence[str]
) -> list[str]:
    """``option``'s comma-separated names, each one of ``known``, unique, in the order
    given (a usage error if there are none, or any other)."""
    chosen = list(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    if unknown := set(chosen) - set(known):
        parser.error(f"{option}: unknown {', '.join(sorted(unknown))}; use {', '.join(known)}")
    if not chosen:
        parser.error(f"{option}: name at least one of {', '.join(known)}")
    return chosen


# --- command line of a benchmark that sweeps N --------------------------------------


@dataclass(frozen=True)
class Sweep:
    """What every benchmark run over growing N with a fresh-process resume is told."""

    steps: list[int]  # the Ns, sorted
    systems: list[str]  # in the order of the known ones
    resumes: int
    cap_s: float
    out: Path
    plots: Path | None


def sweep_parser(
    doc: str | None,
    steps: Sequence[int],
    what: str,
    known: Sequence[str],
    *,
    resumes: int,
    cap_s: float,
) -> argparse.ArgumentParser:
    """A parser with the options every sweep takes (``--steps``, ``--{what}``,
    ``--resumes``, ``--cap``, ``--out``, ``--plots``); the script adds its own."""
    parser = argument_parser(doc)
    add = parser.add_argument
    add("--steps", default=",".join(map(str, steps)), help="history lengths (marks) in steps")
    add(f"--{what}", default=",".join(known), help=f"{what}, comma-separated (default: all)")
    add("--resumes", type=int, default=resumes, help="fresh processes per point")
    add("--cap", type=float, default=cap_s, help="time cap in seconds (see Method)")
    add("--plots", default=str(DOCS / "img"), help="folder for the PNG plots, or 'none'")
    return parser


def parse_sweep(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None, what: str, known: Sequence[str]
) -> tuple[argparse.Namespace, Sweep]:
    """The parsed command line, and its shared part validated (a usage error if not)."""
    args = parser.parse_args(argv)
    steps = sorted(whole_numbers(parser, "--steps", args.steps))
    chosen = names(parser, f"--{what}", getattr(args, what), known)
    if args.resumes < 1:
        parser.error("--resumes must be at least 1")
    plots = None if args.plots == "none" else Path(args.plots)
    order = [k for k in known if k in chosen]
    return args, Sweep(steps, order, args.resumes, args.cap, args.out, plots)


def plots_option(plots: Path | None) -> str:
    """``--plots`` as the command that reproduces a run gives it."""
    return f"--plots {'none' if plots is None else 'docs/img'}"


# --- where it ran -------------------------------------------------------------------


def machine_info(workdir: Path, load_start: float, packages: Sequence[str] = CORE_PACKAGES) -> str:
    """Where the numbers were measured, as markdown list items."""
    versions = "; ".join(f"{name}: {package_version(name)}" for name in packages)
    return "\n".join(
        [
            f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
            f"- cpus (nproc): {os.cpu_count()}; cpu: {cpu_model()}",
            f"- os: {platform.platform()}",
            f"- python: {platform.python_version()} ({platform.python_implementation()})",
            f"- sqlite: {sqlite3.sqlite_version}",
            f"- {versions}",
            f"- database files in: {workdir.parent} (filesystem: {filesystem(workdir)})",
            f"- load average (1 min) at start and end of the run: {load_start:.2f}, "
            f"{os.getloadavg()[0]:.2f} (other work on the machine shows here)",
        ]
    )


def git_version(root: Path = ROOT) -> str:
    """The commit checked out at ``root``, and whether agentlog's source differs from it."""

    def git(*args: str) -> str:
        command = ["git", "-C", str(root), *args]
        return subprocess.run(command, capture_output=True, text=True, check=True).stdout

    try:
        commit = git("rev-parse", "--short", "HEAD").strip()
        changed = git("status", "--porcelain", "--", "adapters", "domain", "projections")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{commit} + uncommitted changes" if changed.strip() else commit


def package_version(name: str) -> str:
    """An installed distribution's version, or 'not installed'."""
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def cpu_model() -> str:
    """The CPU's model name (Linux), else the platform's processor string."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def filesystem(path: Path) -> str:
    """The filesystem type holding ``path`` (Linux /proc/mounts), else 'unknown'."""
    try:
        mounts = [line.split() for line in Path("/proc/mounts").read_text().splitlines()]
    except OSError:
        return "unknown"
    resolved = str(path.resolve())
    best = ("", "unknown")
    for fields in mounts:
        point, kind = fields[1], fields[2]
        if resolved.startswith(point.rstrip("/") + "/") and len(point) > len(best[0]):
            best = (point, kind)
    return best[1]


# --- one's own section of docs/benchmarks.md ------------------------------------------


def markers(name: str) -> tuple[str, str]:
    """The comments around benchmark ``name``'s section."""
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def splice(document: str, name: str, section: str, *, first: bool = False) -> str:
    """``document`` with ``name``'s section replaced; if missing, appended (or put
    before every other benchmark's section with ``first``)."""
    start_mark, end_mark = markers(name)
    block = f"{start_mark}\n{section.strip()}\n{end_mark}"
    start, end = document.find(start_mark), document.find(end_mark)
    if start != -1 and end > start:
        return document[:start] + block + document[end + len(end_mark) :]
    if first:
        other = document.find("<!-- bench_")
        rest = document[other:] if other != -1 else ""
        return block + ("\n\n" + rest if rest else "\n")
    return (document.rstrip("\n") + "\n\n" if document.strip() else "") + block + "\n"


def write_section(out: Path, name: str, section: str, *, first: bool = False) -> None:
    """Put ``name``'s section into ``out``, leaving everything outside its markers alone.

    The file is read right before it is written: another benchmark may have changed it.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    document = out.read_text(encoding="utf-8") if out.exists() else ""
    out.write_text(splice(document, name, section, first=first), encoding="utf-8")


def preamble(script: str, title: str, question: str, command: str, wall_s: float) -> str:
    """The opening of a section: what it answers, how to reproduce it, how long it took."""
    return f"""\
# {title}

Generated by `bench/{script}` from measurements taken in one run; do not edit by
hand, run it again. {question}

## Reproduce

```
{command}
```

Wall time of this run: {wall_s:,.0f} s."""
