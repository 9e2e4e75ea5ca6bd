"""Snapshots for agents that arrive without any (imports): resume from them, not event 1."""

from __future__ import annotations

from contextlib import suppress
from typing import Any
from uuid import UUID

from eventsourcing.persistence import IntegrityError

from agentlog.domain.aggregate import Aggregate
from agentlog.domain.application import AgentLog

PAGE = 500


def take_snapshot(log: AgentLog, agent_id: UUID) -> None:
    """Replay the agent a page of events at a time and store its snapshot at its last
    version, if the store keeps snapshots and the agent is due one (at least the interval).
    """
    if log.snapshots is None or log.snapshot_interval <= 0:
        return
    aggregate: Any = None
    after = 0
    while page := log.recorder.select_events(agent_id, gt=after, limit=PAGE):
        for stored in page:
            event: Any = log.mapper.to_domain_event(stored)
            aggregate = event.mutate(aggregate)
        after = page[-1].originator_version
    if isinstance(aggregate, Aggregate) and aggregate.version >= log.snapshot_interval:
        with suppress(IntegrityError):  # someone stored this one already
            log.snapshots.put([aggregate.Snapshot.take(aggregate)])
