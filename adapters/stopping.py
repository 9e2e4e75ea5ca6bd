"""Stopping a long-running process on SIGINT (Ctrl-C) or SIGTERM, cleanly.

The first signal asks the loop to stop (``stop`` is set): a worker finishes or abandons
its current step and starts nothing more. A second one ends the process at once (as
``kill -9`` would, which the log is built to survive). The exit status says which
signal stopped it, by the shell's convention: 128 + its number (130 for SIGINT, 143
for SIGTERM).
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Sequence
from types import FrameType, TracebackType
from typing import Any

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopOnSignals:
    """While entered, the first stop signal sets ``stop``; a second exits at once."""

    def __init__(
        self,
        stop: threading.Event,
        signals: Sequence[signal.Signals] = STOP_SIGNALS,
        then: Callable[[int], None] = lambda signum: None,
        *,
        stopping: str = "stopping after the current step",
    ) -> None:
        self.stop, self.signals, self.then = stop, tuple(signals), then
        self.stopping = stopping
        self.signum: int | None = None
        self._old: dict[signal.Signals, Any] = {}

    @property
    def exit_code(self) -> int | None:
        """128 + the number of the signal that stopped the loop; None if none did."""
        return None if self.signum is None else 128 + self.signum

    def __enter__(self) -> StopOnSignals:
        for signum in self.signals:
            self._old[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for signum, old in self._old.items():
            signal.signal(signum, old)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.signum is not None:
            _say(f"{name} again: stopping now")
            self.then(signum)
            os._exit(128 + self.signum)
        self.signum = signum
        self.stop.set()
        _say(f"{name}: {self.stopping} (send it again to stop now)")
        self.then(signum)


def _say(line: str) -> None:
    """One line on stderr, written at once: safe inside a signal handler (no buffer)."""
    os.write(2, f"{line}\n".encode())
