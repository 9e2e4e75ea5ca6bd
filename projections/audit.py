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
    bindparam,
    select,
)

from agentlog.domain import Aggregate
from agentlog.projections.audit_rows import shape_of
from agentlog.projections.bulk import BulkWrite
from agentlog.projections.view import Positioned, View, clean


class AuditTrail(View):
    """Every event as an audit row, with the tool and args hash of its call filled in."""

    name: ClassVar[str] = "audit"
    version: ClassVar[int] = 3  # 2: index for the call lookup; 3: unbounded text, 64-bit
    staged: ClassVar[bool] = True
    flush_rows: ClassVar[int] = 50_000
    """Rows kept in memory before they are written (about 0.3 KB each)."""
    call_capacity: ClassVar[int] = 20_000
    """Open calls whose tool and arguments hash are kept in memory at most (a call is
    dropped when it closes)."""

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
        self._call_index = Index(
            f"{self.table_name()}_call", self.rows.c.agent_id, self.rows.c.call_id
        )
        c = self.rows.c
        self._insert = BulkWrite.insert(self.rows)
        self._newest_call = (
            select(c.tool, c.args_hash)
            .where(
                c.agent_id == bindparam("agent_id"),
                c.call_id == bindparam("call_id"),
                c.event_type == "ToolCalled",
            )
            .order_by(c.position.desc())
            .limit(1)
        )

    def reset(self, position: int) -> None:
        """Forget the rows not written yet and the calls kept."""
        self._rows: list[tuple[Any, ...]] = []
        self._calls: dict[tuple[str, Any], tuple[Any, Any]] = {}  # newest open call per id
        self._ids: dict[int, str] = {}  # agent ids as text
        self._complete = position == 0  # every call of the table is kept
        self._indexed = False  # the call index is known to exist

    def process(self, conn: Connection, events: Sequence[Positioned]) -> None:
        """Make one row per event, kept until the next flush."""
        row = self._row
        self._rows.extend(row(conn, position, event) for position, event in events)

    def wants_flush(self) -> bool:
        """Time to write: enough rows kept."""
        return len(self._rows) >= self.flush_rows

    def flush(self, conn: Connection) -> None:
        """Insert the rows kept, in one statement; then keep fewer calls if too many."""
        if self._rows:
            self._insert(conn, self._rows)
            self._rows = []
        if len(self._calls) > self.call_capacity:  # all written: the table has them
            for key in list(self._calls)[: len(self._calls) - self.call_capacity // 2]:
                del self._calls[key]
            self._complete = False
        if len(self._ids) > self.call_capacity:
            self._ids.clear()

    def _row(self, conn: Connection, position: int, event: Aggregate.Event) -> tuple[Any, ...]:
        shape = shape_of(type(event))
        agent_id = self._ids.get(key := event.originator_id.int)
        if agent_id is None:
            agent_id = self._ids[key] = str(event.originator_id)
        call_id = getattr(event, "call_id") if shape.call_id else None  # noqa: B009
        tool = args_hash = None
        if shape.called:
            tool, args_hash = getattr(event, "tool"), getattr(event, "args_hash")  # noqa: B009
            self._calls[(agent_id, call_id)] = (tool, args_hash)
        elif shape.rejected:
            tool = getattr(event, "tool")  # noqa: B009 - never a recorded call: no hash
        elif call_id is not None:
            tool, args_hash = self._call(conn, agent_id, call_id)
            if shape.closes:  # the agent has no such call any more: keep open calls only
                self._calls.pop((agent_id, call_id), None)
                self._complete = False  # (the table still has it, for what is not Agent's)
        return (  # the table's columns, in order
            position,
            agent_id,
            event.originator_version,
            event.timestamp,
            shape.event_type,
            clean(event.actor),
            clean(call_id),
            clean(tool),
            args_hash,
            shape.decision,
            clean(getattr(event, "approver")) if shape.approver else None,  # noqa: B009
            shape.outcome,
            shape.detail(event),
        )

    def _call(self, conn: Connection, agent_id: str, call_id: str) -> tuple[Any, Any]:
        """The tool and arguments hash of the newest call with this id (kept, or read)."""
        key = (agent_id, call_id)
        if key in self._calls or self._complete:
            return self._calls.get(key, (None, None))
        if not self._indexed:  # a new build gets its indexes when swapped in
            self._call_index.create(conn, checkfirst=True)
            self._indexed = True
        # Model-chosen call ids can repeat once a call closed: the newest call is this one.
        query = {"agent_id": agent_id, "call_id": clean(call_id)}  # as the rows hold it
        row = conn.execute(self._newest_call, query).first()
        self._calls[key] = found = (row.tool, row.args_hash) if row else (None, None)
        return found
