"""Up to K agents' turns at once, in threads: the worker's ``--concurrency``.

Threads, not asyncio: a turn spends its time waiting (on the model's HTTP call, a
tool, the database), and every one of those waits releases the GIL; the runtime, the
event store's drivers (sqlite3, psycopg) and the tools are blocking code, which asyncio
would have to push into threads anyway. The CPU a step needs (decoding, hashing,
validating) is shared by the threads of one process: for more of it, run more
processes (``--processes``). docs/runtime.md says more.

The pool hands each turn a slot (0..K-1): which thread of the worker holds the agent's
lease. Turns are started from one thread (the worker's loop) and the pool is not meant
to be shared.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from uuid import UUID

from agentlog.domain.runtime import Step

SLICE = 0.05
"""Seconds between looks at ``stop`` while every slot is taken."""
Turn = Callable[[UUID, int], list[Step]]
"""Runs one agent's turn in the given slot; the steps it took."""
log = logging.getLogger(__name__)


class TurnPool:
    """Runs turns in up to ``size`` threads; collects their steps and errors."""

    def __init__(self, size: int, stop: threading.Event) -> None:
        self.size, self.stop = size, stop
        self._executor = ThreadPoolExecutor(size, thread_name_prefix="agentlog-turn")
        self._free = list(range(size - 1, -1, -1))
        self._running: dict[Future[list[Step]], tuple[UUID, int]] = {}
        self._ended: list[Future[list[Step]]] = []
        # Each turn puts its future here as it ends: waiting for one is one queue read,
        # not a waiter installed on every running future (concurrent.futures.wait).
        self._done: queue.SimpleQueue[Future[list[Step]]] = queue.SimpleQueue()

    @property
    def agents(self) -> set[UUID]:
        """The agents whose turns run now."""
        return {agent_id for agent_id, _ in self._running.values()}

    @property
    def free(self) -> int:
        """Slots free now."""
        return len(self._free)

    @property
    def busy(self) -> bool:
        """Whether any turn runs."""
        return bool(self._running)

    def wait_for_slot(self) -> bool:
        """Wait until a slot is free; False if told to stop first."""
        while not self._free and not self.stop.is_set():
            self.wait_any(SLICE)
        return not self.stop.is_set()

    def start(self, agent_id: UUID, turn: Turn) -> bool:
        """Start the agent's turn once a slot is free; False if told to stop first."""
        if not self.wait_for_slot():
            return False
        slot = self._free.pop()
        future = self._executor.submit(turn, agent_id, slot)
        self._running[future] = (agent_id, slot)
        future.add_done_callback(self._done.put)  # at once if it already ended
        return True

    def wait_any(self, timeout: float) -> None:
        """Wait until a turn ends, or ``timeout`` seconds; collect every turn that ended."""
        if not self._running:
            return
        try:
            self._end(self._done.get(timeout=timeout) if timeout > 0 else self._done.get_nowait())
            while True:
                self._end(self._done.get_nowait())
        except queue.Empty:
            return

    def _end(self, future: Future[list[Step]]) -> None:
        self._free.append(self._running.pop(future)[1])
        self._ended.append(future)

    def harvest(self) -> list[Step]:
        """The steps of the turns that ended since the last harvest; raises the first
        error one of them raised (the others are logged)."""
        self.wait_any(0)
        ended, self._ended = self._ended, []
        steps: list[Step] = []
        errors = [e for f in ended if (e := f.exception()) is not None]
        for future in ended:
            if future.exception() is None:
                steps.extend(future.result())
        for error in errors[1:]:
            log.warning("a turn failed too: %s: %s", type(error).__name__, error)
        if errors:
            raise errors[0]
        return steps

    def close(self) -> None:
        """Wait for the turns under way to end (told to stop, they end soon)."""
        self._executor.shutdown(wait=True)


__all__ = ["SLICE", "Turn", "TurnPool"]
