"""Threads that run tool calls, reused from one call to the next.

Each call runs in a thread of its own while it runs (so that its caller can stop
waiting at its timeout), but starting a thread for every call costs more than a no-op
tool: a thread that finished a call waits for the next one instead of ending. A thread
whose caller stopped waiting (a timeout, an interrupt) ends when its call does, so it
never serves a call again, and while it runs a call it is named ``tool-<name>``, as
before; an idle one is not.

The handoff is two plain locks' worth of work, no ``threading.Event`` (a Python-level
condition, its waiter lock made and taken on every wait): the caller waits on a lock the
call holds from the start (``done``), which its thread releases once the call ended and
the thread is back among the idle ones, ready for the caller's next call.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from queue import SimpleQueue

MAX_IDLE = 8
"""Idle threads kept for later calls; more than this end after their call."""
IDLE_NAME = "agentlog-tool-idle"


class ToolCall:
    """One call handed to a thread: over once ``finished`` (``done`` is then released)."""

    __slots__ = ("abandoned", "done", "finished", "lock", "name", "work")

    def __init__(self, name: str, work: Callable[[], None]) -> None:
        self.name, self.work = name, work
        self.done = threading.Lock()
        self.done.acquire()  # held until the call ended: its caller waits on it
        self.finished = False
        self.abandoned = False  # its caller stopped waiting: its thread ends after it
        self.lock = threading.Lock()

    def wait(self, timeout: float) -> bool:
        """Whether the call ended within ``timeout`` seconds (at once if not positive)."""
        if timeout <= 0:
            return self.done.acquire(False)
        return self.done.acquire(True, min(timeout, threading.TIMEOUT_MAX))

    def abandon(self) -> bool:
        """Stop waiting for the call; False if it finished meanwhile."""
        with self.lock:
            self.abandoned = not self.finished
            return self.abandoned


_idle: list[SimpleQueue[ToolCall]] = []
_idle_lock = threading.Lock()


def start(call: ToolCall) -> None:
    """Run the call in an idle thread, or in a new one."""
    with _idle_lock:
        inbox = _idle.pop() if _idle else None
    if inbox is None:
        inbox = SimpleQueue()
        threading.Thread(target=_serve, args=(inbox,), name=IDLE_NAME, daemon=True).start()
    inbox.put(call)


def _serve(inbox: SimpleQueue[ToolCall]) -> None:
    """Run calls from the inbox; end after an abandoned call (or one that raised past
    the call's own handler), or when enough threads are idle."""
    me = threading.current_thread()
    while True:
        call = inbox.get()
        me.name = f"tool-{call.name}"
        ran = False
        try:
            call.work()
            ran = True
        finally:
            with call.lock:
                me.name = IDLE_NAME
                call.finished = True
                reused = ran and not call.abandoned
            # Idle again before the caller hears of it: its next call finds this thread.
            reused = reused and _rest(inbox)
            call.done.release()
        if not reused:
            return


def _rest(inbox: SimpleQueue[ToolCall]) -> bool:
    """Put a thread's inbox among the idle ones; False if enough are idle already."""
    with _idle_lock:
        if len(_idle) >= MAX_IDLE:
            return False
        _idle.append(inbox)
        return True
