"""Read the views: what ``agentlog ls``, ``show`` and ``audit`` ask."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.utils import TopicError, resolve_topic
from sqlalchemy import Connection, Table, select

from agentlog.domain import Agent, UnknownAgentError, UnknownTopicError


@dataclass(frozen=True)
class AuditFilter:
    """Which audit rows to return; None means any."""

    agent: str | None = None
    tool: str | None = None
    actor: str | None = None
    decision: str | None = None
    since: datetime | None = None


def states(conn: Connection, table: Table, status: str | None = None) -> list[dict[str, Any]]:
    """State rows, oldest agent first, optionally of one status."""
    query = select(*[c for c in table.c if c.name != "state"]).order_by(table.c.created_at)
    if status is not None:
        query = query.where(table.c.status == status)
    return [dict(row._mapping) for row in conn.execute(query)]


def agent_from_state(conn: Connection, table: Table, agent_id: UUID) -> Agent:
    """The agent as the state view last saw it (rebuilt from the row's state)."""
    query = select(table.c.topic, table.c.version, table.c.state)
    row = conn.execute(query.where(table.c.agent_id == str(agent_id))).first()
    if row is None:
        raise UnknownAgentError(agent_id)
    try:
        agent_class: type[Agent] = resolve_topic(row.topic)
    except TopicError:  # the row was written with the user's module, read without it
        raise UnknownTopicError(agent_id, row.version, row.topic) from None
    return agent_class.from_snapshot_state(agent_id, row.version, json.loads(row.state))


def audit(conn: Connection, table: Table, where: AuditFilter) -> list[dict[str, Any]]:
    """Audit rows in log order, filtered."""
    query = select(table).order_by(table.c.position)
    for column, value in (
        (table.c.agent_id, where.agent),
        (table.c.tool, where.tool),
        (table.c.actor, where.actor),
        (table.c.decision, where.decision),
    ):
        if value is not None:
            query = query.where(column == value)
    if where.since is not None:
        query = query.where(table.c.time >= where.since)
    return [dict(row._mapping) for row in conn.execute(query)]


def transcript(conn: Connection, table: Table, agent_id: UUID) -> list[dict[str, Any]]:
    """The model's messages for one agent, in order."""
    query = select(table).where(table.c.agent_id == str(agent_id)).order_by(table.c.seq)
    return [dict(row._mapping) for row in conn.execute(query)]


def runnable(conn: Connection, table: Table, limit: int = 100) -> list[UUID]:
    """Agents a worker may advance now, those waiting longest first."""
    query = select(table.c.agent_id).where(table.c.runnable.is_(True)).order_by(table.c.since)
    return [UUID(row.agent_id) for row in conn.execute(query.limit(limit))]
