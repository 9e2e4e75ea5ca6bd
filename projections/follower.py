"""Following the log in one pass: each batch of notifications is read and decoded once
and applied to every build followed, in one transaction that also moves each build's
position by compare-and-set (``catalog.advance``), so a batch is applied exactly once.

- Builds stand at different positions (a new build starts at 0 while the others are at
  the head): the pass reads from the lowest and gives each build the events after its
  own position.
- A staged view keeps its work in memory across batches and writes it when it flushes,
  moving its position in that same transaction: until then its tables and its position
  stay where they were, so a crash only loses work that is done again.
- A handler that raises stops its own build alone: the transaction is rolled back, the
  failure recorded, and the batch redone without it (the others forget what they kept
  in memory since their last flush and go on from their positions).
- Several followers of one build are safe together: a batch is applied only by the
  follower whose compare-and-set succeeds; the others re-read the position and go on.
  A view may read rows another follower wrote after this one read the position (then
  its handler may fail on rows newer than its batch): a handler that fails on a build
  that moved meanwhile has lost that race, not failed; it goes on from the new position.
- A log in several shards (:mod:`agentlog.domain.shards`) is followed shard after
  shard, each with its own positions (``catalog.advance`` per build and shard) and its
  own copy of each view's memory (an agent's events are all in one shard, so the copies
  keep different agents). Views see each event at its position among all shards
  (``global_position``), so rows from different shards never share a position.
- The database going away is not a view's failure: such errors (``is_outage``) pass
  through unrecorded, and the caller tries again later from the positions.
- An event whose topic names no class in this process (a user's own aggregate, read
  without its module) is skipped by every build, and counted with the position it
  moves past; so is an event a view says it does not keep (``View.skipped``). An event
  that cannot be read for any other reason (corrupt, wrong key) stops the builds instead.
"""

from __future__ import annotations

import logging
import threading
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast
from uuid import UUID

from eventsourcing.persistence import ApplicationRecorder, Notification
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from agentlog.domain import AgentError, AgentLog, Aggregate, DamagedHistoryError, UnknownTopicError
from agentlog.domain.history import MISSING
from agentlog.domain.shards import global_position, log_shards
from agentlog.projections import catalog
from agentlog.projections.catalog import BUILDING, Build
from agentlog.projections.collector import fewer_collections
from agentlog.projections.errors import CatchUpStoppedError, ViewFailedError
from agentlog.projections.outages import is_outage
from agentlog.projections.seal import Seal
from agentlog.projections.view import Positioned, View

log = logging.getLogger(__name__)
Progress = Callable[[int, int], None]
Stop = Callable[[], bool]
REBUILD_BATCHES = 100
"""A build being built (nobody reads it yet) keeps up to this many batches in memory;
a serving build writes every batch."""


@dataclass(eq=False)
class _Track:
    """One build followed: its view, and where its tables and its memory stand."""

    view: View
    keeps: int  # staged events kept in memory at most: 1 = write every batch
    committed: int  # the build's position in the catalog: its tables are as of here
    applied: int  # where the view's memory is (staged work from committed to applied)
    shard: int = 0  # the shard of the log followed (positions are that shard's)
    error: ViewFailedError | None = None
    skipped: int = 0  # events skipped since committed, counted when it next commits
    unknown: str | None = None  # the last unknown topic among them

    def rewind(self, position: int) -> None:
        self.view.reset(position)
        self.committed = self.applied = position
        self.skipped, self.unknown = 0, None

    def count_skips(self, conn: Connection) -> None:
        """Add the events skipped since committed to the build's count."""
        catalog.add_skipped(conn, self.view.build, self.skipped, self.unknown)

    def advance(self, conn: Connection, new: int) -> bool:
        """Move the build's position in its shard from ``committed`` (compare-and-set)."""
        build, old = self.view.build, self.committed
        return catalog.advance(conn, build, old, new, self.shard, clear=False)


@dataclass(frozen=True)
class _Batch:
    """Notifications read and decoded: the events, and those no class is known for."""

    events: list[Positioned]  # at their positions among all shards
    ids: list[int]  # the events' positions in the shard followed
    unknown: list[tuple[int, str]]  # position and topic
    last: int  # the last position the batch covers


class _HandlerError(Exception):
    """A view's own code (process or flush) raised."""

    def __init__(self, track: _Track, cause: Exception) -> None:
        super().__init__(str(cause))
        self.track, self.cause = track, cause


def _handle(track: _Track, action: Callable[..., None], *args: Any) -> None:
    try:
        action(*args)
    except Exception as e:
        if is_outage(e):
            raise  # the database, not the view: nothing to record, try again later
        raise _HandlerError(track, e) from e


class Follower:
    """Keeps builds of views up to date with the log, reading and decoding it once for
    all of them; keeps each view (and what it holds in memory) between catch-ups."""

    def __init__(self, app: AgentLog, engine: Engine) -> None:
        self.app, self.engine = app, engine
        self.seal = Seal(app.mapper.cipher)
        self._tracks: dict[tuple[int, int], _Track] = {}  # per build and shard
        self._sharded: set[int] = set()  # builds known to have a position in every shard
        self._busy = threading.Lock()

    def follow(
        self,
        builds: Sequence[tuple[type[View], Build]],
        batch_size: int,
        progress: Progress | None = None,
        stop: Stop | None = None,
    ) -> list[ViewFailedError]:
        """Bring these builds to the head of the log; the failures of those that stopped.

        ``stop`` is asked after each batch: once it says yes, what the views keep is
        written and :class:`CatchUpStoppedError` raised (the positions stand there).
        """
        if not self._busy.acquire(blocking=False):
            # Another thread's pass (or this thread's, from a progress callback) is using
            # the views kept: follow with views of its own, that keep nothing after.
            return Follower(self.app, self.engine).follow(builds, batch_size, progress, stop)
        try:
            shards = log_shards(self.app.recorder)
            new = [b.build for _, b in builds if b.build not in self._sharded]
            if len(shards) > 1 and new:
                catalog.add_shards(self.engine, new, len(shards))
                self._sharded.update(new)
            heads = [r.max_notification_id() or 0 for r in shards] if progress else []
            failed: dict[int, ViewFailedError] = {}
            for shard, recorder in enumerate(shards):
                todo = [(cls, b) for cls, b in builds if b.build not in failed]
                tracks = self._start(todo, batch_size, shard)
                try:
                    with fewer_collections():
                        part = _part(progress, heads, shard)
                        self._pass(tracks, recorder, batch_size, part, stop)
                except CatchUpStoppedError:
                    raise  # written up to where it stopped: the memory matches the tables
                except BaseException:
                    for track in tracks:  # its memory may not match its tables: start afresh
                        self._tracks.pop((track.view.build, shard), None)
                    raise
                failed.update({t.view.build: t.error for t in tracks if t.error is not None})
            return list(failed.values())
        finally:
            self._busy.release()

    def forget(self, build: int) -> None:
        """Stop keeping a build's view (it was retired or dropped)."""
        for key in [key for key in self._tracks if key[0] == build]:
            del self._tracks[key]

    def _start(
        self, builds: Sequence[tuple[type[View], Build]], batch_size: int, shard: int
    ) -> list[_Track]:
        with self.engine.connect() as conn:
            positions = catalog.positions(conn, [b.build for _, b in builds], shard)
        tracks: list[_Track] = []
        fresh: list[_Track] = []  # new views at the start of the log: may share memory
        for cls, build in builds:
            position, track = positions[build.build], self._tracks.get((build.build, shard))
            keeps = batch_size * REBUILD_BATCHES if build.status == BUILDING else 1
            if track is None:
                view = cls(build.build, self.seal)
                track = _Track(view, keeps, position, position, shard)
                self._tracks[build.build, shard] = track
                track.view.reset(position)
                if position == 0:
                    self._share(track, fresh)
            elif track.committed != position or track.error is not None:
                track.rewind(position)  # another follower moved it, or it failed
            track.error, track.keeps = None, keeps
            tracks.append(track)
        return tracks

    @staticmethod
    def _share(track: _Track, fresh: list[_Track]) -> None:
        """Let a new view read the memory of one like it that starts with it, if any."""
        for other in fresh:
            if other.keeps == track.keeps and track.view.share_memory_with(other.view):
                return
        fresh.append(track)

    def _pass(
        self,
        tracks: list[_Track],
        recorder: ApplicationRecorder,
        batch_size: int,
        progress: Progress | None,
        stop: Stop | None = None,
    ) -> None:
        while live := [t for t in tracks if t.error is None]:
            low = min(t.applied for t in live)
            notifications = recorder.select_notifications(low + 1, batch_size)
            if not notifications:
                if self._flush(live):
                    return
                continue
            batch, bad = self._decode(notifications, live)
            if batch is not None and not self._apply(live, batch):
                continue  # a view failed: the batch is read again without it
            if bad is not None and self._flush(live):
                self._stop_before(live, *bad)
            if progress and (live := [t for t in tracks if t.error is None]):
                head = recorder.max_notification_id() or 0
                progress(min(t.applied for t in live), head)
            # A short batch was the head (ids are handed out in commit order): no read
            # is needed to find that nothing follows it.
            at_head = len(notifications) < batch_size and bad is None
            if not (at_head or (stop is not None and stop())):
                continue
            if self._flush([t for t in tracks if t.error is None]):
                if at_head:
                    return
                raise CatchUpStoppedError

    def _decode(
        self, notifications: Sequence[Notification], live: list[_Track]
    ) -> tuple[_Batch | None, tuple[int, AgentError] | None]:
        """The batch up to the first event that cannot be read (none if that is the
        first), with the events some view handles decoded and those of unknown topics
        set aside, to be skipped; and the event that cannot be read."""
        decode = self.app.mapper.to_domain_event
        wanted = self._wanted(live)
        shard, shards = live[0].shard, len(log_shards(self.app.recorder))
        events: list[Positioned] = []
        ids: list[int] = []
        unknown: list[tuple[int, str]] = []
        bad: tuple[int, AgentError] | None = None
        last = None
        add_event, add_id = events.append, ids.append
        for notification in notifications:
            position = notification.id
            try:
                if wanted(notification):
                    event = cast(Aggregate.Event, decode(notification))
                    at = position if shards == 1 else global_position(position, shard, shards)
                    add_event((at, event))
                    add_id(position)
            except UnknownTopicError as e:
                unknown.append((position, e.topic))
            except AgentError as e:
                bad = (position, e)
                break
            last = position
        if last is None:
            return None, bad
        return _Batch(events, ids, unknown, last), bad

    def _wanted(self, live: list[_Track]) -> Callable[[Notification], bool]:
        """Whether a stored event is one that a view among ``live`` handles (known from
        its topic alone; with a mapper that cannot tell, every event is). Raises
        :class:`UnknownTopicError` for a topic that names no class."""
        classify = getattr(self.app.mapper, "event_class", None)
        views = tuple({type(t.view) for t in live})
        if classify is None:
            return lambda _: True
        verdicts: dict[str, bool | None] = {}  # None: the topic names no class
        known = verdicts.get

        def wanted(notification: Notification) -> bool:
            verdict = known(notification.topic)
            if verdict is not None:
                return verdict
            topic = notification.topic
            if topic not in verdicts:
                try:
                    cls = classify(notification)
                except UnknownTopicError:
                    verdicts[topic] = None  # an import is tried once a batch, not per event
                    raise
                verdicts[topic] = any(v.handles(cls) for v in views)
            verdict = verdicts[topic]
            if verdict is None:
                raise UnknownTopicError(
                    notification.originator_id, notification.originator_version, topic
                )
            return verdict

        return wanted

    def _stop_before(self, live: list[_Track], position: int, cause: AgentError) -> None:
        """Every build that still has to apply an event that cannot be read stops."""
        for track in live:
            if track.applied < position:
                track.error = self._failed(track, cause)

    def _apply(self, live: list[_Track], batch: _Batch) -> bool:
        """Apply a batch to every build that needs it, in one transaction; False if a
        view failed (the others were rewound to their positions)."""
        with self.engine.connect() as conn:
            try:
                done, moved = self._process(conn, live, batch)
                flushing = [t for t in live if t.view.staged and self._wants_flush(t)]
                self._write(conn, flushing, done, moved)
                _clear_errors(conn, done)
                conn.commit()
            except _HandlerError as e:
                conn.rollback()
                if not self._raced(e, live):
                    self._isolate(e, live)
                return False
        return self._committed(done, moved)

    def _raced(self, error: _HandlerError, live: list[_Track]) -> bool:
        """Whether the failing build moved meanwhile (another follower applied the batch
        first); if so, it goes on from there and the others from their positions."""
        build = error.track.view.build
        with self.engine.connect() as conn:
            found = catalog.positions(conn, [build], error.track.shard)
            position = found.get(build, error.track.committed)
        if position == error.track.committed:
            return False
        for track in live:
            track.rewind(position if track is error.track else track.committed)
        return True

    def _process(
        self, conn: Connection, live: list[_Track], batch: _Batch
    ) -> tuple[list[_Track], list[_Track]]:
        done: list[_Track] = []
        moved: list[_Track] = []
        for track in live:
            if track.applied >= batch.last:
                continue
            view = track.view
            if not view.staged:
                if not track.advance(conn, batch.last):
                    moved.append(track)
                    continue
                done.append(track)
            todo = batch.events[bisect_right(batch.ids, track.applied) :]
            if todo:
                _handle(track, view.process, conn, todo)
                track.skipped += view.skipped()
            unknown = [topic for position, topic in batch.unknown if position > track.applied]
            if unknown:
                track.skipped += len(unknown)
                track.unknown = unknown[-1]
            track.applied = batch.last
            if not view.staged:
                track.count_skips(conn)
        return done, moved

    def _wants_flush(self, track: _Track) -> bool:
        kept = track.applied - track.committed
        return kept > 0 and (kept >= track.keeps or track.view.wants_flush())

    def _flush(self, live: list[_Track]) -> bool:
        """Write what staged views keep in memory; False if a view failed or moved."""
        flushing = [t for t in live if t.applied > t.committed]
        if not flushing:
            return True
        done: list[_Track] = []
        moved: list[_Track] = []
        with self.engine.connect() as conn:
            try:
                self._write(conn, flushing, done, moved)
                _clear_errors(conn, done)
                conn.commit()
            except _HandlerError as e:
                conn.rollback()
                self._isolate(e, live)
                return False
        return self._committed(done, moved)

    @staticmethod
    def _write(
        conn: Connection, flushing: list[_Track], done: list[_Track], moved: list[_Track]
    ) -> None:
        for track in flushing:
            if track.advance(conn, track.applied):
                _handle(track, track.view.flush, conn)
                track.count_skips(conn)
                done.append(track)
            else:
                moved.append(track)

    def _committed(self, done: list[_Track], moved: list[_Track]) -> bool:
        for track in done:
            track.committed = track.applied
            track.skipped, track.unknown = 0, None
        if moved:  # another follower applied these first: go on from where it left them
            with self.engine.connect() as conn:
                ids = [t.view.build for t in moved]
                positions = catalog.positions(conn, ids, moved[0].shard)
            for track in moved:
                track.rewind(positions.get(track.view.build, track.committed))
        return not moved

    def _isolate(self, error: _HandlerError, live: list[_Track]) -> None:
        for track in live:
            if track is not error.track:
                track.rewind(track.committed)
        error.track.error = self._failed(error.track, error.cause)

    def _failed(self, track: _Track, cause: Exception) -> ViewFailedError:
        view = track.view
        if isinstance(cause, DamagedHistoryError) and self._is_stored(cause):
            # Not a hole in the log: the view's own copy of the agent is out of step.
            cause = RuntimeError(
                f"view out of step with agent {cause.agent_id} at version {cause.version}"
            )
        error = ViewFailedError(view.name, view.build, track.committed, cause)
        track.rewind(track.committed)
        try:
            with self.engine.begin() as conn:
                catalog.record_error(conn, view.build, str(error))
        except SQLAlchemyError:  # pragma: no cover - the database itself is gone
            log.exception("could not record the failure of view %s", view.name)
        return error

    def _is_stored(self, gap: DamagedHistoryError) -> bool:
        """Whether the version a replay found missing is in the log after all."""
        if gap.reason != MISSING:
            return False
        agent_id = UUID(str(gap.agent_id))
        return bool(self.app.recorder.select_events(agent_id, gt=gap.version - 1, lte=gap.version))


def _clear_errors(conn: Connection, done: list[_Track]) -> None:
    """The builds that moved past shard 0 lose their errors (shard 0's move clears it)."""
    catalog.clear_errors(conn, [t.view.build for t in done if t.shard > 0])


def _part(progress: Progress | None, heads: list[int], shard: int) -> Progress | None:
    """Progress through one shard as progress through all of them (heads summed)."""
    if progress is None or len(heads) <= 1:
        return progress
    before, after = sum(heads[:shard]), sum(heads[shard + 1 :])
    return lambda done, head: progress(before + done, before + head + after)


__all__ = ["Follower", "Progress", "Stop"]
