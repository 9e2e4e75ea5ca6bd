"""The newest stored events of an agent, read once for the fast-forward and the call check.

A worker's tool step needs two things from the store: the events others stored after
the agent it keeps (its fast-forward), and the events the call check rests on (from the
model's response that asked for the call to the agent's head), checked against their
stored bytes. Both are the newest events of one agent, so one read serves both:
``AgentLog.take`` reads from the call check's version, applies the events past the kept
version, and keeps the rows it read for ``AgentLog.chained_events`` of that very agent,
while it is unchanged. Each row is decoded and hashed from the bytes read in this step,
so the check sees what a read of its own would have seen: an edit of the store is caught.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NoReturn, Protocol

from eventsourcing.persistence import StoredEvent

from agentlog.domain.aggregate import Aggregate
from agentlog.domain.chain import ChainLinks, Link
from agentlog.domain.errors import BrokenChainError

__all__ = ["StateDecoder", "StoredRow", "StoredTail", "chained", "read_row"]


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


def read_row(mapper: StateDecoder, stored: StoredEvent) -> StoredRow:
    """A stored event decoded once: hashed as stored, then made an event (upcast)."""
    version = stored.originator_version
    try:
        state = mapper.decode_state(stored)
    except Exception as e:  # kept: raised when the row is used
        return StoredRow(version, None, None, e)
    link = Link.of(stored.topic, str(stored.originator_id), version, state)
    try:
        return StoredRow(version, link, mapper.event_from_state(stored, state))
    except Exception as e:  # kept: raised when the row is used
        return StoredRow(version, link, None, e)


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
