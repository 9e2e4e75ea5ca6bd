"""Fewer passes of the cyclic garbage collector while views follow the log.

Following the log allocates a few container objects per event (decoded events, rows,
replayed state) and keeps thousands alive between flushes; with the default thresholds
the collector walks them again and again (measured: 15-20% of a rebuild's time), though
they form no cycles and reference counting frees them. While a follower works, the
youngest generation is collected every ``THRESHOLD`` allocations instead of every 700;
the previous thresholds come back when the last follower is done.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

THRESHOLD = 20_000


class _Raised:
    """How many followers work now, and the thresholds to restore after the last."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.depth = 0
        self.saved = gc.get_threshold()


_raised = _Raised()


@contextmanager
def fewer_collections() -> Iterator[None]:
    """Raise the collector's first threshold for the duration (nested: once)."""
    with _raised.lock:
        if _raised.depth == 0:
            _raised.saved = saved = gc.get_threshold()
            if 0 < saved[0] < THRESHOLD:  # 0: collection is off; leave it so
                gc.set_threshold(THRESHOLD, *saved[1:])
        _raised.depth += 1
    try:
        yield
    finally:
        with _raised.lock:
            _raised.depth -= 1
            if _raised.depth == 0 and gc.get_threshold()[0] == THRESHOLD:
                gc.set_threshold(*_raised.saved)  # unless someone changed them meanwhile
