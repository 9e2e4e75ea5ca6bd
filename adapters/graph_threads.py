"""The LangGraph threads in a store, read from the log by topic (no view holds them):
one row per thread, its id, aggregate id, version, last event and whether it is deleted."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, cast
from uuid import UUID

from agentlog.domain.application import AgentLog
from agentlog.domain.graph_thread import GraphThread

EVENT_NAMES = (
    "Created",
    "CheckpointPut",
    "WritesPut",
    "CheckpointsRemoved",
    "ThreadCopied",
    "ThreadDeleted",
)
TOPICS = tuple(getattr(GraphThread, name).TOPIC for name in EVENT_NAMES)
_NAME_OF = dict(zip(TOPICS, EVENT_NAMES, strict=True))


@dataclass
class ThreadRow:
    """One LangGraph thread as the log has it."""

    thread_id: str
    aggregate_id: UUID
    version: int
    last_event: str
    deleted: bool


def graph_threads(log: AgentLog, page: int = 500) -> list[ThreadRow]:
    """Every thread, in order of creation (reads the events of threads only)."""
    rows: dict[UUID, ThreadRow] = {}
    for notification in _notifications(log, page):
        aggregate_id = UUID(str(notification.originator_id))
        name = _NAME_OF[notification.topic]
        if name == "Created":
            created = cast(GraphThread.Created, log.mapper.to_domain_event(notification))
            rows[aggregate_id] = ThreadRow(created.thread_id, aggregate_id, 1, name, False)
            continue
        row = rows.get(aggregate_id)
        if row is None:  # a thread whose first events are missing: verify says more
            continue
        row.version, row.last_event = notification.originator_version, name
        if name in ("ThreadDeleted", "CheckpointPut"):
            row.deleted = name == "ThreadDeleted"
    return list(rows.values())


def _notifications(log: AgentLog, page: int) -> Iterator[Any]:
    start = 1
    while found := log.recorder.select_notifications(start, page, topics=TOPICS):
        yield from found
        start = found[-1].id + 1
