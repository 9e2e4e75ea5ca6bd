"""Agents a worker keeps in memory between steps, handed over instead of copied.

A worker loads the same agents step after step. The library's aggregate cache copies an
agent in on every save and out on every load, so that what a caller changes never
reaches what the cache keeps. Here each kept agent has exactly one holder at a time,
and a copy is made only when that cannot be told:

* the cache holds it (``release``): the next ``borrow`` hands over that very object;
* a thread holds it (``lend``, or a save): a ``borrow`` from the same thread gets a
  copy (the holder may go on reading it), one from another thread gets nothing (it
  loads from the store: an object another thread may be changing is never copied).

An entry is valid only while its object is still at the version it was stored at,
with no pending events: an agent changed and not saved, or whose save failed (its
events were collected, its version moved on), is dropped, never handed out again.
Whoever borrows brings the agent up to date with the events stored after it.

A thread may lend itself an agent together with the stored events it read for it in
the same go (a :class:`~agentlog.domain.stored_tail.StoredTail`, for the call check of
this step): they are handed out once, and only while that thread still holds that very
agent, unchanged since it was stored.

The last events stored of each kept agent are kept too (those this process saved, and
those a fast-forward read): the model's context is built from them without reading
them back (``AgentLog.recent_events``). The log is append-only, so an event stored at
a version stays the one at that version.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from copy import deepcopy
from uuid import UUID

from agentlog.domain.aggregate import Aggregate
from agentlog.domain.stored_tail import StoredTail

_Entry = tuple[Aggregate, int, int | None, StoredTail | None]
"""The agent, the version it was stored at, the id of the thread holding it (None: the
cache holds it), and the stored events read with it for that thread's step."""
RECENT = 16
"""Stored events kept per agent, the latest (a model step needs those since the last one:
its calls, their claims and outcomes; beyond this many, they are read)."""
_me = threading.get_ident


class KeptAggregates:
    """A bounded, thread-safe store of agents as they were stored, by id (LRU).

    Entries are keyed by the id's 128-bit number (``UUID.int``): a ``UUID`` hashes in
    Python, and a step looks an agent up here a dozen times."""

    def __init__(self, maxsize: int = 0) -> None:
        self.maxsize = maxsize
        """How many agents are kept (0: no limit)."""
        self._entries: OrderedDict[int, _Entry] = OrderedDict()
        self._recent: OrderedDict[int, list[Aggregate.Event]] = OrderedDict()
        self._lock = threading.Lock()

    def borrow(self, agent_id: UUID) -> Aggregate | None:
        """The kept agent, now the caller's alone (the object itself, or a copy when this
        thread still holds it); None if none is kept, or another thread holds it."""
        key = agent_id.int
        with self._lock:
            entry = self._entries.pop(key, None)
            if entry is None:
                return None
            holder = entry[2]
            if holder is not None and holder != _me():
                self._entries[key] = entry  # another thread's: leave it alone
                return None
        if not _as_stored(entry):
            return None
        return entry[0] if holder is None else deepcopy(entry[0])

    def lend(self, aggregate: Aggregate, tail: StoredTail | None = None) -> None:
        """Note that this thread holds the aggregate, as stored at its version (with the
        stored events read with it, for :meth:`tail_of`)."""
        with self._lock:
            self._enter(aggregate, _me(), tail)

    def tail_of(self, aggregate: Aggregate) -> StoredTail | None:
        """The stored events read with the aggregate when it was lent to this thread, once;
        None if there are none, or it changed since, or it is not this thread's."""
        key = aggregate.id.int
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry[0] is not aggregate or entry[2] != _me():
                return None
            if entry[3] is None:
                return None
            self._entries[key] = (entry[0], entry[1], entry[2], None)
        return entry[3] if _as_stored(entry) else None

    def saved(self, aggregate: Aggregate, events: Sequence[Aggregate.Event] = ()) -> None:
        """Note that this thread stored the aggregate at its version (and still holds it),
        with the ``events`` it stored (as :meth:`stored`)."""
        with self._lock:
            if events:
                self._store(aggregate.id.int, events)
            self._enter(aggregate, _me(), None)

    def keep(self, aggregate: Aggregate) -> None:
        """Hand an aggregate this thread holds back to the cache, if it is as stored.

        An aggregate this thread neither borrowed nor saved, or one changed since, is
        not kept (an entry it had is dropped)."""
        key = aggregate.id.int
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry[0] is not aggregate or entry[2] != _me():
                return
            if _as_stored(entry):
                self._entries[key] = (aggregate, entry[1], None, None)
            else:
                del self._entries[key]

    def put(self, aggregate: Aggregate) -> None:
        """Keep an aggregate nobody else holds (one just loaded or brought up to date)."""
        with self._lock:
            self._enter(aggregate, None, None)

    def stored(self, agent_id: UUID, events: Sequence[Aggregate.Event]) -> None:
        """Note events stored for the agent, in version order (saved, or read back)."""
        if not events:
            return
        with self._lock:
            self._store(agent_id.int, events)

    def recent(self, agent_id: UUID) -> Recent:
        """The agent's last stored events kept here (those noted by :meth:`stored`)."""
        with self._lock:
            return Recent(self._recent.get(agent_id.int, ()))

    def between(self, agent_id: UUID, after: int, upto: int) -> list[Aggregate.Event] | None:
        """The agent's stored events after version ``after`` up to ``upto``, if all of
        them are kept; else None."""
        with self._lock:
            recent = self._recent.get(agent_id.int)
        if not recent or recent[0].originator_version > after + 1:
            return None
        if recent[-1].originator_version < upto:
            return None
        return [e for e in recent if after < e.originator_version <= upto]

    def _enter(self, aggregate: Aggregate, holder: int | None, tail: StoredTail | None) -> None:
        """(With the lock held.) Keep the aggregate as stored at its version."""
        entries = self._entries
        key = aggregate.id.int
        entries[key] = (aggregate, aggregate.version, holder, tail)
        entries.move_to_end(key)
        if self.maxsize:
            while len(entries) > self.maxsize:
                entries.popitem(last=False)

    def _store(self, key: int, events: Sequence[Aggregate.Event]) -> None:
        """(With the lock held.) Note events stored for the agent (as :meth:`stored`)."""
        before = self._recent.pop(key, None)
        if before and before[-1].originator_version + 1 == events[0].originator_version:
            kept = [*before, *events]  # a new list: never changed
            self._recent[key] = kept[-RECENT:] if len(kept) > RECENT else kept
        else:  # none yet, or a gap: what others stored between was not seen here
            self._recent[key] = list(events[-RECENT:])
        if self.maxsize:
            while len(self._recent) > self.maxsize:
                self._recent.popitem(last=False)


class Recent:
    """An agent's last stored events kept in memory, one per version, in order."""

    __slots__ = ("events",)

    def __init__(self, events: Sequence[Aggregate.Event]) -> None:
        self.events = events

    def at(self, version: int) -> Aggregate.Event | None:
        """The event at ``version``, if it is kept."""
        if not self.events:
            return None
        index = version - self.events[0].originator_version
        return self.events[index] if 0 <= index < len(self.events) else None


NOTHING_KEPT = Recent(())
"""What is kept of an agent where nothing is."""


def _as_stored(entry: _Entry) -> bool:
    """Whether the entry's aggregate is still as it was stored (not changed since)."""
    aggregate, version = entry[0], entry[1]
    return aggregate.version == version and not aggregate.pending_events
