"""The transcript view: the messages the model sees, in order, starting from the latest
compaction summary. Workers build the model's context from it instead of replaying."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, ClassVar

from sqlalchemy import BigInteger, Column, Connection, MetaData, String, Table, Text, delete, insert

from agentlog.domain import Agent
from agentlog.domain.messages import message_for, seq_of, summary_message
from agentlog.domain.ports import Message
from agentlog.projections.view import Positioned, View, clean


class Transcripts(View):
    """Chat messages per agent: system, user, assistant (with tool calls), tool."""

    name: ClassVar[str] = "transcript"
    version: ClassVar[int] = 2  # 2: the system prompt at seq 0; unbounded text

    def define(self, metadata: MetaData) -> None:
        """One table keyed by agent and the version of the event behind each message."""
        self.rows = Table(
            self.table_name(),
            metadata,
            Column("agent_id", String(36), primary_key=True),
            Column("seq", BigInteger, primary_key=True, autoincrement=False),
            Column("role", String(20), nullable=False),
            Column("content", Text, nullable=False),
            Column("tool_calls", Text, nullable=True),
            Column("call_id", Text, nullable=True),
        )

    def process(self, conn: Connection, events: Sequence[Positioned]) -> None:
        """Append messages; a compaction replaces what it covers with its summary."""
        pending: list[dict[str, Any]] = []
        for _, event in events:
            if isinstance(event, Agent.ContextCompacted):
                self._flush(conn, pending)
                self._compact(conn, event)
            elif (message := message_for(event)) is not None:
                key = {"agent_id": str(event.originator_id), "seq": seq_of(event, message)}
                pending.append(key | _row(message))
        self._flush(conn, pending)

    def _flush(self, conn: Connection, pending: list[dict[str, Any]]) -> None:
        if pending:
            conn.execute(insert(self.rows), pending)
            pending.clear()

    def _compact(self, conn: Connection, event: Agent.ContextCompacted) -> None:
        agent_id = str(event.originator_id)
        conn.execute(
            delete(self.rows).where(
                self.rows.c.agent_id == agent_id,
                self.rows.c.seq <= event.through_version,
                self.rows.c.role != "system",
            )
        )
        summary = _row(summary_message(event))
        conn.execute(
            insert(self.rows).values(agent_id=agent_id, seq=event.through_version, **summary)
        )


def _row(message: Message) -> dict[str, Any]:
    calls = [c.model_dump(mode="json") for c in message.tool_calls]
    return {
        "role": message.role,
        "content": clean(message.content),
        "tool_calls": json.dumps(calls) if calls else None,
        "call_id": clean(message.call_id),
    }


def message_from_row(row: Any) -> Message:
    """A transcript row back as the message the model sees."""
    calls = json.loads(row.tool_calls) if row.tool_calls else []
    return Message(role=row.role, content=row.content, tool_calls=tuple(calls), call_id=row.call_id)
