"""Which worker keeps a store's views caught up: one at a time, in a thread of its own.

Every worker reads the runnable view to find work, but the views need one follower,
not one per worker: followers that catch up at once each read and decode the same
batches, all but one lose the race to move the positions, and the losers forget the
agents their views kept in memory and read them again next time (measured with 4
workers x 32 threads on PostgreSQL: four fifths of each worker's CPU went to this).

So the worker that holds the *views' lease* (a row of ``agentlog_leases`` under the
fixed id :data:`VIEWS_LEASE`, renewed by the worker's :class:`LeaseKeeper` like its
agents' leases) catches the views up, in a thread of its own: every ``every`` seconds,
and soon when the work loop says its turns made progress (:meth:`ViewFollower.nudge`),
but never more often than every :data:`GAP` seconds.
Its views keep their memory between catch-ups, since no other follower moves them.
The other workers read the views as they stand and try to take the lease now and then;
one takes over when the holder stops (it gives the lease back) or dies (at once on its
host, else when the lease expires). The agents' leases, not the views, keep two workers
off one agent: a view a moment behind costs a look at an agent with nothing to do.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from types import TracebackType

from sqlalchemy.exc import SQLAlchemyError

from agentlog.adapters.lease_keeper import LeaseKeeper
from agentlog.adapters.leases import VIEWS_LEASE, Lease
from agentlog.projections import CatchUpStoppedError, Projections

VIEWS_SLOT = -1
"""The views' lease is held by no turn thread of its worker."""
GAP = 1.0
"""Seconds between catch-ups at least, however often nudged. A catch-up has a cost of
its own (each view's position moved, each agent its batch touched written once), so
bigger batches cost less per event: with one worker at K = 32 on PostgreSQL, views
caught up every 0.1 s took two fifths of the worker's CPU. A view this much behind
costs a worker little (``adapters/idle_agents.py``); a person's commands catch the
views up themselves."""
log = logging.getLogger(__name__)


class ViewFollower:
    """While entered, keeps the views caught up whenever this worker holds their lease."""

    def __init__(
        self,
        views: Projections,
        keeper: LeaseKeeper,
        every: float,
        gap: float = GAP,
        *,
        stop: threading.Event | None = None,
    ) -> None:
        self.views, self.keeper, self.every, self.gap = views, keeper, every, gap
        self.stop = stop or threading.Event()
        """The worker's: once set, a catch-up under way ends after its batch."""
        self.retry = max(every, 1.0)
        """Seconds between tries to take the lease while another worker holds it."""
        self._lease: Lease | None = None
        self._next_try = 0.0
        self._wake = threading.Event()
        self._rounds = threading.Condition()
        self._asked = self._served = 0  # nudges given; nudges a finished catch-up covers
        self._done = threading.Event()
        self._catching_up = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def holding(self) -> bool:
        """Whether this worker is the store's view follower now."""
        return self._lease is not None and self._lease.held

    def nudge(self) -> None:
        """Catch up soon (new events were saved); a no-op unless this worker follows."""
        with self._rounds:
            self._asked += 1
        self._wake.set()

    def behind(self) -> bool:
        """Whether this worker follows and was nudged since its last catch-up began."""
        with self._rounds:
            return self.holding and self._served < self._asked

    def settle(self, timeout: float) -> None:
        """Wait (up to ``timeout`` seconds) for a catch-up that covers every nudge so far."""
        with self._rounds:
            asked = self._asked
            self._rounds.wait_for(lambda: self._served >= asked or not self.holding, timeout)

    def catch_up_now(self) -> None:
        """Catch the views up in this thread, whoever holds the lease (a worker about to
        exit once idle looks at views that include everything saved so far)."""
        # Stopped, the positions stand where the last batch left them.
        with self._catching_up, contextlib.suppress(CatchUpStoppedError):
            self.views.catch_up_quietly(stop=self._stopping)

    def _stopping(self) -> bool:
        """After each batch: a worker told to stop does not wait for the views' tail."""
        return self.stop.is_set() or self._done.is_set()

    def __enter__(self) -> ViewFollower:
        self._done.clear()
        self._thread = threading.Thread(target=self._run, name="agentlog-views", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._done.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
        lease, self._lease = self._lease, None
        if lease is None:
            return
        self.keeper.drop(lease)
        try:
            self.keeper.leases.release(lease)  # the next worker takes over at once
        except SQLAlchemyError as e:  # the database is gone: the lease expires
            log.warning("views' lease not given back: %s", str(e).splitlines()[0])

    def _run(self) -> None:
        while not self._done.is_set():
            with self._rounds:
                asked = self._asked
            try:
                held = self._hold()
                if held:
                    self.catch_up_now()
            except Exception:  # a bug here must not end the views for good: log, go on
                log.exception("the views could not catch up")
                held = False
            with self._rounds:
                self._served = asked
                self._rounds.notify_all()
            if held:
                self._done.wait(self.gap)
            self._wake.wait(self.every)
            self._wake.clear()

    def _hold(self) -> bool:
        """Whether this worker holds the views' lease (taking it if it is due a try)."""
        if self.holding:
            return True
        if self._lease is not None:  # lost (another took it) or not renewed in time
            self.keeper.drop(self._lease)
            self._lease = None
        now = time.monotonic()
        if now < self._next_try:
            return False
        self._next_try = now + self.retry
        try:
            lease = self.keeper.leases.take(VIEWS_LEASE, VIEWS_SLOT)
        except SQLAlchemyError as e:  # an outage: the work loop waits it out; try later
            log.debug("views' lease not taken: %s", e)
            return False
        if lease is not None:
            self.keeper.hold(lease)
            self._lease = lease
        return lease is not None


__all__ = ["VIEWS_LEASE", "VIEWS_SLOT", "ViewFollower"]
