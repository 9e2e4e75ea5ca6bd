"""Threads that run tool calls, reused from one call to the next.

Each call runs in a thread of its own while it runs (so that its caller can stop
waiting at its timeout), but starting a thread for every call costs more than a no-op
tool: a thread that finished a call waits for the next one instead of ending. A thread
whose caller stopped waiting (a timeout, an interrupt) ends when its call does, so it
never serves a call again, and while it runs a call it is named ``tool-<name>``, as
before; an idle one is not.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from queue import SimpleQueue

MAX_IDLE = 8
"""Idle threads kept for later calls; more than this end after their call."""
IDLE_NAME = "agentlog-tool-idle"


class ToolCall:
    """One call handed to a thread: done when ``finished`` is set."""

    def __init__(self, name: str, work: Callable[[], None]) -> None:
        self.name, self.work = name, work
        self.finished = threading.Event()
        self.abandoned = False  # its caller stopped waiting: its thread ends after it
        self.lock = threading.Lock()

    def abandon(self) -> bool:
        """Stop waiting for the call; False if it finished meanwhile."""
        with self.lock:
            self.abandoned = not self.finished.is_set()
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
    """Run calls from the inbox; end after an abandoned call, or when enough are idle."""
    me = threading.current_thread()
    while True:
        call = inbox.get()
        me.name = f"tool-{call.name}"
        try:
            call.work()
        finally:
            with call.lock:
                me.name = IDLE_NAME
                call.finished.set()
                ended = call.abandoned
        if ended:
            return
        with _idle_lock:
            if len(_idle) >= MAX_IDLE:
                return
            _idle.append(inbox)
