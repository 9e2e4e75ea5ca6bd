"""What a view has taken of each LangGraph thread's messages, so that only new ones count.

A thread's ``messages`` value is stored as a delta (the messages appended) or whole (the
first value, the first put of a saver process, a list rewritten in the middle). Per
thread a view keeps a mark: how many messages it took and their running digest. A delta
is appended at the mark; a whole list whose first messages match the mark (same count,
same digest) adds only the rest; any other whole list *replaces* what the view had (a
message removed or edited, a graph resumed from an older checkpoint).

Marks live in a table of the view's build (``..._threads_b<n>``), written in the flush
that writes the rows they describe; the view keeps those it touched in memory, reads the
others in one query per batch, and reads nothing when it started from an empty build.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    MetaData,
    String,
    Table,
    bindparam,
    delete,
    select,
)

from agentlog.domain.graph_thread import GraphThread
from agentlog.projections.bulk import BulkWrite
from agentlog.projections.graph_messages import (
    GraphMessage,
    chained,
    decode,
    graph_messages,
    messages_blob,
)
from agentlog.projections.view import Positioned

_CHUNK = 500


@dataclass(frozen=True)
class Mark:
    """Messages taken of a thread, and their running digest."""

    count: int
    digest: str


@dataclass(frozen=True)
class Taken:
    """What a stored ``messages`` value adds: messages from index ``start`` on; if
    ``replaced``, the thread's earlier messages no longer hold (start is 0)."""

    start: int
    messages: list[GraphMessage]
    replaced: bool


class ThreadMarks:
    """The marks of one view build, in memory and in its ``threads`` table."""

    capacity = 20_000
    """Marks kept in memory at most after a flush (about 200 bytes each)."""

    def __init__(self, name: str, metadata: MetaData) -> None:
        self.table = Table(
            name,
            metadata,
            Column("agent_id", String(36), primary_key=True),
            Column("taken", BigInteger, nullable=False),
            Column("digest", String(64), nullable=False),
        )
        c = self.table.c
        self._select = select(c.agent_id, c.taken, c.digest).where(
            c.agent_id.in_(bindparam("ids", expanding=True))
        )
        self._delete = delete(self.table).where(c.agent_id.in_(bindparam("ids", expanding=True)))
        self._insert = BulkWrite.insert(self.table)
        self.reset(complete=True)

    def reset(self, *, complete: bool) -> None:
        """Forget the marks kept; ``complete``: the table is empty (a new build)."""
        self._marks: dict[str, Mark | None] = {}  # None: the view took nothing of it
        self._dirty: set[str] = set()
        self.complete = complete

    def load(self, conn: Connection, events: Sequence[Positioned]) -> None:
        """Read the marks of the threads whose messages the batch stores, if not kept."""
        if self.complete:
            return
        ids = list(
            {
                str(e.originator_id)
                for _, e in events
                if isinstance(e, GraphThread.CheckpointPut) and messages_blob(e) is not None
            }
            - self._marks.keys()
        )
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start : start + _CHUNK]
            found = {
                r.agent_id: Mark(r.taken, r.digest)
                for r in conn.execute(self._select, {"ids": chunk})
            }
            self._marks.update({i: found.get(i) for i in chunk})

    def take(self, agent_id: str, event: GraphThread.CheckpointPut) -> Taken | None:
        """What this checkpoint adds to the thread's messages (None: nothing readable)."""
        blob = messages_blob(event)
        value = None if blob is None else decode(blob.value)
        if blob is None or value is None:
            return None
        items = graph_messages(value)
        mark = self._marks.get(agent_id)
        if blob.base is not None or (mark is not None and _extends(items, mark)):
            start = 0 if mark is None else mark.count
            new = items if blob.base is not None else items[start:]
            taken = Taken(start, new, False)
            self._set(agent_id, Mark(start + len(new), chained(mark.digest if mark else "", new)))
            return taken
        self._set(agent_id, Mark(len(items), chained("", items)))
        return Taken(0, items, mark is not None and mark.count > 0)

    def forget(self, agent_id: str) -> None:
        """The thread was deleted: the view has nothing of it any more."""
        self._set(agent_id, None)

    def _set(self, agent_id: str, mark: Mark | None) -> None:
        self._marks[agent_id] = mark
        self._dirty.add(agent_id)

    def flush(self, conn: Connection) -> None:
        """Write the marks changed since the last flush."""
        if self._dirty:
            ids = list(self._dirty)
            for start in range(0, len(ids), _CHUNK):
                conn.execute(self._delete, {"ids": ids[start : start + _CHUNK]})
            rows: list[tuple[Any, ...]] = [
                (i, m.count, m.digest) for i in ids if (m := self._marks[i]) is not None
            ]
            self._insert(conn, rows)
            self._dirty.clear()
        if len(self._marks) > self.capacity:
            self._marks.clear()
            self.complete = False


def _extends(items: list[GraphMessage], mark: Mark) -> bool:
    """Whether a whole list starts with the messages the mark stands for."""
    return len(items) >= mark.count and chained("", items[: mark.count]) == mark.digest
