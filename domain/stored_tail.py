"""The newest stored events of an agent, read once for the fast-forward and the call check.

A worker's tool step needs two things from the store: the events others stored after
the agent it keeps (its fast-forward), and the events the call check rests on (from the
model's response that asked for the call to the agent's head), checked against their
stored bytes. Both are the newest events of one agent, so one read serves both:
``AgentLog.take`` reads from the call check's version, applies the events past the kept
version, and keeps the rows it read for ``AgentLog.chained_events`` of that very agent,
while it is unchanged. Each row is decoded and hashed from the bytes read in this step,
so the check sees what a read of its own would have seen: an edit of the store is caught.

A row whose bytes are the very bytes this process stored (or read and checked before)
for that event is not decoded again: an event remembers the bytes it was stored as
(``remember_row``) with its link, and a row read back equal to them, byte for byte, under
the same topic, gives that event and link (decoding and hashing those bytes again would
give the same, since both are functions of the bytes alone). Any other row, an edited one
among them, is decoded and hashed from what was read.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NoReturn, Protocol
from uuid import UUID

from eventsourcing.persistence import StoredEvent

from agentlog.domain.aggregate import Aggregate
from agentlog.domain.chain import ChainLinks, Link
from agentlog.domain.errors import BrokenChainError

__all__ = [
    "StateDecoder",
    "StoredRow",
    "StoredTail",
    "chained",
    "read_row",
    "remember_row",
    "sealed_link",
]

_ROW = "_agentlog_row"
"""Where an event keeps the row it was stored as (in its ``__dict__``: no field)."""


class StateDecoder(Protocol):
    """What reading rows needs of the mapper (agentlog's PydanticMapper has it)."""

    def decode_state(self, stored_event: StoredEvent) -> dict[str, Any]: ...

    def event_from_state(self, stored_event: StoredEvent, state: dict[str, Any]) -> Any: ...


@dataclass(frozen=True)
class StoredRow:
    """One stored event as read: its chain link and its event, or why it does not decode
    (raised when the row is used, so a row nobody uses fails nothing)."""

    version: int
    link: Link | None
    event: Aggregate.Event | None
    error: Exception | None = None

    def decoded(self) -> Aggregate.Event:
        """Its event; raises what decoding it raised."""
        if self.event is None:
            self.fail()
        return self.event

    def fail(self) -> NoReturn:
        """Raise what decoding it raised."""
        assert self.error is not None
        raise self.error


def read_row(
    mapper: StateDecoder, stored: StoredEvent, known: Aggregate.Event | None = None
) -> StoredRow:
    """A stored event decoded once: hashed as stored, then made an event (upcast).

    ``known``: the event this process holds at that version, if any; when the row is,
    byte for byte, what it remembers being stored as, it is that event and link."""
    version = stored.originator_version
    if known is not None:
        link = _remembered(known, stored)
        if link is not None:
            return StoredRow(version, link, known)
    try:
        state = mapper.decode_state(stored)
    except Exception as e:  # kept: raised when the row is used
        return StoredRow(version, None, None, e)
    link = Link.of(stored.topic, str(stored.originator_id), version, state)
    try:
        event = mapper.event_from_state(stored, state)
    except Exception as e:  # kept: raised when the row is used
        return StoredRow(version, link, None, e)
    remember_row(event, stored.topic, stored.state, link)
    return StoredRow(version, link, event)


def remember_row(event: Aggregate.Event, topic: str, data: bytes, link: Link) -> None:
    """Note that ``data``, stored under ``topic`` at the event's id and version, is this
    very event, with this link: what :func:`read_row` would make of those bytes."""
    event.__dict__[_ROW] = (id(event), topic, data, link)


def sealed_link(event: Aggregate.Event) -> Link:
    """The link of an event as it was sealed: its digest is the hash of the state stored
    (only for bytes encoded from that very state, ``Aggregate.Event.sealed()``)."""
    return Link(event.originator_version, event.prev_hash, event.digest, event.digest)


def _remembered(event: Aggregate.Event, stored: StoredEvent) -> Link | None:
    """The event's link, if ``stored`` is the row it remembers being stored as."""
    row = event.__dict__.get(_ROW)
    if row is None or row[0] != id(event):  # none, or a copy's (another object)
        return None
    if not (
        row[1] == stored.topic
        and row[2] == stored.state
        and event.originator_version == stored.originator_version
    ):
        return None
    originator_id = stored.originator_id  # a UUID, or its text (as some recorders give it)
    if type(originator_id) is not UUID:
        originator_id = UUID(str(originator_id))
    return row[3] if originator_id == event.originator_id else None


@dataclass(frozen=True)
class StoredTail:
    """An agent's stored events from version ``since`` to its head, as read in one go."""

    since: int
    rows: tuple[StoredRow, ...]

    def rows_for(self, since: int, head: int) -> list[StoredRow] | None:
        """The rows from ``since`` to ``head``, if this read covers them and ended there."""
        if since < self.since or not self.rows or self.rows[-1].version != head:
            return None
        return [row for row in self.rows if row.version >= since]


def chained(agent: Aggregate, rows: Iterable[StoredRow]) -> list[Aggregate.Event]:
    """The rows' events, each checked against its stored bytes, linked in order, the last
    one being the agent's head; raises :class:`BrokenChainError` naming the first that fails."""
    links, events = ChainLinks(), []
    head = None
    for row in rows:
        if row.link is None:
            row.fail()  # an undecodable row fails first, as it always did
        broken = None
        try:
            head = links.follow(row.link)
        except ValueError as e:
            broken = str(e)
        event = row.decoded()  # an unfit row fails before its broken link
        if broken is not None:
            raise BrokenChainError(agent.id, row.version, type(event).__name__, broken)
        events.append(event)
    if head != agent.head_hash or links.prev_version != agent.version:
        reason = "the stored events do not end at the agent's head (edited or missing)"
        raise BrokenChainError(agent.id, agent.version, type(agent).__name__, reason)
    return events
