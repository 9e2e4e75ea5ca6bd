"""The state view: one row per agent, the distilled current state at a glance."""

from __future__ import annotations

from typing import Any, ClassVar

from sqlalchemy import BigInteger, Column, DateTime, MetaData, String, Table, Text

from agentlog.domain import Agent
from agentlog.projections.agent_rows import AgentRowsView, state_columns
from agentlog.projections.view import clean


class AgentStates(AgentRowsView):
    """Name, phase, goal, step count, pending approvals, last error, tokens, version."""

    name: ClassVar[str] = "state"
    version: ClassVar[int] = 4  # 2: unbounded text and 64-bit numbers; 3: agent state schema 3
    # 4: sensitive columns sealed with the cipher key
    sealed: ClassVar[tuple[str, ...]] = ("name", "goal", "last_error", "result")
    """Columns encrypted with a cipher key (besides ``state``)."""

    def define(self, metadata: MetaData) -> None:
        """One table, indexed by phase for ``agentlog ls --status``."""
        self.rows = Table(
            self.table_name(),
            metadata,
            *state_columns(),
            Column("name", Text, nullable=False),
            Column("status", String(20), nullable=False, index=True),
            Column("goal", Text, nullable=True),
            Column("steps", BigInteger, nullable=False),
            Column("pending_approvals", Text, nullable=False),
            Column("last_error", Text, nullable=True),
            Column("result", Text, nullable=True),
            Column("tokens", BigInteger, nullable=False),
            Column("model", Text, nullable=False),
            Column("created_at", DateTime(timezone=True), nullable=False),
            Column("last_event_at", DateTime(timezone=True), nullable=False),
        )

    def columns_for(self, agent: Agent) -> dict[str, Any]:
        """What a person or a fresh worker reads at a glance (the text sealed)."""
        close = self.seal.close
        return {
            "name": close(clean(agent.name)),
            "status": agent.phase.value,
            "goal": close(clean(agent.goal)),
            "steps": agent.steps,
            "pending_approvals": ",".join(agent.awaiting_permission),
            "last_error": close(clean(agent.last_error)),
            "result": close(clean(agent.result)),
            "tokens": agent.tokens.total,
            "model": clean(agent.config.model),
            "created_at": agent.created_on,
            "last_event_at": agent.modified_on,
        }
