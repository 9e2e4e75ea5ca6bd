"""A LangGraph thread's messages as OpenAI chat messages (``agentlog export --format
openai thread:ID``): the ``messages`` channel of its newest root checkpoint, read from
the log (deltas joined), decoded as the views decode it, without LangGraph."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from agentlog.domain.application import AgentLog
from agentlog.domain.errors import UnreadableThreadError
from agentlog.domain.graph_index import ThreadIndex
from agentlog.domain.graph_thread import GraphThread
from agentlog.domain.ports import Message
from agentlog.projections.graph_messages import (
    CHANNEL,
    NAMESPACE,
    decode,
    graph_messages,
    message_for,
)

UNREADABLE = (
    "its payloads are encrypted under the thread's own keys (an erasable saver) or in a "
    "format only LangGraph reads: read it with AgentLogSaver(url, erasable=True)"
)


def thread_messages(log: AgentLog, aggregate_id: UUID) -> list[Message]:
    """The chat messages of the thread's newest root checkpoint (none if it has none)."""
    index, thread_id = ThreadIndex(), str(aggregate_id)
    for event in log.events_of(aggregate_id):
        if isinstance(event, GraphThread.Created):
            thread_id = event.thread_id
        index.apply(event)  # type: ignore[arg-type]  # a thread's events
    live = index.checkpoints.get(NAMESPACE)
    if not live:
        return []
    checkpoint = decode(live[max(live)].checkpoint)
    if not isinstance(checkpoint, dict):
        raise UnreadableThreadError(thread_id, UNREADABLE)
    version = (checkpoint.get("channel_versions") or {}).get(CHANNEL)
    chain = None if version is None else index.delta_chain(NAMESPACE, CHANNEL, version)
    if chain is None:
        return []
    values: list[Any] = [decode(blob.value) for blob in chain if blob.value is not None]
    if any(value is None for value in values):
        raise UnreadableThreadError(thread_id, UNREADABLE)
    items = values[0] if len(values) == 1 else [item for part in values for item in part]
    return [m for found in graph_messages(items) if (m := message_for(found)) is not None]
