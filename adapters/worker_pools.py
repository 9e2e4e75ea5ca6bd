"""Connection pools that fit a worker's threads.

A worker with ``concurrency`` K runs K turn threads that each read (an agent's new
events) and save (through group commit, one leader at a time), plus the lease keeper
and the loop that catches the views up. eventsourcing's pools allow 5 connections,
10 more on demand, by default: with more threads than that, threads wait for a
connection (on SQLite, a thread waiting to write also holds up readers behind it, and
after ``pool_timeout`` seconds the wait fails). :func:`fit_pools` lets the event
store's pool lend up to K + 2 connections; it keeps only its usual 5 open when idle
(PostgreSQL's ``min_size``), so many workers on one PostgreSQL open connections when
they work, not for nothing. docs/runtime.md counts them per worker.
"""

from __future__ import annotations

from typing import Any

from eventsourcing.persistence import ConnectionPool, Recorder

from agentlog.adapters.group_commit import unwrapped

EXTRA = 2
"""Connections beyond one a turn thread: the lease keeper, the loop's reads."""


def pool_of(recorder: Recorder) -> Any | None:
    """The event store's connection pool (eventsourcing's own for SQLite, psycopg's for
    PostgreSQL), or None for stores without one (memory, the SQLAlchemy engine)."""
    inner = unwrapped(recorder)
    datastore = getattr(inner, "datastore", None)
    shards = getattr(inner, "shards", None)
    if datastore is None and shards:  # sharded PostgreSQL: one datastore for all shards
        datastore = getattr(shards[0], "datastore", None)
    return getattr(datastore, "pool", None)


def fit_pools(recorder: Recorder, threads: int) -> int | None:
    """Let the store's pool lend at least ``threads + EXTRA`` connections at once (never
    fewer than it did); the most it lends now, or None if the store has no pool."""
    pool, most = pool_of(recorder), threads + EXTRA
    if isinstance(pool, ConnectionPool):  # eventsourcing's (SQLite): sizes read live
        pool.max_overflow = max(pool.max_overflow, most - pool.pool_size)
        return int(pool.pool_size + pool.max_overflow)
    if pool is not None and hasattr(pool, "resize"):  # psycopg_pool.ConnectionPool
        if pool.max_size < most:
            pool.resize(pool.min_size, most)
        return int(pool.max_size)
    return None


__all__ = ["EXTRA", "fit_pools", "pool_of"]
