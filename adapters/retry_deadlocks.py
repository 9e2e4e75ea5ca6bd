"""Lease transactions that lose a deadlock or a serialization check are tried again.

PostgreSQL breaks a deadlock by failing one of the transactions in it (SQLSTATE 40P01),
and may fail a transaction that cannot be serialized (40001). Either way that
transaction was rolled back as a whole and nothing of it stays, so running it again is
safe, and the other transaction, which went on, is done or nearly done by then. Lease
statements lock their rows in one order (by agent id, ``adapters/leases.py``), so they
should not deadlock each other; this is the second line of defence: a worker whose
lease take lost such a race retries it a few times, with a short jittered backoff, and
says so, instead of dying of it.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import SQLAlchemyError

from agentlog.adapters.outages import first_line

RACE_STATES = frozenset({"40P01", "40001"})
"""SQLSTATEs of a transaction that lost a race: deadlock detected, serialization failure."""
RETRIES = 3
"""Tries after the first, at most."""
FIRST_DELAY = 0.01
"""Seconds before the first retry, about (each retry doubles it; jittered by +-50%)."""
T = TypeVar("T")
log = logging.getLogger(__name__)

__all__ = ["FIRST_DELAY", "RACE_STATES", "RETRIES", "lost_a_race", "retrying"]


def lost_a_race(error: BaseException | None) -> bool:
    """Whether the error, or one it wraps, is PostgreSQL's deadlock or serialization
    failure (the transaction was rolled back: it may be run again)."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if getattr(error, "sqlstate", None) in RACE_STATES:
            return True
        error = getattr(error, "orig", None) or error.__cause__
    return False


def retrying(what: str, attempt: Callable[[], T], retries: int = RETRIES) -> T:
    """``attempt()``, run again (up to ``retries`` times) while it fails because its
    transaction lost a race (:func:`lost_a_race`); any other error goes on at once."""
    for tried in range(retries + 1):
        try:
            return attempt()
        except SQLAlchemyError as e:
            if tried == retries or not lost_a_race(e):
                raise
            delay = FIRST_DELAY * 2**tried * random.uniform(0.5, 1.5)  # noqa: S311 (jitter)
            log.warning("%s lost a race (%s): trying again", what, first_line(e))
            time.sleep(delay)
    raise AssertionError("unreachable")  # the last try returns or raises
