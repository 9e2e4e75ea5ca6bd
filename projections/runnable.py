"""The runnable view: the agents a worker may advance now."""

from __future__ import annotations

from typing import Any, ClassVar

from sqlalchemy import BigInteger, Boolean, Column, DateTime, MetaData, Table

from agentlog.domain import Agent, Aggregate, GraphThread
from agentlog.projections.agent_rows import AgentRowsView, state_columns


class RunnableAgents(AgentRowsView):
    """A row per agent, flagged runnable when a worker can do something for it now:
    ask the model, run, ask about or deny a call, recover a dead call, or reconcile an
    unknown outcome. Agents that only wait for a person are not runnable.

    Every agent keeps a row (its replayed state is what the next event applies to);
    LangGraph threads have none: LangGraph runs them, never agentlog's workers.
    """

    name: ClassVar[str] = "runnable"
    version: ClassVar[int] = 4  # 2: 64-bit numbers; 3: unknown outcomes a tool can settle
    # 4: the state sealed with the cipher key

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

    @classmethod
    def handles(cls, event_class: type[Any]) -> bool:
        """Not a LangGraph thread's events (they are not even decoded for this view)."""
        return not issubclass(event_class, GraphThread.Event)

    def keeps(self, aggregate: Aggregate) -> bool:
        """Agents only."""
        return isinstance(aggregate, Agent)

    own_columns = ("runnable", "open_calls", "since")

    def columns_for(self, agent: Agent) -> dict[str, Any]:
        """Runnable: the agent has work a worker can do (``Agent.has_work``)."""
        return dict(zip(self.own_columns, self.own_row(agent), strict=True))

    def own_row(self, agent: Agent) -> tuple[Any, ...]:
        """An agent's own columns, in the order of ``own_columns``."""
        return (agent.has_work, len(agent.calls), agent.modified_on)
