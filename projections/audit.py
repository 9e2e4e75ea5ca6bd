"""The audit view: one row per tool call, queryable by agent, tool, who decided, decision,
effect, outcome and time. Which tool ran with which arguments, who or what policy
allowed it, and what came of it, without joining anything by hand.

A LangGraph thread's calls come from its root ``messages`` channel: each tool call of a
new AI message starts a row, the tool message answering it settles it; a thread deleted
has no rows."""

from __future__ import annotations

from collections.abc import Sequence
from operator import itemgetter
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
    delete,
    select,
)

from agentlog.domain import GraphThread
from agentlog.projections.audit_rows import (
    AGENT,
    KINDS,
    LAST_VERSION,
    MISSING,
    OUTCOME,
    VERSION,
    Row,
    graph_call_row,
    graph_result,
    item_kind,
    kind_of,
)
from agentlog.projections.bulk import BulkWrite
from agentlog.projections.graph_messages import tool_calls
from agentlog.projections.thread_marks import ThreadMarks
from agentlog.projections.view import Positioned, View, clean

_KEY = ("agent_id", "called_version", "call_id")
_CALL_ID = 3  # where a row holds it
_THREAD_EVENTS = (GraphThread.CheckpointPut, GraphThread.ThreadDeleted)
_first = itemgetter(0)  # a kept call's key, of (key, call)


class _Call:
    """A call's row as the view keeps it, and whether the table has it yet."""

    __slots__ = ("row", "stored")

    def __init__(self, row: Row, stored: bool) -> None:
        self.row, self.stored = row, stored


class AuditTrail(View):
    """Every tool call: arguments, effect, decision, outcome, result size, times."""

    name: ClassVar[str] = "audit"
    version: ClassVar[int] = 5  # 2: call index; 3: unbounded text; 4: one row per call, sealed
    # 5: LangGraph threads' calls (several per event: the call id is part of the key)
    staged: ClassVar[bool] = True
    flush_rows: ClassVar[int] = 50_000
    """Calls changed and kept in memory before they are written (about 0.5 KB each: at
    most 25 MB, as the agent-row views' agents and the transcript's events). A build
    being built then writes when the follower says (every 100 batches) like the other
    views, unless a log is mostly tool calls: with fewer rows a flush wrote every
    84,000 events of a typical log, out of step with the other views of a pass."""
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
            Column("call_id", Text, primary_key=True),
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
        self._insert = BulkWrite.insert(self.rows)
        self._update = BulkWrite.update(self.rows, _KEY)
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
        self._clear = delete(self.rows).where(c.agent_id == bindparam("a"))
        self._call_ids = select(c.call_id).where(c.agent_id == bindparam("a"))
        self.marks = ThreadMarks(self.table_name("threads"), metadata)

    @classmethod
    def handles(cls, event_class: type[Any]) -> bool:
        """The events of the tool-call protocol, and a thread's checkpoints and deletion
        (the others are not even decoded)."""
        return kind_of(event_class) is not None or issubclass(event_class, _THREAD_EVENTS)

    def reset(self, position: int) -> None:
        """Forget the calls kept (changed or open)."""
        self._open: dict[tuple[str, str], _Call] = {}  # per agent and call id
        self._dirty: dict[tuple[str, int, str], _Call] = {}  # changed since the last flush
        self._cleared: set[str] = set()  # deleted threads: their rows in the table go
        self.marks.reset(complete=position == 0)
        self._ids: dict[int, str] = {}  # agent ids as text
        self._complete = position == 0  # every open call of the table is kept
        self._indexed = False  # the call index is known to exist

    def process(self, conn: Connection, events: Sequence[Positioned]) -> None:
        """Start a row per call, change it with each event of the call, in memory."""
        seal, opened, dirty, ids, known = self.seal, self._open, self._dirty, self._ids, KINDS
        self.marks.load(conn, events)
        for position, event in events:
            kind = known.get(cls := type(event), MISSING)
            if kind is MISSING:
                kind = kind_of(cls)
            if kind is not None and kind.by_item:
                kind = item_kind(event)
            if kind is None:
                if isinstance(event, _THREAD_EVENTS):
                    self._thread(conn, position, event)
                continue
            agent_id = ids.get(key := event.originator_id.int)
            if agent_id is None:
                agent_id = ids[key] = str(event.originator_id)
            if kind.starts is not None:
                call = _Call(kind.starts(agent_id, position, event, seal), False)
                dirty[(agent_id, event.originator_version, call.row[_CALL_ID])] = call
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
            dirty[(row[AGENT], row[VERSION], row[_CALL_ID])] = found
            if kind.closes:
                opened.pop(call_key, None)

    def wants_flush(self) -> bool:
        """Time to write: enough calls changed."""
        return len(self._dirty) >= self.flush_rows

    def flush(self, conn: Connection) -> None:
        """Insert the new calls and update the others, one statement each; then keep
        fewer open calls if too many."""
        if self._cleared:
            conn.execute(self._clear, [{"a": a} for a in self._cleared])
            self._cleared = set()
        self.marks.flush(conn)
        # In key order: the rows land in the key's index one leaf after the next instead of
        # at random leaves (1,000 agents interleave), so once the index outgrows the
        # database's page cache a flush still reads and writes each leaf once, not once per
        # row (measured at 1M events: 28,000 page cache misses per flush of 19,000 rows
        # in log order, 2,400 in key order).
        calls = [call for _, call in sorted(self._dirty.items(), key=_first)]
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

    def _thread(self, conn: Connection, position: int, event: GraphThread.Event) -> None:
        """A thread's new AI messages start calls, its tool messages settle them; a
        rewritten message list adds only calls not seen before; a deletion clears it."""
        agent_id = str(event.originator_id)
        if isinstance(event, GraphThread.ThreadDeleted):
            self._clear_thread(agent_id)
            return
        assert isinstance(event, GraphThread.CheckpointPut)
        taken = self.marks.take(agent_id, event)
        if taken is None:
            return
        seen = self._known_calls(conn, agent_id) if taken.replaced else set()
        for message in taken.messages:
            for call in tool_calls(message):
                if call[0] in seen:
                    continue
                row = graph_call_row(agent_id, position, event, call, self.seal)
                self._dirty[(agent_id, event.originator_version, row[_CALL_ID])] = opened = _Call(
                    row, False
                )
                self._open[(agent_id, row[_CALL_ID])] = opened
            call_id = message.get("tool_call_id") if message.get("type") == "tool" else None
            if isinstance(call_id, str):
                self._settle(conn, (agent_id, clean(call_id) or ""), event, message)

    def _settle(
        self, conn: Connection, key: tuple[str, str], event: Any, message: dict[str, Any]
    ) -> None:
        found = self._open.get(key) or self._read(conn, key)
        if found is None or found.row[OUTCOME] not in ("pending", "running"):
            return
        graph_result(found.row, event, message, self.seal)
        row = found.row
        self._dirty[(row[AGENT], row[VERSION], row[_CALL_ID])] = found
        self._open.pop(key, None)

    def _known_calls(self, conn: Connection, agent_id: str) -> set[str]:
        """The call ids the view has for a thread (in the table and in memory)."""
        known = {k[2] for k in self._dirty if k[0] == agent_id}
        known |= {k[1] for k in self._open if k[0] == agent_id}
        if agent_id not in self._cleared:  # closed calls are in the table alone
            known |= {r.call_id for r in conn.execute(self._call_ids, {"a": agent_id})}
        return known

    def _clear_thread(self, agent_id: str) -> None:
        self.marks.forget(agent_id)
        self._cleared.add(agent_id)
        self._dirty = {k: v for k, v in self._dirty.items() if k[0] != agent_id}
        self._open = {k: v for k, v in self._open.items() if k[0] != agent_id}

    def _read(self, conn: Connection, key: tuple[str, str]) -> _Call | None:
        """The newest call with this id, read from the table (None if there is none)."""
        if self._complete or key[0] in self._cleared:
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
