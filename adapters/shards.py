"""A PostgreSQL store in several shards: one events table (and table lock) per shard.

eventsourcing's PostgreSQL recorder locks the events table on every insert, so that
notification ids are given in commit order; with one table, every worker's save waits
on that one lock. A store made with ``agentlog init --shards S`` keeps S events tables:
shard 0 is the table of a store without shards (``agentlog_events``), shard k > 0 is
``agentlog_sK_events``, each with its own notification sequence, lock and NOTIFY
channel. An aggregate lives in shard ``id.int % S`` (:func:`~agentlog.domain.shards.shard_of`).

:class:`ShardedRecorder` is the application's recorder: it routes each event by its
aggregate's id, so the application, the runtime and the CLI need not know. Snapshots
stay in one table (inserting a snapshot takes no table lock).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import (
    ApplicationRecorder,
    InterfaceError,
    Notification,
    OperationalError,
    StoredEvent,
    Subscription,
)
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresFactory
from eventsourcing.utils import retry

from agentlog.domain.shards import SHARDS_KEY, global_position, shard_of


def events_table(application: str, shard: int) -> str:
    """The events table of one shard (shard 0's is the table of an unsharded store)."""
    prefix = application.lower()
    return f"{prefix}_events" if shard == 0 else f"{prefix}_s{shard}_events"


class ShardedRecorder(ApplicationRecorder):
    """The recorders of every shard, behind the one interface the application uses.

    Writes and reads of one aggregate go to its shard. ``insert_events`` (the only
    write) stores a batch of several shards' events in one transaction that locks the
    shards' tables in shard order (so two batches never deadlock): atomic as before.
    ``select_notifications`` reads every shard in one order (positions
    ``local * S + shard``), for reading the whole log as it is; to follow the log as
    it grows, follow each shard (:func:`~agentlog.domain.shards.log_shards`): a merged
    position would pass over events a slower shard commits later.
    """

    def __init__(self, shards: Sequence[PostgresApplicationRecorder]) -> None:
        self.shards = list(shards)

    def shard_of(self, originator_id: UUID | str) -> int:
        """The shard of an aggregate."""
        return shard_of(originator_id, len(self.shards))

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        """Store the events, each in its aggregate's shard; their positions, in order."""
        count = len(self.shards)
        shard_of_event = [self.shard_of(e.originator_id) for e in stored_events]
        touched = sorted(set(shard_of_event))
        if len(touched) == 1:
            (shard,) = touched
            ids = self.shards[shard].insert_events(stored_events, **kwargs)
            return None if ids is None else [global_position(i, shard, count) for i in ids]
        if not touched:
            return []
        local = self._insert_in_one_transaction(self._split(stored_events))
        found = {k: iter(ids) for k, ids in local.items()}
        return [global_position(next(found[s]), s, count) for s in shard_of_event]

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def _insert_in_one_transaction(
        self, by_shard: dict[int, list[StoredEvent]]
    ) -> dict[int, list[int]]:
        datastore = self.shards[0].datastore
        ids: dict[int, list[int]] = {}
        with datastore.get_connection() as conn, conn.transaction(), conn.cursor() as curs:
            for shard in sorted(by_shard):  # one order of locks: no deadlock
                recorder = self.shards[shard]
                recorder._insert_stored_events(curs, by_shard[shard])
                ids[shard] = [row["notification_id"] for row in curs.fetchall()]
        return ids

    def insert_batches(self, batches: Iterable[Sequence[StoredEvent]]) -> int:
        """Write every batch in one transaction (an import: all or nothing), holding
        every shard's lock, taken in shard order; return how many events were written."""
        written = 0
        datastore = self.shards[0].datastore
        with datastore.get_connection() as conn, conn.transaction(), conn.cursor() as curs:
            for recorder in self.shards:
                recorder._lock_table(curs)
            for batch in batches:
                for shard, events in self._split(batch).items():
                    self.shards[shard]._insert_stored_events(curs, events)
                written += len(batch)
        return written

    def _split(self, stored_events: Sequence[StoredEvent]) -> dict[int, list[StoredEvent]]:
        """The events of each shard, in their order."""
        by_shard: dict[int, list[StoredEvent]] = {}
        for event in stored_events:
            by_shard.setdefault(self.shard_of(event.originator_id), []).append(event)
        return by_shard

    def select_events(
        self,
        originator_id: UUID | str,
        *,
        gt: int | None = None,
        lte: int | None = None,
        desc: bool = False,
        limit: int | None = None,
    ) -> Sequence[StoredEvent]:
        """An aggregate's events, from its shard."""
        recorder = self.shards[self.shard_of(originator_id)]
        found: Sequence[StoredEvent] = recorder.select_events(
            originator_id, gt=gt, lte=lte, desc=desc, limit=limit
        )
        return found

    def select_notifications(
        self,
        start: int | None,
        limit: int,
        stop: int | None = None,
        topics: Sequence[str] = (),
        *,
        inclusive_of_start: bool = True,
    ) -> Sequence[Notification]:
        """Every shard's notifications from ``start`` on, in the order of their merged
        positions; a page may be shorter than ``limit`` before the end (read on until
        a page is empty)."""
        count = len(self.shards)
        first = 1 if start is None else start + (0 if inclusive_of_start else 1)
        each = max(1, -(-limit // count))
        found: list[Notification] = []
        cutoff: int | None = None  # shards that may hold more start after this
        for shard, recorder in enumerate(self.shards):
            low = max(1, -(-(first - shard) // count))
            high = None if stop is None else (stop - shard) // count
            if high is not None and high < low:
                continue
            page = recorder.select_notifications(low, each, high, topics)
            found += [dataclasses.replace(n, id=global_position(n.id, shard, count)) for n in page]
            if len(page) == each:
                last = global_position(page[-1].id, shard, count)
                cutoff = last if cutoff is None else min(cutoff, last)
        found.sort(key=lambda n: n.id)
        if cutoff is not None:
            found = [n for n in found if n.id <= cutoff]
        return found[:limit]

    def max_notification_id(self) -> int | None:
        """The highest merged position of any shard (None if the log is empty)."""
        count = len(self.shards)
        heads = [(r.max_notification_id(), k) for k, r in enumerate(self.shards)]
        return max((global_position(h, k, count) for h, k in heads if h), default=None)

    def subscribe(
        self, gt: int | None = None, topics: Sequence[str] = ()
    ) -> Subscription[ApplicationRecorder]:
        """Not offered: subscribe to each shard's recorder instead."""
        msg = "a sharded store has one notification log per shard: subscribe to each"
        raise NotImplementedError(msg)


class ShardedPostgresFactory(PostgresFactory):
    """eventsourcing's PostgreSQL factory, making a :class:`ShardedRecorder`."""

    def application_recorder(self) -> ApplicationRecorder:
        """One recorder per shard, on one connection pool (tables made if missing)."""
        count = int(self.env.get(SHARDS_KEY) or "1")
        first = super().application_recorder()
        assert isinstance(first, PostgresApplicationRecorder)
        shards = [first]
        for shard in range(1, count):
            table = events_table(self.env.name or "stored", shard)
            recorder = type(first)(self.datastore, events_table_name=table)
            if self.env_create_table():
                recorder.create_table()
            shards.append(recorder)
        return ShardedRecorder(shards)
