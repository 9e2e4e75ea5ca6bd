"""Read the views: what ``agentlog ls``, ``show`` and ``audit`` ask."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import Connection, RowMapping, Table, select

from agentlog.domain import Agent, Aggregate, UnknownAgentError
from agentlog.projections.agent_rows import agent_of
from agentlog.projections.seal import PLAIN, Seal
from agentlog.projections.state import DELETED, AgentStates


@dataclass(frozen=True)
class AuditFilter:
    """Which tool calls to return; None means any. Times bound when a call was made."""

    agent: str | None = None
    tool: str | None = None
    actor: str | None = None
    """Who decided: a person's name, or ``policy``."""
    decision: str | None = None
    effect: str | None = None
    outcome: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def states(
    conn: Connection, table: Table, status: str | None = None, seal: Seal = PLAIN
) -> list[dict[str, Any]]:
    """State rows, oldest agent first, optionally of one status (text opened); deleted
    LangGraph threads only if that status is asked for."""
    query = select(*[c for c in table.c if c.name != "state"]).order_by(table.c.created_at)
    query = query.where(
        table.c.status == status if status is not None else table.c.status != DELETED
    )
    return [_opened(row._mapping, AgentStates.sealed, seal) for row in conn.execute(query)]


def stored_states(
    conn: Connection, table: Table, prefix: str, limit: int
) -> list[tuple[str, str | None, str | None]]:
    """(agent id, name, state) of the agents whose ids start with ``prefix``, in id
    order, at most ``limit``; name and state as stored (sealed, if the store is)."""
    query = select(table.c.agent_id, table.c.name, table.c.state)
    query = query.where(table.c.agent_id.startswith(prefix)).order_by(table.c.agent_id)
    return [(r.agent_id, r.name, r.state) for r in conn.execute(query.limit(limit))]


def aggregate_from_state(
    conn: Connection, table: Table, agent_id: UUID, seal: Seal = PLAIN
) -> Aggregate:
    """The agent (or LangGraph thread) as the state view last saw it (rebuilt from the
    row's state)."""
    query = select(table.c.agent_id, table.c.topic, table.c.version, table.c.state)
    row = conn.execute(query.where(table.c.agent_id == str(agent_id))).first()
    if row is None:
        raise UnknownAgentError(agent_id)
    return agent_of(row, seal)


def agent_from_state(conn: Connection, table: Table, agent_id: UUID, seal: Seal = PLAIN) -> Agent:
    """The agent as the state view last saw it (a LangGraph thread's row is no agent:
    :func:`aggregate_from_state` reads any row)."""
    found = aggregate_from_state(conn, table, agent_id, seal)
    if not isinstance(found, Agent):
        raise UnknownAgentError(agent_id)
    return found


def audit(
    conn: Connection, table: Table, where: AuditFilter, seal: Seal = PLAIN
) -> list[dict[str, Any]]:
    """Tool calls in the order they were made, filtered (arguments and details opened)."""
    c = table.c
    query = select(table).order_by(c.position)
    for column, value in (
        (c.agent_id, where.agent),
        (c.tool, where.tool),
        (c.decided_by, where.actor),
        (c.decision, where.decision),
        (c.effect, where.effect),
        (c.outcome, where.outcome),
    ):
        if value is not None:
            query = query.where(column == value)
    if where.since is not None:
        query = query.where(c.called_at >= where.since)
    if where.until is not None:
        query = query.where(c.called_at < where.until)
    return [_opened(row._mapping, ("args", "detail"), seal) for row in conn.execute(query)]


def _opened(row: RowMapping, sealed: Sequence[str], seal: Seal) -> dict[str, Any]:
    """A row as a dict, its sealed columns opened."""
    found = dict(row)
    if seal.on:
        for name in sealed:
            found[name] = seal.open(found[name])
    return found


def transcript(
    conn: Connection, table: Table, agent_id: UUID, seal: Seal = PLAIN
) -> list[dict[str, Any]]:
    """The model's messages for one agent, in order (their text opened)."""
    query = select(table).where(table.c.agent_id == str(agent_id)).order_by(table.c.seq)
    sealed = ("content", "tool_calls")
    return [_opened(row._mapping, sealed, seal) for row in conn.execute(query)]


def runnable(conn: Connection, table: Table, limit: int = 100) -> list[UUID]:
    """Agents a worker may advance now, those waiting longest first."""
    query = select(table.c.agent_id).where(table.c.runnable.is_(True)).order_by(table.c.since)
    return [UUID(row.agent_id) for row in conn.execute(query.limit(limit))]
