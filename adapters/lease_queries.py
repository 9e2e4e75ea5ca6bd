"""Reading leases: which runnable agents are free to take, and who holds what."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from uuid import UUID

from sqlalchemy import (
    Connection,
    Double,
    Engine,
    Integer,
    String,
    Table,
    bindparam,
    cast,
    exists,
    null,
    select,
)

from agentlog.adapters.lease_writes import Prepared
from agentlog.adapters.leases import LEASES, now, owner_gone
from agentlog.domain.claims import WorkerGone


@dataclass(frozen=True)
class Candidates:
    """Runnable agents, split by whether this worker may try to take them."""

    free: list[UUID]
    """Unleased, expired, this process's own, or held by a process known to be gone."""
    held: list[UUID]
    """Held by a live lease of another worker: busy elsewhere."""
    versions: dict[UUID, int] = field(default_factory=dict)
    """Each agent's version as the runnable view has it."""


@dataclass(frozen=True)
class Holding:
    """One lease, as an operator sees it."""

    agent_id: UUID
    holder: str  # host:pid#n/slot
    taken_at: float  # seconds since the epoch, database clock
    expires_in: float  # seconds from the database's now; negative: expired
    gone: bool  # its process ran on this host and is gone


def candidates(
    conn: Connection, runnable: Table, engine: Engine, *, owner: str, limit: int, gone: WorkerGone
) -> Candidates:
    """Up to ``limit`` runnable agents, those without a live lease of another worker
    first, oldest first (those with one only if there are fewer than ``limit`` without)."""
    query = _queries(runnable, engine, owner)
    sql, params = query.free.sql(conn.dialect, limit=limit)
    rows = list(conn.exec_driver_sql(sql, params))
    if len(rows) < limit:
        sql, params = query.held.sql(conn.dialect, limit=limit - len(rows))
        rows += conn.exec_driver_sql(sql, params)
    found = Candidates([], [])
    for agent, version, holder, taken_at in rows:
        busy = holder is not None and not owner_gone(holder, taken_at, gone)
        agent_id = UUID(agent)
        (found.held if busy else found.free).append(agent_id)
        found.versions[agent_id] = version
    return found


@dataclass(frozen=True)
class _Queries:
    free: Prepared
    held: Prepared


@functools.lru_cache(maxsize=64)
def _queries(runnable: Table, engine: Engine, owner: str) -> _Queries:
    """The candidates queries on one build's table, compiled once (a worker runs them at
    every pass; SQLAlchemy would build their cache keys each time), oldest first: the
    runnable agents no other worker holds a live lease on, along the index on ``since``
    and stopping at the limit (not a sort of every runnable agent, which a store of a
    million agents would pay at every pass); and those another holds, from the leases."""
    live_elsewhere = (LEASES.c.expires_at >= now(engine)) & (LEASES.c.owner != owner)
    held_elsewhere = exists().where(LEASES.c.agent_id == runnable.c.agent_id, live_elsewhere)
    limit = bindparam("limit", type_=Integer)
    free = (
        select(
            runnable.c.agent_id,
            runnable.c.version,
            cast(null(), String).label("owner"),
            cast(null(), Double).label("taken_at"),
        )
        .where(runnable.c.runnable.is_(True), ~held_elsewhere)
        .order_by(runnable.c.since)
        .limit(limit)
    )
    held = (
        select(runnable.c.agent_id, runnable.c.version, LEASES.c.owner, LEASES.c.taken_at)
        .join_from(LEASES, runnable, LEASES.c.agent_id == runnable.c.agent_id)
        .where(runnable.c.runnable.is_(True), live_elsewhere)
        .order_by(runnable.c.since)
        .limit(limit)
    )
    return _Queries(Prepared(free), Prepared(held))


def holdings(conn: Connection, engine: Engine, gone: WorkerGone) -> list[Holding]:
    """Every lease in the store, soonest to expire first."""
    query = select(LEASES, (LEASES.c.expires_at - now(engine)).label("left")).order_by(
        LEASES.c.expires_at
    )
    return [
        Holding(
            UUID(row.agent_id),
            f"{row.owner}/{row.slot}",
            row.taken_at,
            row.left,
            owner_gone(row.owner, row.taken_at, gone),
        )
        for row in conn.execute(query)
    ]


__all__ = ["Candidates", "Holding", "candidates", "holdings"]
