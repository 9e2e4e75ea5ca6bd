"""The transcript view: the messages the model sees, in order, starting from the latest
compaction summary. Workers build the model's context from it instead of replaying.

A LangGraph thread's rows are the messages of its root ``messages`` channel, numbered
from 0 (:mod:`agentlog.projections.graph_messages`): appended messages are added, a list
rewritten in the middle replaces the thread's rows, a deleted thread has none."""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cache
from typing import Any, ClassVar

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    MetaData,
    String,
    Table,
    Text,
    bindparam,
    delete,
)

from agentlog.domain import Agent, GraphThread
from agentlog.domain.messages import entries_for, message_for, summary_message
from agentlog.domain.ports import Message
from agentlog.projections.bulk import BulkWrite
from agentlog.projections.graph_messages import message_for as graph_message
from agentlog.projections.seal import PLAIN, Seal
from agentlog.projections.thread_marks import ThreadMarks
from agentlog.projections.view import Positioned, View, clean

_THREAD_EVENTS = (GraphThread.CheckpointPut, GraphThread.ThreadDeleted)


class Transcripts(View):
    """Chat messages per agent: system, user, assistant (with tool calls), tool."""

    name: ClassVar[str] = "transcript"
    version: ClassVar[int] = 5  # 2: the system prompt at seq 0; unbounded text
    # 3: content and tool calls sealed with the cipher key; 4: LangGraph threads' messages
    # 5: a string tool result as it is, not JSON-quoted (domain.messages.tool_content)
    staged: ClassVar[bool] = True
    flush_rows: ClassVar[int] = 50_000
    """Events kept in memory before their messages are written (about 0.5 KB each):
    the messages a compaction covers before then are never written."""

    def define(self, metadata: MetaData) -> None:
        """One table keyed by agent and the version of the event behind each message."""
        self.rows = Table(
            self.table_name(),
            metadata,
            Column("agent_id", String(36), primary_key=True),
            Column("seq", BigInteger, primary_key=True, autoincrement=False),
            Column("role", String(20), nullable=False),
            Column("content", Text, nullable=False),  # sealed with a cipher key
            Column("tool_calls", Text, nullable=True),  # sealed with a cipher key
            Column("call_id", Text, nullable=True),
        )
        c = self.rows.c
        self._insert = BulkWrite.insert(self.rows)
        self._delete = delete(self.rows).where(
            c.agent_id == bindparam("a"), c.seq <= bindparam("through"), c.role != "system"
        )
        self._clear = delete(self.rows).where(c.agent_id == bindparam("a"))
        self.marks = ThreadMarks(self.table_name("threads"), metadata)

    @classmethod
    def handles(cls, event_class: type[Any]) -> bool:
        """Events that carry a message, compactions, and a thread's checkpoints and
        deletion."""
        return (
            issubclass(event_class, (Agent.ContextCompacted, *_THREAD_EVENTS))
            or _may_have_message(event_class)  # type: ignore[arg-type]  # a class is hashable
        )

    def reset(self, position: int) -> None:
        """Forget the messages, compactions and thread marks not written yet."""
        self.marks.reset(complete=position == 0)
        self._ids: dict[int, str] = {}  # agent ids as text
        self._forget_kept()

    def _forget_kept(self) -> None:
        self._messages: dict[str, list[tuple[Any, ...]]] = {}  # per agent, in order
        self._compacted: dict[str, int] = {}  # per agent: rows through here go
        self._cleared: set[str] = set()  # threads whose rows in the table all go
        self._kept = 0

    def process(self, conn: Connection, events: Sequence[Positioned]) -> None:
        """Keep the messages; a compaction replaces what it covers with its summary."""
        self.marks.load(conn, events)
        ids, messages, row = self._ids, self._messages, self._row
        for _, event in events:
            agent_id = ids.get(key := event.originator_id.int)
            if agent_id is None:
                if len(ids) >= _IDS_KEPT:
                    ids.clear()
                agent_id = ids[key] = str(event.originator_id)
            if isinstance(event, Agent.ContextCompacted):
                self._compact(agent_id, event)
            elif isinstance(event, _THREAD_EVENTS):
                self._thread(agent_id, event)
            elif _may_have_message(type(event)):
                rows = [row(agent_id, seq, message) for seq, message in entries_for(event)]
                if rows:
                    kept = messages.get(agent_id)
                    if kept is None:
                        messages[agent_id] = rows
                    else:
                        kept.extend(rows)
        self._kept += len(events)

    def wants_flush(self) -> bool:
        """Time to write: enough kept."""
        return self._kept >= self.flush_rows

    def flush(self, conn: Connection) -> None:
        """Delete what compactions covered in the table, then insert the messages kept
        (a compaction already dropped the kept messages it covers)."""
        if self._compacted:
            covered = [{"a": a, "through": v} for a, v in self._compacted.items()]
            conn.execute(self._delete, covered)
        if self._cleared:
            conn.execute(self._clear, [{"a": a} for a in self._cleared])
        self._insert(conn, [row for rows in self._messages.values() for row in rows])
        self.marks.flush(conn)  # the marks kept stay: they are what the table has
        self._forget_kept()

    def _thread(self, agent_id: str, event: GraphThread.Event) -> None:
        """A thread's new messages; a rewritten list or a deletion clears its rows."""
        if isinstance(event, GraphThread.ThreadDeleted):
            self.marks.forget(agent_id)
            self._messages.pop(agent_id, None)
            self._cleared.add(agent_id)
            return
        assert isinstance(event, GraphThread.CheckpointPut)
        taken = self.marks.take(agent_id, event)
        if taken is None:
            return
        kept = self._messages.setdefault(agent_id, [])
        if taken.replaced:
            kept.clear()
            self._cleared.add(agent_id)
        for seq, found in enumerate(taken.messages, start=taken.start):
            if (message := graph_message(found)) is not None:
                kept.append(self._row(agent_id, seq, message))

    def _compact(self, agent_id: str, event: Agent.ContextCompacted) -> None:
        through = event.through_version
        kept = self._messages.setdefault(agent_id, [])
        kept[:] = [r for r in kept if r[_SEQ] > through or r[_ROLE] == "system"]
        # What the table holds was written before this compaction: every row of it
        # that this or an earlier compaction covers goes.
        self._compacted[agent_id] = max(through, self._compacted.get(agent_id, through))
        kept.append(self._row(agent_id, through, summary_message(event)))

    def _row(self, agent_id: str, seq: int, message: Message) -> tuple[Any, ...]:
        """A message as a row of the table (its columns, in order; the text sealed)."""
        calls = [c.model_dump(mode="json") for c in message.tool_calls]
        close = self.seal.close
        return (
            agent_id,
            seq,
            message.role,
            close(clean(message.content)),
            close(json.dumps(calls)) if calls else None,
            clean(message.call_id),
        )


_SEQ, _ROLE = 1, 2  # where a row holds them
_IDS_KEPT = 20_000  # agent ids kept as text at most


@cache
def _may_have_message(cls: type[Any]) -> bool:
    """Whether ``message_for`` has a case for this event class (else it gives None)."""
    return message_for.dispatch(cls) is not message_for.dispatch(object)


def message_from_row(row: Any, seal: Seal = PLAIN) -> Message:
    """A transcript row back as the message the model sees (opened, if sealed)."""
    tool_calls = seal.open(row.tool_calls)
    calls = json.loads(tool_calls) if tool_calls else []
    content = seal.open(row.content) or ""
    return Message(role=row.role, content=content, tool_calls=tuple(calls), call_id=row.call_id)
