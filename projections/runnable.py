"""The runnable view: the agents a worker may advance now."""

from __future__ import annotations

from typing import Any, ClassVar

from sqlalchemy import BigInteger, Boolean, Column, DateTime, MetaData, Table

from agentlog.domain import Agent, Phase
from agentlog.projections.agent_rows import AgentRowsView, state_columns


class RunnableAgents(AgentRowsView):
    """A row per agent, flagged runnable when its task runs and it waits for nobody.

    Every agent keeps a row (its replayed state is what the next event applies to).
    """

    name: ClassVar[str] = "runnable"
    version: ClassVar[int] = 2  # 2: 64-bit numbers

    def define(self, metadata: MetaData) -> None:
        """One table; workers take the agents idle longest first."""
        self.rows = Table(
            self.table_name(),
            metadata,
            *state_columns(),
            Column("runnable", Boolean, nullable=False, index=True),
            Column("open_calls", BigInteger, nullable=False),
            Column("since", DateTime(timezone=True), nullable=False, index=True),
        )

    def columns_for(self, agent: Agent) -> dict[str, Any]:
        """Only running agents are runnable; waiting, blocked and finished ones are not."""
        return {
            "runnable": agent.phase is Phase.RUNNING,
            "open_calls": len(agent.calls),
            "since": agent.modified_on,
        }
