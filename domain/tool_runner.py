"""Running one tool call: validated arguments, in a thread, within its timeout.

The threads are reused from call to call (:mod:`agentlog.domain.tool_threads`).

A tool's failure is an outcome, not a crash. A call that outlives its timeout is
remembered for as long as its thread lives, so this process never reconciles a call
that may still act. A worker that is told to stop (``interrupt``) stops waiting for
the tool: the outcome says so, and the runtime decides what to record.
"""

from __future__ import annotations

import functools
import threading
import time

from pydantic import BaseModel, JsonValue, ValidationError

from agentlog.domain import tool_threads
from agentlog.domain.ports import Tool, ToolSpec
from agentlog.domain.tool_threads import ToolCall
from agentlog.domain.values import Frozen


class Outcome(Frozen):
    """What running a tool gave: a result, an error, or a timeout."""

    result: JsonValue = None
    error: str | None = None
    timed_out: bool = False
    interrupted: bool = False

    @property
    def summary(self) -> str:
        """One line for the live view."""
        return f"error: {self.error}" if self.error is not None else "ok"


INTERRUPTED = "interrupted"
"""The error of a call whose worker was stopped while it ran (it may run again)."""
_SLICE = 0.05  # seconds between looks at the interrupt while a tool runs


def run_tool(
    tool: Tool | None,
    name: str,
    args: dict[str, JsonValue],
    key: str,
    timeout: float,
    *,
    interrupt: threading.Event | None = None,
) -> Outcome:
    """Run a tool with validated arguments, in a thread, within ``timeout`` seconds;
    stop waiting for it as soon as ``interrupt`` is set."""
    if tool is None:
        return Outcome(error=f"unknown tool {name!r}")
    try:
        parsed = tool.args_model.model_validate(args)
    except ValidationError as e:
        return Outcome(error=f"invalid arguments: {short_errors(e)}")
    box: list[Outcome] = []

    def work() -> None:
        try:
            box.append(Outcome(result=tool.run(parsed, key)))
        except Exception as e:  # a tool's failure is an event, not a crash
            box.append(Outcome(error=f"{type(e).__name__}: {e}"))

    call = ToolCall(name, work)
    tool_threads.start(call)
    if not _waited(call, timeout, interrupt) and call.abandon():
        with _OVERDUE_LOCK:
            _OVERDUE[key] = call  # it may still act: never reconcile it while it runs
        if interrupt is not None and interrupt.is_set():
            return Outcome(error=INTERRUPTED, interrupted=True)
        return Outcome(error=f"timed out after {timeout:g}s", timed_out=True)
    return box[0] if box else Outcome(error="the tool's thread ended without an outcome")


def _waited(call: ToolCall, timeout: float, interrupt: threading.Event | None) -> bool:
    """Whether the call ended before the timeout passed or the worker was told to stop."""
    if interrupt is None:
        return call.wait(timeout)
    deadline = time.monotonic() + timeout
    while not interrupt.is_set() and (left := deadline - time.monotonic()) > 0:
        if call.wait(min(_SLICE, left)):
            return True
    return False


_OVERDUE: dict[str, ToolCall] = {}
_OVERDUE_LOCK = threading.Lock()


def still_running(idempotency_key: str) -> bool:
    """Whether a tool call that timed out in this process is still running."""
    with _OVERDUE_LOCK:
        call = _OVERDUE.get(idempotency_key)
        if call is not None and call.finished:
            del _OVERDUE[idempotency_key]
            return False
        return call is not None


def tool_spec(tool: Tool) -> ToolSpec:
    """What the model is told about a tool (built once per name, description and
    arguments model: a worker builds a runtime, and asks for its tools' specs, every turn)."""
    return _spec(tool.name, tool.description, tool.args_model)


@functools.lru_cache(maxsize=1024)
def _spec(name: str, description: str, args_model: type[BaseModel]) -> ToolSpec:
    return ToolSpec(name=name, description=description, parameters=args_model.model_json_schema())


def short_errors(error: ValidationError) -> str:
    """A validation error on one line: ``field: message; ...``."""
    return "; ".join(
        f"{'.'.join(map(str, e['loc'])) or 'args'}: {e['msg']}" for e in error.errors()
    )
