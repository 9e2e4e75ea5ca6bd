"""Follow benchmark: the CPU an incremental catch-up of the views costs per event.

The shape of a view follower under load (``adapters/view_follower.py`` in a worker that
holds the views' lease, 4 workers x 32 on PostgreSQL): 1,000 agents, and every second a
catch-up of ~1,250 new events that touch ~600 of them, so each agent's rows are written
about once per event. Here, on SQLite and on a throwaway PostgreSQL server (fsync off:
the catch-up's CPU, not the disk, is measured):

* writes 1,000 agents and catches the views up once (their memory is then warm, as in
  a follower that has run for a while);
* then, each round, advances a window of agents (rotating over all of them) by one
  worker step each, saves them in groups of 32, and times ``Projections.catch_up()``:
  this process's CPU (``time.process_time``) and, on PostgreSQL, the server's
  (``/proc``), per event caught up.

It prints a table (median over the rounds, after warm-up rounds); ``--out`` writes it
as this benchmark's section of a markdown page::

    .venv/bin/python bench/bench_follow.py [--stores sqlite,postgres] [--agents 1000]
        [--touched 600] [--rounds 20] [--shards 1] [--out FILE]
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import os
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

from bench_rebuild import agent_life, new_agent
from common import fmt, git_version, log, markdown_table, write_section
from scale_server import Server, find_bindir

from agentlog.adapters.views import Store, open_store
from agentlog.domain.agent import Agent

SAVE_GROUP = 32  # agents saved together (a worker's group commit at K = 32)
STORES = ("sqlite", "postgres")


@dataclass(frozen=True)
class Options:
    """Parsed command line."""

    stores: list[str]
    agents: int
    touched: int
    steps: int
    rounds: int
    warmup: int
    shards: int
    out: Path | None
    profile: Path | None


@dataclass(frozen=True)
class Round:
    """One catch-up: events caught up, CPU seconds here and in the server, wall seconds."""

    events: int
    cpu_s: float
    server_s: float
    wall_s: float


@dataclass(frozen=True)
class Result:
    """A store's rounds, measured."""

    store: str
    rounds: list[Round]

    def per_event_us(self, field: str, low: bool = False) -> float:
        """Median (or lowest) over the rounds of a field per event, in microseconds."""
        values = [float(getattr(r, field)) / r.events * 1e6 for r in self.rounds]
        return min(values) if low else statistics.median(values)

    @property
    def events(self) -> float:
        """Median events per round."""
        return statistics.median(r.events for r in self.rounds)


class Workload:
    """1,000 agents working: each round, a window of them takes worker steps until
    each has ``steps`` new events (or one more)."""

    def __init__(self, store: Store, agents: int) -> None:
        self.store = store
        self.agents = [new_agent(i) for i in range(agents)]
        self.lives: dict[UUID, Iterator[None]] = {a.id: agent_life(a, None) for a in self.agents}
        self.next = 0
        self._save(self.agents)

    def round(self, touched: int, steps: int) -> int:
        """Advance the next ``touched`` agents; events saved."""
        count = len(self.agents)
        window = [self.agents[(self.next + i) % count] for i in range(min(touched, count))]
        self.next = (self.next + len(window)) % count
        before = sum(a.version for a in window)
        for agent in window:
            start = agent.version
            while agent.version - start < steps:
                next(self.lives[agent.id])
        added = sum(a.version for a in window) - before
        self._save(window)
        return added

    def _save(self, agents: list[Agent]) -> None:
        for start in range(0, len(agents), SAVE_GROUP):
            self.store.log.save(*agents[start : start + SAVE_GROUP])


class _NoProfile:
    def enable(self) -> None:
        return

    def disable(self) -> None:
        return


def measure(name: str, url: str, opts: Options, server: Server | None) -> Result:
    """Open the store, warm the views, then time the catch-up of each round."""
    store = open_store(url, embedded=False, catch_up=False, shards=opts.shards)
    try:
        work = Workload(store, opts.agents)
        store.views.catch_up()  # every agent's rows written, and kept in memory
        rounds: list[Round] = []
        profiler = cProfile.Profile(time.process_time) if opts.profile else _NoProfile()
        for index in range(opts.warmup + opts.rounds):
            events = work.round(opts.touched, opts.steps)
            gc.collect()
            server_start = server.cpu_s() if server else 0.0
            cpu_start, wall_start = time.process_time(), time.perf_counter()
            profiler.enable()
            store.views.catch_up()
            profiler.disable()
            cpu, wall = time.process_time() - cpu_start, time.perf_counter() - wall_start
            server_s = server.cpu_s() - server_start if server else 0.0
            if index >= opts.warmup:
                rounds.append(Round(events, cpu, server_s, wall))
        if isinstance(profiler, cProfile.Profile) and opts.profile is not None:
            path = opts.profile.with_suffix(f".{name}.txt")
            with path.open("w") as out:
                pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(60)
                pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(40)
            log(f"{name}: profile in {path}")
        log(
            f"{name}: {len(rounds)} rounds of ~{statistics.median(r.events for r in rounds)} events"
        )
        return Result(name, rounds)
    finally:
        store.close()


def run(opts: Options) -> list[Result]:
    """Each store asked for, measured in turn."""
    results = []
    with tempfile.TemporaryDirectory(prefix="agentlog-follow-") as tmp:
        for name in opts.stores:
            if name == "sqlite":
                results.append(measure(name, f"sqlite:///{tmp}/follow.db", opts, None))
                continue
            bindir = find_bindir()
            if bindir is None:
                log("postgres: no server binaries found, skipped")
                continue
            server = Server(bindir, max_connections=20)
            try:
                server.sql("ALTER SYSTEM SET fsync = off")
                server.run("pg_ctl", "reload", "-D", str(server.data))
                results.append(measure(name, server.create("follow"), opts, server))
            finally:
                server.stop()
    return results


def table(results: list[Result]) -> str:
    """The medians, per store."""
    rows = [
        [
            r.store,
            fmt(r.events),
            fmt(r.per_event_us("cpu_s"), 1),
            fmt(r.per_event_us("cpu_s", low=True), 1),
            fmt(r.per_event_us("server_s"), 1) if r.store != "sqlite" else "-",
            fmt(r.per_event_us("wall_s"), 1),
        ]
        for r in results
    ]
    header = [
        "store",
        "events / catch-up",
        "CPU us / event",
        "lowest",
        "server CPU us / event",
        "wall us / event",
    ]
    return markdown_table(header, rows)


def section(opts: Options, command: str, text: str) -> str:
    """This benchmark's part of the page."""
    load = os.getloadavg()[0]
    return f"""# Follow benchmark

Generated by `bench/bench_follow.py`; do not edit by hand, run it again. What does
keeping the views current cost per event, in the process that follows the log (a
worker holding the views' lease)? {opts.agents:,} agents; each round advances
{opts.touched:,} of them (a window rotating over all) until each has {opts.steps} new
events or one more, saves them in groups of {SAVE_GROUP}, and times one
`Projections.catch_up()` of all four views, whose memory is warm (as in a follower
that has run for a while). {opts.rounds} rounds after {opts.warmup} not timed; the
table shows the median over the rounds (and the lowest round) of this process's CPU
per event caught up, PostgreSQL's server CPU per event (a throwaway server, fsync off,
read from `/proc`), and wall time. Shards: {opts.shards}. Code: `{git_version()}`;
load average at the end of the run: {load:.1f} (2 cores, shared: compare runs made in
one sitting, alternated, not numbers from different days).

```
{command}
```

{text}
"""


def parse(argv: list[str]) -> Options:
    """The command line."""
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--stores", default=",".join(STORES), help="comma-separated (default: both)")
    p.add_argument("--agents", type=int, default=1_000, help="(default: %(default)s)")
    p.add_argument(
        "--touched", type=int, default=600, help="agents a round advances (default: %(default)s)"
    )
    p.add_argument(
        "--steps",
        type=int,
        default=2,
        help="new events each of them makes, at least (default: %(default)s)",
    )
    p.add_argument("--rounds", type=int, default=20, help="catch-ups timed (default: %(default)s)")
    p.add_argument(
        "--warmup", type=int, default=3, help="catch-ups not timed (default: %(default)s)"
    )
    p.add_argument("--shards", type=int, default=1, help="(default: %(default)s)")
    p.add_argument("--out", type=Path, default=None, help="markdown page whose section is replaced")
    p.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="cProfile the timed catch-ups into FILE.STORE.txt (slower)",
    )
    a = p.parse_args(argv)
    stores = [s for s in a.stores.split(",") if s]
    if not stores or any(s not in STORES for s in stores):
        p.error(f"--stores: choose from {', '.join(STORES)}")
    return Options(
        stores, a.agents, a.touched, a.steps, a.rounds, a.warmup, a.shards, a.out, a.profile
    )


def main(argv: list[str]) -> int:
    """Measure, print, and write the section if asked to."""
    opts = parse(argv)
    results = run(opts)
    text = table(results)
    print(text)
    if opts.out is not None:
        command = ".venv/bin/python bench/bench_follow.py " + " ".join(argv)
        write_section(opts.out, "bench_follow", section(opts, command, text))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
