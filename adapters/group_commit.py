"""Group commit: saves made at once by several threads share one transaction (one fsync).

A recorder wrapper around the application's own (eventsourcing's SQLite or PostgreSQL
recorder, or eventsourcing_sqlalchemy's). Leader and followers, no added wait: a save
queues its events; if no commit is under way it leads at once, taking everything queued
and inserting it through the inner recorder in ONE call (one transaction); saves that
arrive meanwhile queue up, and the first of them leads the next commit as soon as this
one ends. Each save gets its own notification ids back.

What each save keeps, with or without group commit:

- its events are atomic and in order (a batch is one transaction; members keep their order);
- it returns only once its events are durable (committed), so a claim (``ToolStarted``)
  is stored before its tool runs;
- it fails only for its own reasons: a batch that fails (one agent's version conflict,
  or anything else) is retried member by member, each alone, so every other member lands
  and the failing one raises the same exception it would have raised alone. Except an
  outage (the database unreachable, or locked past its timeout): every member would meet
  it alone too, so each gets it at once instead of waiting for it once per member.

On a sharded store (``init --shards S``) each shard has a queue of its own, so a batch
takes one shard's table lock and saves in other shards commit beside it; a save whose
events are in several shards is committed alone (one transaction over those shards).

Everything but ``insert_events`` (reads, ``max_notification_id``, subscriptions, the
PostgreSQL ``channel_name``, the datastore) goes straight to the inner recorder.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

from eventsourcing.application import Application
from eventsourcing.persistence import (
    AggregateRecorder,
    ApplicationRecorder,
    Notification,
    Recorder,
    StoredEvent,
    Subscription,
)

from agentlog.projections.outages import is_outage

__all__ = ["GroupCommit", "GroupCommitApplication", "install", "unwrapped"]
log = logging.getLogger(__name__)


class _Member:
    """One save waiting in a batch: its events, then its outcome."""

    __slots__ = ("error", "events", "ids", "turn")

    def __init__(self, events: Sequence[StoredEvent]) -> None:
        self.events = events
        self.ids: Sequence[int] | None = None
        self.error: BaseException | None = None
        # Released when done, or when made the next leader: a bare lock, held from the
        # start (an Event is a Condition and two locks more to make and to notify).
        self.turn = threading.Lock()
        self.turn.acquire()

    def outcome(self) -> Sequence[int] | None:
        if self.error is not None:
            raise self.error
        return self.ids


class _Lane:
    """The saves waiting for one events table (a shard's), and whether one leads."""

    __slots__ = ("leading", "lock", "queue")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.queue: list[_Member] = []
        self.leading = False


class GroupCommit(AggregateRecorder):
    """Batches concurrent ``insert_events`` calls into one transaction of ``inner``."""

    def __init__(self, inner: AggregateRecorder) -> None:
        self.inner = inner
        self._lanes: dict[int, _Lane] = {}
        self._lanes_lock = threading.Lock()
        self._shard_of: Callable[[Any], int] | None = getattr(inner, "shard_of", None)
        self.saves = 0
        """Saves stored through this wrapper (for benchmarks and operators)."""
        self.commits = 0
        """Transactions it asked the inner recorder for: saves / commits is the batching."""

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        """Store the events with whatever else is being saved now; return their ids."""
        if not stored_events:
            return self.inner.insert_events(stored_events, **kwargs)
        if any(value is not None for value in kwargs.values()):
            return self._alone(stored_events, **kwargs)  # tracking: not batched
        lane = self._lane_of(stored_events)
        if lane is None:  # one save in several shards: its own transaction, as without us
            return self._alone(stored_events)
        member = _Member(stored_events)
        with lane.lock:
            lane.queue.append(member)
            lead, lane.leading = not lane.leading, True
        if not lead:
            member.turn.acquire()  # until the leader releases it
            if member.ids is not None or member.error is not None:
                return member.outcome()  # done; else it was made the next leader
        self._lead(lane)
        return member.outcome()

    @property
    def waiting(self) -> int:
        """Saves queued behind a commit under way (in every shard's queue)."""
        with self._lanes_lock:
            lanes = list(self._lanes.values())
        return sum(len(lane.queue) for lane in lanes)

    @property
    def committing(self) -> bool:
        """Whether a save leads a commit now (in any shard's queue)."""
        with self._lanes_lock:
            lanes = list(self._lanes.values())
        return any(lane.leading for lane in lanes)

    def _lane_of(self, stored_events: Sequence[StoredEvent]) -> _Lane | None:
        """The queue of the shard the events are in (one lane for an unsharded store), so
        that a batch takes one shard's lock and saves of other shards do not wait on it;
        None for a save whose events are in several shards."""
        key = 0
        if self._shard_of is not None:
            shards = {self._shard_of(event.originator_id) for event in stored_events}
            if len(shards) > 1:
                return None
            (key,) = shards
        with self._lanes_lock:
            lane = self._lanes.get(key)
            if lane is None:
                lane = self._lanes[key] = _Lane()
            return lane

    def _lead(self, lane: _Lane) -> None:
        """Commit everything queued in the lane, then hand its lead to the next waiting save."""
        with lane.lock:
            batch, lane.queue = lane.queue, []
        try:
            self._commit(batch)
        except BaseException as e:  # e.g. KeyboardInterrupt: nobody waits forever
            for member in batch:
                if member.ids is None and member.error is None:
                    member.error = e
            raise
        finally:
            for member in batch:
                member.turn.release()  # once each: the leader's own was held since made
            with lane.lock:
                if lane.queue:
                    lane.queue[0].turn.release()  # it leads next (it is not done)
                else:
                    lane.leading = False

    def _commit(self, batch: list[_Member]) -> None:
        if len(batch) > 1:
            error = self._together(batch)
            if error is None:
                return
            if is_outage(error):  # the database is out of reach: alone, each would wait
                for member in batch:  # for it again; the caller waits the outage out once
                    member.error = error
                return
        for member in batch:
            try:
                member.ids = self._alone(member.events) or ()
            except Exception as e:
                member.error = e

    def _alone(self, events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        self.commits += 1
        ids = self.inner.insert_events(events, **kwargs)
        self.saves += 1
        return ids

    def _together(self, batch: list[_Member]) -> Exception | None:
        """One transaction for the whole batch; what failed it (then none of it is stored)."""
        self.commits += 1
        try:
            ids = self.inner.insert_events([e for member in batch for e in member.events])
        except Exception as e:
            log.debug("a batch of %d saves failed (%s)", len(batch), e)
            return e
        _split(batch, ids)
        self.saves += len(batch)
        return None

    def select_events(
        self,
        originator_id: Any,
        *,
        gt: int | None = None,
        lte: int | None = None,
        desc: bool = False,
        limit: int | None = None,
    ) -> Sequence[StoredEvent]:
        """The inner recorder's."""
        return self.inner.select_events(originator_id, gt=gt, lte=lte, desc=desc, limit=limit)

    def __getattr__(self, name: str) -> Any:
        """Anything else (datastore, channel_name, table names, ...) is the inner one's."""
        return getattr(self.__dict__["inner"], name)


class GroupCommitApplication(GroupCommit, ApplicationRecorder):
    """:class:`GroupCommit` around an application recorder (it has a notification log)."""

    inner: ApplicationRecorder

    def __init__(self, inner: ApplicationRecorder) -> None:
        super().__init__(inner)

    def select_notifications(
        self,
        start: int | None,
        limit: int,
        stop: int | None = None,
        topics: Sequence[str] = (),
        *,
        inclusive_of_start: bool = True,
    ) -> Sequence[Notification]:
        """The inner recorder's."""
        return self.inner.select_notifications(
            start, limit, stop, topics, inclusive_of_start=inclusive_of_start
        )

    def max_notification_id(self) -> int | None:
        """The inner recorder's."""
        return self.inner.max_notification_id()

    def subscribe(
        self, gt: int | None = None, topics: Sequence[str] = ()
    ) -> Subscription[ApplicationRecorder]:
        """The inner recorder's."""
        return self.inner.subscribe(gt, topics)


def _split(batch: list[_Member], ids: Sequence[int] | None) -> None:
    """Give each member its own slice of the batch's notification ids."""
    start = 0
    for member in batch:
        end = start + len(member.events)
        member.ids = ids[start:end] if ids else ()
        start = end


def install(app: Application[Any]) -> None:
    """Make ``app``'s saves (events and snapshots) group-committed; idempotent."""
    if not isinstance(app.recorder, GroupCommit):
        wrapped = GroupCommitApplication(app.recorder)
        app.recorder = wrapped
        app.events.recorder = wrapped
        app.notification_log.recorder = wrapped
    if app.snapshots is not None and not isinstance(app.snapshots.recorder, GroupCommit):
        app.snapshots.recorder = GroupCommit(app.snapshots.recorder)


def unwrapped(recorder: Recorder) -> Recorder:
    """The recorder itself, or the one a :class:`GroupCommit` wraps."""
    return recorder.inner if isinstance(recorder, GroupCommit) else recorder
