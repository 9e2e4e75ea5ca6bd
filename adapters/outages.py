"""The database going away (restarted, unreachable) is an outage to wait out, not an
error: long-running loops (``agentlog worker``, ``agentlog projections run``) retry with
capped exponential backoff, say so in one line when it starts and one when it ends, and
go on from their positions in the log.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from agentlog.projections.outages import is_outage

FIRST_DELAY, MAX_DELAY = 0.1, 5.0
"""Seconds before the first retry, and the most between two (doubling in between)."""


__all__ = ["FIRST_DELAY", "MAX_DELAY", "Outage", "first_line", "is_outage"]


def first_line(error: BaseException) -> str:
    """What went wrong, in one short line."""
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"[:200]


class Outage:
    """Backoff across an outage: ``wait`` after each failed try, ``over`` after a good one.

    A worker's turn threads share one: the outage starts and ends once, whoever saw it.
    """

    def __init__(self, say: Callable[[str], None], stop: threading.Event | None = None) -> None:
        self.say, self.stop = say, stop or threading.Event()
        self.delay = 0.0
        self.tries = 0
        self._lock = threading.Lock()

    @property
    def ongoing(self) -> bool:
        """Whether the last try failed."""
        return self.tries > 0

    def wait(self, error: Exception) -> bool:
        """Say so if the outage starts now; wait before the next try. False if the
        loop was told to stop meanwhile (then nothing more is tried)."""
        with self._lock:
            if not self.ongoing:
                self.say(f"database unavailable ({first_line(error)}): retrying")
            self.tries += 1
            self.delay = delay = min(MAX_DELAY, self.delay * 2 or FIRST_DELAY)
        return not self.stop.wait(delay)

    def over(self) -> None:
        """A try worked: say so if it ended an outage."""
        with self._lock:
            if self.ongoing:
                self.say(f"database back after {self.tries} retries: carrying on")
            self.tries, self.delay = 0, 0.0
