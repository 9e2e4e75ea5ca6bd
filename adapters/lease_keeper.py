"""Keeping leases alive while their turns run: one thread renews them all.

A turn may wait on one model call or one tool for longer than a lease lasts, so
renewal cannot wait for the turn's next step: a thread renews every held lease each
third of the lease's life. A lease another worker took meanwhile is marked lost (its
turn ends after the step under way); a renewal the database refuses (an outage) is
tried again next time, and the lease counts as held only until its known expiry.

The same thread sweeps: when it starts and then every ``sweep_every`` seconds, it
deletes the rows of leases expired for longer than ``sweep_grace`` (``Leases.sweep``),
left by workers that were killed. Any worker may do it (one statement, only long-expired
rows), so nothing depends on the killed worker's host.
"""

from __future__ import annotations

import logging
import threading
import time
from types import TracebackType

from sqlalchemy.exc import SQLAlchemyError

from agentlog.adapters.leases import SWEEP_EVERY, SWEEP_GRACE, Lease, Leases

log = logging.getLogger(__name__)


class LeaseKeeper:
    """While entered, renews the leases it was given to hold, every ``every`` seconds,
    and sweeps long-expired leases every ``sweep_every`` seconds (None: never)."""

    def __init__(
        self,
        leases: Leases,
        every: float | None = None,
        *,
        sweep_every: float | None = SWEEP_EVERY,
        sweep_grace: float = SWEEP_GRACE,
    ) -> None:
        self.leases = leases
        self.every = leases.seconds / 3 if every is None else every
        self.sweep_every, self.sweep_grace = sweep_every, sweep_grace
        self.swept_at: float | None = None
        """When the last sweep ran (``time.monotonic()``); None before the first."""
        self._held: dict[int, Lease] = {}
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def hold(self, lease: Lease) -> None:
        """Renew this lease until it is dropped."""
        with self._lock:
            self._held[id(lease)] = lease

    def drop(self, lease: Lease) -> None:
        """Stop renewing it (its turn ended)."""
        with self._lock:
            self._held.pop(id(lease), None)

    def renew_all(self) -> None:
        """Renew every held lease once, in one statement (what the thread does every
        ``every`` seconds)."""
        with self._lock:
            held = list(self._held.values())
        try:
            lost = self.leases.renew_all(held)
        except SQLAlchemyError as e:  # an outage: try again next time
            log.debug("%d leases not renewed: %s", len(held), e)
            return
        for lease in lost:
            log.warning("agent %s: lease taken by another worker", lease.agent_id)

    def sweep_if_due(self) -> None:
        """Sweep if none ran yet, or the last one is ``sweep_every`` seconds old (an
        outage: tried again next time)."""
        if self.sweep_every is None:
            return
        if self.swept_at is not None and time.monotonic() - self.swept_at < self.sweep_every:
            return
        try:
            swept = self.leases.sweep(self.sweep_grace)
        except SQLAlchemyError as e:
            log.debug("leases not swept: %s", e)
            return
        self.swept_at = time.monotonic()
        if swept:
            log.info("swept %d leases expired over %.0fs ago", swept, self.sweep_grace)

    def __enter__(self) -> LeaseKeeper:
        self._done.clear()
        self._thread = threading.Thread(target=self._run, name="agentlog-leases", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        self.sweep_if_due()  # when the worker starts: before it waits, so it always runs
        while not self._done.wait(self.every):
            self.renew_all()
            self.sweep_if_due()


__all__ = ["LeaseKeeper"]
