"""The state view: one row per agent, the distilled current state at a glance.

A LangGraph thread has a row too (name: its thread id, model ``langgraph``, steps: its
live checkpoints), ``idle`` while it has checkpoints (LangGraph runs it, not agentlog's
workers) and ``deleted`` once deleted: a row with no content, which keeps the thread's
version and chain head for ``agentlog verify`` and which ``agentlog ls`` leaves out."""

from __future__ import annotations

from typing import Any, ClassVar

from sqlalchemy import BigInteger, Column, DateTime, MetaData, String, Table, Text

from agentlog.domain import Agent, GraphThread, Phase
from agentlog.projections.agent_rows import AgentRowsView, state_columns
from agentlog.projections.view import clean


class AgentStates(AgentRowsView):
    """Name, phase, goal, step count, pending approvals, last error, tokens, version."""

    name: ClassVar[str] = "state"
    version: ClassVar[int] = 5  # 2: unbounded text and 64-bit numbers; 3: agent state schema 3
    # 4: sensitive columns sealed with the cipher key; 5: LangGraph threads
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

    own_columns = (
        "name",
        "status",
        "goal",
        "steps",
        "pending_approvals",
        "last_error",
        "result",
        "tokens",
        "model",
        "created_at",
        "last_event_at",
    )

    def columns_for(self, agent: Any) -> dict[str, Any]:
        """What a person or a fresh worker reads at a glance (the text sealed), of an
        ``Agent`` or a ``GraphThread``."""
        if isinstance(agent, GraphThread):
            return self._thread_columns(agent)
        return dict(zip(self.own_columns, self._agent_row(agent), strict=True))

    def own_row(self, agent: Any) -> tuple[Any, ...] | None:
        """An agent's own columns, in the order of ``own_columns`` (a thread's: None)."""
        return None if isinstance(agent, GraphThread) else self._agent_row(agent)

    def _agent_row(self, agent: Agent) -> tuple[Any, ...]:
        name, goal, error, result = (
            clean(agent.name),
            clean(agent.goal),
            clean(agent.last_error),
            clean(agent.result),
        )
        if self.seal.on:
            close = self.seal.close
            name, goal, error, result = close(name), close(goal), close(error), close(result)
        return (
            name,
            agent.phase.value,
            goal,
            agent.steps,
            ",".join(agent.awaiting_permission),
            error,
            result,
            agent.tokens.total,
            clean(agent.config.model),
            agent.created_on,
            agent.modified_on,
        )

    def _thread_columns(self, thread: GraphThread) -> dict[str, Any]:
        """A LangGraph thread at a glance: its id, live checkpoints, deleted or not."""
        return {
            "name": self.seal.close(clean(thread.thread_id)),
            "status": DELETED if thread.deleted else Phase.IDLE.value,
            "goal": None,
            "steps": thread.checkpoints,
            "pending_approvals": "",
            "last_error": None,
            "result": None,
            "tokens": 0,
            "model": THREAD_MODEL,
            "created_at": thread.created_on,
            "last_event_at": thread.modified_on,
        }


DELETED = "deleted"
"""The status of a deleted LangGraph thread's row (``agentlog ls`` leaves it out)."""
THREAD_MODEL = "langgraph"
"""What a LangGraph thread's row says in its ``model`` column."""
