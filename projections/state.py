"""The state view: one row per agent, the distilled current state at a glance."""

from __future__ import annotations

from typing import Any, ClassVar

from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, Text

from agentlog.domain import Agent
from agentlog.projections.agent_rows import AgentRowsView, state_columns


class AgentStates(AgentRowsView):
    """Name, phase, goal, step count, pending approvals, last error, tokens, version."""

    name: ClassVar[str] = "state"
    version: ClassVar[int] = 1

    def define(self, metadata: MetaData) -> None:
        """One table, indexed by phase for ``agentlog ls --status``."""
        self.rows = Table(
            self.table_name(),
            metadata,
            *state_columns(),
            Column("name", String(200), nullable=False),
            Column("status", String(20), nullable=False, index=True),
            Column("goal", Text, nullable=True),
            Column("steps", Integer, nullable=False),
            Column("pending_approvals", Text, nullable=False),
            Column("last_error", Text, nullable=True),
            Column("result", Text, nullable=True),
            Column("tokens", Integer, nullable=False),
            Column("model", String(200), nullable=False),
            Column("created_at", DateTime(timezone=True), nullable=False),
            Column("last_event_at", DateTime(timezone=True), nullable=False),
        )

    def columns_for(self, agent: Agent) -> dict[str, Any]:
        """What a person or a fresh worker reads at a glance."""
        return {
            "name": agent.name,
            "status": agent.phase.value,
            "goal": agent.goal,
            "steps": agent.steps,
            "pending_approvals": ",".join(agent.awaiting_permission),
            "last_error": agent.last_error,
            "result": agent.result,
            "tokens": agent.tokens.total,
            "model": agent.config.model,
            "created_at": agent.created_on,
            "last_event_at": agent.modified_on,
        }
