"""Shard locks: saves/s of threads saving their own agents while each insert holds its
events table's lock a little longer, with S = 1 and S = 4 shards on PostgreSQL.

The test server runs with ``fsync=off``, so a commit costs next to nothing and Python on
two cores is the bottleneck either way. On a real disk, the library's insert holds its
table lock until its commit's WAL flush is done: every writer waits for every other
writer's flush. This stands in for that flush with ``pg_sleep(HOLD)`` inside each insert
transaction (after the insert, under the lock), so the ceiling is 1 / HOLD saves/s per
events table, and shards raise it S-fold. Run::

    AGENTLOG_TEST_POSTGRES_URL=postgresql+psycopg://... .venv/bin/python bench/bench_shard_locks.py

(without the variable it starts a throwaway server, as the tests do). Prints one line per
run; nothing is written to docs/.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder

from agentlog.adapters.storage import open_log
from agentlog.domain.shards import shard_of

sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))
from pg_server import fresh_database, postgres_url

HOLD, THREADS, SAVES = 0.01, 8, 40
_insert = PostgresApplicationRecorder._insert_stored_events


def _held(
    self: PostgresApplicationRecorder, curs: Any, events: Sequence[StoredEvent], **kw: Any
) -> None:
    _insert(self, curs, events, **kw)
    curs.connection.cursor().execute("SELECT pg_sleep(%s)", (HOLD,))


def saves_per_second(base: str, shards: int) -> float:
    """Saves/s of THREADS threads, each sending SAVES messages to its own agent, the
    agents spread evenly over the shards."""
    log = open_log(fresh_database(base), shards=shards, snapshot_interval=0)
    agents: list[UUID] = []
    while len(agents) < THREADS:
        agent = log.create_agent("a", goal="g")
        same = [a for a in agents if shard_of(a, shards) == shard_of(agent, shards)]
        if len(same) < THREADS // shards:
            agents.append(agent)

    def send(agent: UUID) -> None:
        for _ in range(SAVES):
            log.send(agent, "hello")

    threads = [threading.Thread(target=send, args=(agent,)) for agent in agents]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    rate = THREADS * SAVES / (time.perf_counter() - started)
    log.close()
    return rate


def main() -> None:
    """Two rounds of S = 1 and S = 4."""
    base = postgres_url()
    if base is None:
        raise SystemExit("no PostgreSQL server")
    PostgresApplicationRecorder._insert_stored_events = _held  # type: ignore[method-assign,assignment]
    for _ in range(2):
        for shards in (1, 4):
            rate = saves_per_second(base, shards)
            print(f"S={shards}: {rate:.0f} saves/s ({THREADS} threads, lock held {HOLD}s)")


if __name__ == "__main__":
    main()
