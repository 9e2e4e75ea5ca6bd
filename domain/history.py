"""A hole in an agent's history is named as damage, never a library error or a skip.

Events are applied in version order; a deleted row shows up as the next event's version
being one too high (the library's ``OriginatorVersionError``), or as a first event that is
not the agent's creation. Both become :class:`DamagedHistoryError` naming the agent and the
missing version, which points people to ``agentlog verify``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any
from uuid import UUID

from eventsourcing.domain import CanInitAggregate, CanSnapshotAggregate, OriginatorVersionError

from agentlog.domain.errors import DamagedHistoryError

MISSING = "this event is missing (deleted?)"


def mutate_all(aggregate: Any, events: Iterable[Any]) -> Any:
    """Apply events in order (the library's projector, without its per-event protocol
    check, which costs more than applying the event); a hole raises
    :class:`DamagedHistoryError`."""
    for event in events:
        if aggregate is None and not isinstance(event, CanInitAggregate | CanSnapshotAggregate):
            raise DamagedHistoryError(event.originator_id, 1, MISSING)
        try:
            aggregate = event.mutate(aggregate)
        except OriginatorVersionError:
            if event.originator_version <= aggregate.version:
                raise  # not a hole: the same event twice
            raise DamagedHistoryError(event.originator_id, aggregate.version + 1, MISSING) from None
    return aggregate


def in_sequence(agent_id: UUID, events: Iterable[Any], first: int) -> Iterator[Any]:
    """The events, checked to be versions ``first``, ``first + 1``, ... without a hole."""
    expected = first
    for event in events:
        if event.originator_version != expected:
            raise DamagedHistoryError(agent_id, expected, MISSING)
        expected += 1
        yield event
