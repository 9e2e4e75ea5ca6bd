"""The transcript view: the messages the model sees, in order, starting from the latest
compaction summary. Workers build the model's context from it instead of replaying."""

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

from agentlog.domain import Agent
from agentlog.domain.messages import entries_for, message_for, summary_message
from agentlog.domain.ports import Message
from agentlog.projections.bulk import BulkWrite
from agentlog.projections.seal import PLAIN, Seal
from agentlog.projections.view import Positioned, View, clean


class Transcripts(View):
    """Chat messages per agent: system, user, assistant (with tool calls), tool."""

    name: ClassVar[str] = "transcript"
    version: ClassVar[int] = 3  # 2: the system prompt at seq 0; unbounded text
    # 3: content and tool calls sealed with the cipher key
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

    @classmethod
    def handles(cls, event_class: type[Any]) -> bool:
        """Events that carry a message, and compactions."""
        return issubclass(event_class, Agent.ContextCompacted) or _may_have_message(event_class)  # type: ignore[arg-type]  # a class is hashable

    def reset(self, position: int) -> None:
        """Forget the messages and compactions not written yet."""
        self._messages: dict[str, list[tuple[Any, ...]]] = {}  # per agent, in order
        self._compacted: dict[str, int] = {}  # per agent: rows through here go
        self._kept = 0

    def process(self, conn: Connection, events: Sequence[Positioned]) -> None:
        """Keep the messages; a compaction replaces what it covers with its summary."""
        for _, event in events:
            if isinstance(event, Agent.ContextCompacted):
                self._compact(str(event.originator_id), event)
            elif _may_have_message(type(event)):
                agent_id = str(event.originator_id)
                rows = [self._row(agent_id, seq, message) for seq, message in entries_for(event)]
                if rows:
                    self._messages.setdefault(agent_id, []).extend(rows)
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
        self._insert(conn, [row for rows in self._messages.values() for row in rows])
        self.reset(0)

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
