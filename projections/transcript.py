"""The transcript view: the messages the model sees, in order, starting from the latest
compaction summary. Workers build the model's context from it instead of replaying."""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import singledispatch
from typing import Any, ClassVar

from sqlalchemy import Column, Connection, Integer, MetaData, String, Table, Text, delete, insert

from agentlog.domain import Agent, Aggregate
from agentlog.projections.view import Positioned, View


class Transcripts(View):
    """Chat messages per agent: system, user, assistant (with tool calls), tool."""

    name: ClassVar[str] = "transcript"
    version: ClassVar[int] = 1

    def define(self, metadata: MetaData) -> None:
        """One table keyed by agent and the version of the event behind each message."""
        self.rows = Table(
            self.table_name(),
            metadata,
            Column("agent_id", String(36), primary_key=True),
            Column("seq", Integer, primary_key=True, autoincrement=False),
            Column("role", String(20), nullable=False),
            Column("content", Text, nullable=False),
            Column("tool_calls", Text, nullable=True),
            Column("call_id", String(200), nullable=True),
        )

    def process(self, conn: Connection, events: Sequence[Positioned]) -> None:
        """Append messages; a compaction replaces what it covers with its summary."""
        pending: list[dict[str, Any]] = []
        for _, event in events:
            if isinstance(event, Agent.ContextCompacted):
                self._flush(conn, pending)
                self._compact(conn, event)
            elif (message := message_for(event)) is not None:
                pending.append(
                    {
                        "agent_id": str(event.originator_id),
                        "seq": event.originator_version,
                        **message,
                    }
                )
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
        summary = {
            "role": "user",
            "content": f"[summary of the conversation so far]\n{event.summary}",
        }
        conn.execute(
            insert(self.rows).values(agent_id=agent_id, seq=event.through_version, **summary)
        )


@singledispatch
def message_for(event: Aggregate.Event) -> dict[str, Any] | None:
    """The chat message an event adds to the model's context, if any."""
    return None


@message_for.register
def _(event: Agent.Created) -> dict[str, Any] | None:
    prompt = event.config.system_prompt
    return {"role": "system", "content": prompt} if prompt else None


@message_for.register
def _(event: Agent.TaskStarted) -> dict[str, Any] | None:
    return {"role": "user", "content": event.goal}


@message_for.register
def _(event: Agent.UserMessageReceived) -> dict[str, Any] | None:
    return {"role": "user", "content": event.text}


@message_for.register
def _(event: Agent.ModelResponded) -> dict[str, Any] | None:
    calls = [{"id": c.call_id, "name": c.tool, "arguments": c.args} for c in event.tool_calls]
    return {
        "role": "assistant",
        "content": event.text,
        "tool_calls": json.dumps(calls) if calls else None,
    }


@message_for.register
def _(event: Agent.ToolSucceeded) -> dict[str, Any] | None:
    return _tool(event.call_id, json.dumps(event.result, ensure_ascii=False))


@message_for.register
def _(event: Agent.ToolFailed) -> dict[str, Any] | None:
    return _tool(event.call_id, f"error: {event.error}")


@message_for.register
def _(event: Agent.PermissionDenied) -> dict[str, Any] | None:
    return _tool(event.call_id, f"denied by {event.approver}: {event.reason}".rstrip(": "))


def _tool(call_id: str, content: str) -> dict[str, Any]:
    return {"role": "tool", "content": content, "call_id": call_id}
