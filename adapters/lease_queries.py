"""Reading leases: which runnable agents are free to take, and who holds what."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from uuid import UUID

from sqlalchemy import Connection, Engine, Table, case, select

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
    """Up to ``limit`` runnable agents, those without a live lease first, oldest first."""
    sql, params = _query(runnable, engine, limit).sql(conn.dialect)
    found = Candidates([], [])
    for agent, version, holder, taken_at, live in conn.exec_driver_sql(sql, params):
        busy = live and holder != owner and not owner_gone(holder, taken_at, gone)
        agent_id = UUID(agent)
        (found.held if busy else found.free).append(agent_id)
        found.versions[agent_id] = version
    return found


@functools.lru_cache(maxsize=64)
def _query(runnable: Table, engine: Engine, limit: int) -> Prepared:
    """The candidates query on one build's table, compiled once (a worker runs it at
    every pass; SQLAlchemy would build its cache key each time)."""
    live = LEASES.c.expires_at >= now(engine)
    leased = case((live, 1), else_=0)
    return Prepared(
        select(
            runnable.c.agent_id,
            runnable.c.version,
            LEASES.c.owner,
            LEASES.c.taken_at,
            live.label("live"),
        )
        .outerjoin(LEASES, LEASES.c.agent_id == runnable.c.agent_id)
        .where(runnable.c.runnable.is_(True))
        .order_by(leased, runnable.c.since)
        .limit(limit)
    )


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
