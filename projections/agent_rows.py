"""Views whose rows are derived from each agent's state, replayed by the domain itself.

Each row keeps the agent's bounded snapshot state, so applying an event is exactly what
the aggregate does on replay (``event.mutate``): the view can never disagree with the
domain's rules. Within a batch, each touched agent is read once and written once.
"""

from __future__ import annotations

import json
from abc import abstractmethod
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from eventsourcing.utils import get_topic, resolve_topic
from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    String,
    Table,
    Text,
    insert,
    select,
    update,
)

from agentlog.domain import Agent, Aggregate
from agentlog.projections.view import Positioned, View


def state_columns() -> list[Column[Any]]:
    """The columns every agent-row table starts with."""
    return [
        Column("agent_id", String(36), primary_key=True),
        Column("topic", Text, nullable=False),
        Column("version", BigInteger, nullable=False),
        Column("state", Text, nullable=False),
    ]


class AgentRowsView(View):
    """A view with one row per agent, computed from the agent's replayed state."""

    rows: Table

    @abstractmethod
    def columns_for(self, agent: Agent) -> dict[str, Any]:
        """The row's own columns for this agent's state."""

    def process(self, conn: Connection, events: Sequence[Positioned]) -> None:
        """Replay the batch onto the touched agents, then write each row once."""
        agents: dict[UUID, Agent | None] = {}
        for _, event in events:
            agent_id = event.originator_id
            if agent_id not in agents:
                agents[agent_id] = self._load(conn, agent_id)
            agent = agents[agent_id]
            if agent is None and not isinstance(event, Aggregate.Created):
                continue  # not an agent (another aggregate in the same log)
            agents[agent_id] = self._apply(agent, event)
        for agent in agents.values():
            if agent is not None:
                self._store(conn, agent)

    @staticmethod
    def _apply(agent: Agent | None, event: Aggregate.Event) -> Agent | None:
        result = event.mutate(agent)
        return result if isinstance(result, Agent) else None

    def _load(self, conn: Connection, agent_id: UUID) -> Agent | None:
        query = select(self.rows.c.topic, self.rows.c.version, self.rows.c.state)
        row = conn.execute(query.where(self.rows.c.agent_id == str(agent_id))).first()
        if row is None:
            return None
        agent_class: type[Agent] = resolve_topic(row.topic)
        return agent_class.from_snapshot_state(agent_id, row.version, json.loads(row.state))

    def _store(self, conn: Connection, agent: Agent) -> None:
        key = str(agent.id)
        exists = conn.execute(
            select(self.rows.c.version).where(self.rows.c.agent_id == key)
        ).first()
        values = {
            "topic": get_topic(type(agent)),
            "version": agent.version,
            "state": json.dumps(agent.snapshot_state(), separators=(",", ":")),
            **self.columns_for(agent),
        }
        if exists is None:
            conn.execute(insert(self.rows).values(agent_id=key, **values))
        else:
            conn.execute(update(self.rows).where(self.rows.c.agent_id == key).values(**values))
