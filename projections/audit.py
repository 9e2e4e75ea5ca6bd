"""The audit view: one row per tool call, queryable by agent, tool, who decided, decision,
effect, outcome and time. Which tool ran with which arguments, who or what policy
allowed it, and what came of it, without joining anything by hand."""

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
    update,
)

from agentlog.projections.audit_rows import (
    AGENT,
    KINDS,
    LAST_VERSION,
    MISSING,
    VERSION,
    Row,
    item_kind,
    kind_of,
)
from agentlog.projections.bulk import BulkWrite
from agentlog.projections.view import Positioned, View, clean

_KEY = ("agent_id", "called_version")


class _Call:
    """A call's row as the view keeps it, and whether the table has it yet."""

    __slots__ = ("row", "stored")

    def __init__(self, row: Row, stored: bool) -> None:
        self.row, self.stored = row, stored


class AuditTrail(View):
    """Every tool call: arguments, effect, decision, outcome, result size, times."""

    name: ClassVar[str] = "audit"
    version: ClassVar[int] = 4  # 2: call index; 3: unbounded text; 4: one row per call, sealed
    staged: ClassVar[bool] = True
    flush_rows: ClassVar[int] = 20_000
    """Calls changed and kept in memory before they are written (about 0.5 KB each)."""
    call_capacity: ClassVar[int] = 20_000
    """Open calls kept in memory at most (a call is dropped when it closes)."""

    def define(self, metadata: MetaData) -> None:
        """One table keyed by agent and the version that recorded the call; an index per
        query dimension."""
        self.rows = Table(
            self.table_name(),
            metadata,
            Column("agent_id", String(36), primary_key=True),
            Column("called_version", BigInteger, primary_key=True, autoincrement=False),
            Column("position", BigInteger, nullable=False, index=True),
            Column("call_id", Text, nullable=False),
            Column("tool", Text, nullable=False, index=True),
            Column("args", Text, nullable=True),  # sealed with a cipher key
            Column("args_hash", String(64), nullable=True),
            Column("effect", String(20), nullable=True, index=True),
            Column("policy", String(10), nullable=True),
            Column("requested_by", Text, nullable=False),
            Column("called_at", DateTime(timezone=True), nullable=False, index=True),
            Column("decision", String(20), nullable=True, index=True),
            Column("decided_by", Text, nullable=True, index=True),
            Column("decided_at", DateTime(timezone=True), nullable=True),
            Column("outcome", String(20), nullable=False, index=True),
            Column("attempts", BigInteger, nullable=False),
            Column("started_at", DateTime(timezone=True), nullable=True),
            Column("finished_at", DateTime(timezone=True), nullable=True),
            Column("finished_by", Text, nullable=True),
            Column("result_size", BigInteger, nullable=True),
            Column("detail", Text, nullable=True),  # sealed with a cipher key
            Column("last_version", BigInteger, nullable=False),
        )
        c = self.rows.c
        self._call_index = Index(f"{self.table_name()}_call", c.agent_id, c.call_id)
        keys = [col.key for col in c]
        values: dict[Any, Any] = {col: bindparam(col.key) for col in c if col.key not in _KEY}
        where = (c.agent_id == bindparam("agent_id")) & (
            c.called_version == bindparam("called_version")
        )
        self._insert = BulkWrite.insert(self.rows)
        self._update = BulkWrite(update(self.rows).values(values).where(where), list(c), keys)
        self._newest_call = (
            select(self.rows)
            .where(
                c.agent_id == bindparam("agent_id"),
                c.call_id == bindparam("call_id"),
                c.args_hash.is_not(None),  # a recorded call, not a rejected one
            )
            .order_by(c.called_version.desc())
            .limit(1)
        )

    @classmethod
    def handles(cls, event_class: type[Any]) -> bool:
        """The events of the tool-call protocol (the others are not even decoded)."""
        return kind_of(event_class) is not None

    def reset(self, position: int) -> None:
        """Forget the calls kept (changed or open)."""
        self._open: dict[tuple[str, str], _Call] = {}  # per agent and call id
        self._dirty: dict[tuple[str, int], _Call] = {}  # changed since the last flush
        self._ids: dict[int, str] = {}  # agent ids as text
        self._complete = position == 0  # every open call of the table is kept
        self._indexed = False  # the call index is known to exist

    def process(self, conn: Connection, events: Sequence[Positioned]) -> None:
        """Start a row per call, change it with each event of the call, in memory."""
        seal, opened, dirty, ids, known = self.seal, self._open, self._dirty, self._ids, KINDS
        for position, event in events:
            kind = known.get(cls := type(event), MISSING)
            if kind is MISSING:
                kind = kind_of(cls)
            if kind is not None and kind.by_item:
                kind = item_kind(event)
            if kind is None:
                continue
            agent_id = ids.get(key := event.originator_id.int)
            if agent_id is None:
                agent_id = ids[key] = str(event.originator_id)
            if kind.starts is not None:
                call = _Call(kind.starts(agent_id, position, event, seal), False)
                dirty[(agent_id, event.originator_version)] = call
                if kind.opens:
                    opened[(agent_id, getattr(event, "call_id"))] = call  # noqa: B009
                continue
            call_key = (agent_id, getattr(event, "call_id"))  # noqa: B009
            found = opened.get(call_key) or self._read(conn, call_key)
            if found is None:
                continue  # no such call (the view did not see it: not an agent's)
            assert kind.update is not None
            row = found.row
            kind.update(row, event, seal)
            row[LAST_VERSION] = event.originator_version
            dirty[(row[AGENT], row[VERSION])] = found
            if kind.closes:
                opened.pop(call_key, None)

    def wants_flush(self) -> bool:
        """Time to write: enough calls changed."""
        return len(self._dirty) >= self.flush_rows

    def flush(self, conn: Connection) -> None:
        """Insert the new calls and update the others, one statement each; then keep
        fewer open calls if too many."""
        calls = self._dirty.values()
        self._insert(conn, [tuple(call.row) for call in calls if not call.stored])
        self._update(conn, [tuple(call.row) for call in calls if call.stored])
        for call in calls:
            call.stored = True
        self._dirty = {}
        if len(self._open) > self.call_capacity:  # all written: the table has them
            for key in list(self._open)[: len(self._open) - self.call_capacity // 2]:
                del self._open[key]
            self._complete = False
        if len(self._ids) > self.call_capacity:
            self._ids.clear()

    def _read(self, conn: Connection, key: tuple[str, str]) -> _Call | None:
        """The newest call with this id, read from the table (None if there is none)."""
        if self._complete:
            return None
        if not self._indexed:  # a new build gets its indexes when swapped in
            self._call_index.create(conn, checkfirst=True)
            self._indexed = True
        # Model-chosen call ids can repeat once a call closed: the newest call is this one.
        agent_id, call_id = key
        row = conn.execute(self._newest_call, {"agent_id": agent_id, "call_id": clean(call_id)})
        found = row.first()
        if found is None:
            return None
        self._open[key] = call = _Call(list(found), True)
        return call
