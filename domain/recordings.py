"""Storing a save's events and noting their recordings, with less Python per event.

What eventsourcing's ``Application._record`` does (map each event to a stored event,
insert them in one go, pair each event with its notification, then put the aggregates
in the repository's cache), making the library's frozen dataclasses ``Notification``
and ``Recording`` without their frozen ``__init__`` (a setattr per field through
``object.__setattr__``: about a fifth of a small save's Python outside the mapper). The
same fields, equal and hashable alike; where the library's classes are more than their
fields (a future version), its own ``_record`` runs instead.
"""

from __future__ import annotations

import dataclasses
from typing import Any
from uuid import UUID

from eventsourcing.application import Application, ProcessingEvent
from eventsourcing.persistence import EventStore, Notification, Recording, StoredEvent

__all__ = ["PLAIN", "notification", "record", "stored_event"]

_new = object.__new__
_set = object.__setattr__


def _plain(cls: type[Any], fields: list[str]) -> bool:
    """Whether instances of ``cls`` are these fields in their ``__dict__``, nothing more."""
    return (
        [f.name for f in dataclasses.fields(cls)] == fields
        and not any(getattr(c, "__slots__", ()) for c in cls.__mro__)  # Generic's: ()
        and not hasattr(cls, "__post_init__")
    )


_NOTIFICATION_PLAIN = _plain(
    Notification, ["originator_id", "originator_version", "topic", "state", "id"]
)
PLAIN = _NOTIFICATION_PLAIN and _plain(Recording, ["domain_event", "notification"])
"""Whether the library's recordings can be made field by field (they can in 9.5)."""
_STORED_EVENT_PLAIN = _plain(StoredEvent, ["originator_id", "originator_version", "topic", "state"])


def notification(fields: dict[str, Any]) -> Notification:
    """The ``Notification`` of these fields (``originator_id``, ``originator_version``,
    ``topic``, ``state``, ``id``): what ``Notification(**fields)`` makes, without its
    frozen ``__init__``'s five setattrs where the class is its fields alone (a page of
    the log makes one per event); equal and hashable alike. ``fields`` becomes its
    ``__dict__``: pass a dict of its own."""
    if not _NOTIFICATION_PLAIN:  # pragma: no cover - a library whose Notification does more
        return Notification(**fields)
    made: Notification = _new(Notification)
    _set(made, "__dict__", fields)
    return made


def stored_event(fields: dict[str, Any]) -> StoredEvent:
    """The ``StoredEvent`` of these fields (``originator_id``, ``originator_version``,
    ``topic``, ``state``): what ``StoredEvent(**fields)`` makes, without its frozen
    ``__init__``'s four setattrs where the class is its fields alone (the mapper makes one
    per event saved, a read one per row); equal and hashable alike. ``fields`` becomes
    its ``__dict__``: pass a dict of its own."""
    if not _STORED_EVENT_PLAIN:  # pragma: no cover - a library whose StoredEvent does more
        return StoredEvent(**fields)
    made: StoredEvent = _new(StoredEvent)
    _set(made, "__dict__", fields)
    return made


def record(
    app: Application[UUID], processing_event: ProcessingEvent[UUID]
) -> list[Recording[UUID]] | None:
    """The recordings of the processing event's events, stored; None when this short
    way does not apply (an event store of another class): then use the library's."""
    store = app.events
    if not PLAIN or type(store) is not EventStore:
        return None
    events = processing_event.events
    stored = list(map(store.mapper.to_stored_event, events))
    ids = store.recorder.insert_events(
        stored, tracking=processing_event.tracking, **processing_event.saved_kwargs
    )
    recordings: list[Recording[UUID]] = []
    if ids:
        if len(ids) != len(stored):
            msg = f"{len(stored)} events stored, {len(ids)} notification ids given"
            raise ValueError(msg)
        add = recordings.append
        for event, s, notification_id in zip(events, stored, ids, strict=True):
            made = notification(
                {
                    "originator_id": s.originator_id,
                    "originator_version": s.originator_version,
                    "topic": s.topic,
                    "state": s.state,
                    "id": notification_id,
                }
            )
            recording = _new(Recording)
            _set(recording, "__dict__", {"domain_event": event, "notification": made})
            add(recording)
    repository = app.repository
    if repository.cache and not repository.fastforward:
        for aggregate_id, aggregate in processing_event.aggregates.items():
            repository.cache.put(aggregate_id, aggregate)
    return recordings
