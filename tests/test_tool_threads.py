"""Tool calls run in reused threads; a call that outlives its timeout keeps its thread
to itself until it ends, and is known to be running until then."""

from __future__ import annotations

import threading
from typing import ClassVar

from pydantic import BaseModel, JsonValue

from agentlog.domain import EffectClass, Policy
from agentlog.domain.tool_runner import run_tool, still_running
from agentlog.domain.tool_threads import IDLE_NAME


class NoArgs(BaseModel):
    """No arguments."""


class ThreadTool:
    """Reports the thread it ran on; waits for ``release`` if given one."""

    name = "where"
    description = "Which thread runs me."
    args_model: ClassVar[type[BaseModel]] = NoArgs
    effect = EffectClass.SIDE_EFFECTING
    policy = Policy.ALLOW

    def __init__(self, release: threading.Event | None = None) -> None:
        self.release = release
        self.names: list[str] = []

    def run(self, args: BaseModel, idempotency_key: str) -> JsonValue:
        """The running thread's id, once released."""
        self.names.append(threading.current_thread().name)
        if self.release is not None:
            self.release.wait(10)
        return threading.get_ident()

    def reconcile(self, idempotency_key: str) -> bool | None:
        """Cannot tell."""
        return None


def test_calls_after_one_another_share_a_thread() -> None:
    tool = ThreadTool()
    first = run_tool(tool, tool.name, {}, "k1", 5)
    second = run_tool(tool, tool.name, {}, "k2", 5)
    assert first.error is None
    assert first.result == second.result  # the same thread ran both
    assert first.result != threading.get_ident()
    assert tool.names == ["tool-where", "tool-where"]  # named for the call while it runs
    idle = [t for t in threading.enumerate() if t.ident == first.result]
    assert [t.name for t in idle] == [IDLE_NAME]


def test_a_call_past_its_timeout_keeps_its_thread_until_it_ends() -> None:
    release = threading.Event()
    slow = ThreadTool(release)
    timed_out = run_tool(slow, slow.name, {}, "slow-key", 0.05)
    assert timed_out.timed_out
    assert still_running("slow-key")
    (running,) = [t for t in threading.enumerate() if t.name == "tool-where"]
    quick = ThreadTool()
    meanwhile = run_tool(quick, quick.name, {}, "quick-key", 5)
    assert meanwhile.result != running.ident  # never handed a call while the slow one runs
    release.set()
    running.join(5)
    assert not running.is_alive()  # it ended with its call: never reused
    assert not still_running("slow-key")
