"""The audit view: one row per recorded fact, queryable by agent, tool, actor,
decision and time. Who asked, what the model decided, which tool ran with which
arguments, who approved it, and what came back."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    DateTime,
    Index,
    MetaData,
    String,
    Table,
    Text,
    insert,
    select,
)

from agentlog.domain import Agent, Aggregate
from agentlog.projections.view import Positioned, View, clean

_DECISIONS: tuple[tuple[type[Any], str], ...] = (
    (Agent.PermissionRequested, "requested"),
    (Agent.PermissionGranted, "granted"),
    (Agent.PermissionDenied, "denied"),
)
_OUTCOMES: tuple[tuple[type[Any], str], ...] = (
    (Agent.ToolSucceeded, "succeeded"),
    (Agent.ToolFailed, "failed"),
    (Agent.ToolOutcomeUnknown, "unknown"),
    (Agent.ToolCallRefused, "refused"),
)


class AuditTrail(View):
    """Every event as an audit row, with the tool and args hash of its call filled in."""

    name: ClassVar[str] = "audit"
    version: ClassVar[int] = 3  # 2: index for the call lookup; 3: unbounded text, 64-bit

    def define(self, metadata: MetaData) -> None:
        """One append-only table with an index per query dimension."""
        self.rows = Table(
            self.table_name(),
            metadata,
            Column("position", BigInteger, primary_key=True, autoincrement=False),
            Column("agent_id", String(36), nullable=False, index=True),
            Column("version", BigInteger, nullable=False),
            Column("time", DateTime(timezone=True), nullable=False, index=True),
            Column("event_type", Text, nullable=False),
            Column("actor", Text, nullable=False, index=True),
            Column("call_id", Text, nullable=True),
            Column("tool", Text, nullable=True, index=True),
            Column("args_hash", String(64), nullable=True),
            Column("decision", String(20), nullable=True, index=True),
            Column("approver", Text, nullable=True),
            Column("outcome", String(20), nullable=True),
            Column("detail", Text, nullable=True),
        )
        Index(f"{self.table_name()}_call", self.rows.c.agent_id, self.rows.c.call_id)

    def process(self, conn: Connection, events: Sequence[Positioned]) -> None:
        """Insert one row per event, in one statement for the batch."""
        calls: dict[tuple[str, str], tuple[str, str]] = {}
        rows = [self._row(conn, calls, position, event) for position, event in events]
        conn.execute(insert(self.rows), rows)

    def _row(
        self,
        conn: Connection,
        calls: dict[tuple[str, str], tuple[str, str]],
        position: int,
        event: Aggregate.Event,
    ) -> dict[str, Any]:
        agent_id = str(event.originator_id)
        call_id = getattr(event, "call_id", None)
        tool = args_hash = None
        if isinstance(event, Agent.ToolCalled):
            tool, args_hash = event.tool, event.args_hash
            calls[(agent_id, event.call_id)] = (tool, args_hash)
        elif isinstance(event, Agent.ToolCallRejected):
            tool = event.tool  # never a recorded call: it has a tool, no arguments hash
        elif call_id is not None:
            tool, args_hash = calls.get((agent_id, call_id)) or self._call(conn, agent_id, call_id)
        return {
            "position": position,
            "agent_id": agent_id,
            "version": event.originator_version,
            "time": event.timestamp,
            "event_type": type(event).__name__,
            "actor": clean(event.actor),
            "call_id": clean(call_id),
            "tool": clean(tool),
            "args_hash": args_hash,
            "decision": _kind(event, _DECISIONS),
            "approver": clean(getattr(event, "approver", None)),
            "outcome": _kind(event, _OUTCOMES),
            "detail": _detail(event),
        }

    def _call(self, conn: Connection, agent_id: str, call_id: str) -> tuple[Any, Any]:
        query = select(self.rows.c.tool, self.rows.c.args_hash).where(
            self.rows.c.agent_id == agent_id,
            self.rows.c.call_id == call_id,
            self.rows.c.event_type == "ToolCalled",
        )
        # Model-chosen call ids can repeat once a call closed: the newest call is this one.
        row = conn.execute(query.order_by(self.rows.c.position.desc()).limit(1)).first()
        return (row.tool, row.args_hash) if row else (None, None)


def _kind(event: Aggregate.Event, kinds: tuple[tuple[type[Any], str], ...]) -> str | None:
    return next((kind for cls, kind in kinds if isinstance(event, cls)), None)


def _detail(event: Aggregate.Event) -> str | None:
    for field in ("reason", "error", "goal", "result", "summary"):
        value = getattr(event, field, None)
        if isinstance(value, str) and value:
            return clean(value[:500])
    return None
