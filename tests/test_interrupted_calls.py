"""A call whose worker was told to stop (a deploy, Ctrl-C) is recorded as failed with the
error ``interrupted``, so the model may ask again; but no tool failed, so it does not
count toward ``max_tool_failures``. Workers stopped over and over never fail a task.

The runtime on a real SQLite store, with a tool that stops its own worker while it runs.
"""

from __future__ import annotations

import threading
from typing import ClassVar

from pydantic import BaseModel, JsonValue

from agentlog.adapters.scripted import FunctionModel
from agentlog.domain import (
    Agent,
    AgentConfig,
    AgentLog,
    EffectClass,
    Policy,
    Status,
    ToolCallRequest,
)
from agentlog.domain.ports import Context, Decision
from agentlog.domain.runtime import Runtime, StepKind


class NoArgs(BaseModel):
    """No arguments."""


class PureTool:
    """A pure tool without arguments, allowed by its policy."""

    name = "pure"
    description = "A test tool."
    args_model: ClassVar[type[BaseModel]] = NoArgs
    effect = EffectClass.PURE
    policy = Policy.ALLOW

    def reconcile(self, idempotency_key: str) -> bool | None:
        """Pure: never asked."""
        return None


class StopsItsWorker(PureTool):
    """A pure tool that tells its worker to stop, then runs on until released."""

    def __init__(self, name: str, interrupt: threading.Event) -> None:
        self.name, self.interrupt = name, interrupt
        self.release = threading.Event()

    def run(self, args: BaseModel, idempotency_key: str) -> JsonValue:
        """Stop the worker, then wait to be released."""
        self.interrupt.set()
        self.release.wait(10)
        return "finished too late"


class Breaks(PureTool):
    """A pure tool that always fails."""

    name = "breaks"

    def run(self, args: BaseModel, idempotency_key: str) -> JsonValue:
        """Fail."""
        raise RuntimeError("broken")


def asks_for(tool: str) -> FunctionModel:
    """A model that asks for ``tool`` with a new call id each time."""

    def decide(context: Context) -> Decision:
        call = ToolCallRequest(call_id=f"c{len(context.messages)}", tool=tool)
        return Decision(text="again", tool_calls=(call,))

    return FunctionModel(decide, "m")


def test_interrupted_calls_do_not_count_toward_max_tool_failures(app: AgentLog) -> None:
    agent_id = app.create_agent("a", AgentConfig(max_tool_failures=2))
    app.start_task(agent_id, "go")
    interrupt = threading.Event()
    tool = StopsItsWorker("stops", interrupt)
    for n in range(3):  # three deploys, each in the middle of a call
        runtime = Runtime(
            app, asks_for("stops"), {"stops": tool}, worker_id=f"w{n}", interrupt=interrupt
        )
        assert runtime.advance(agent_id).kind is StepKind.MODEL
        assert runtime.advance(agent_id).kind is StepKind.INTERRUPTED
        tool.release.set()
        interrupt.clear()
        tool.release = threading.Event()
    agent = app.get(agent_id)
    assert (agent.status, agent.tool_failures, agent.last_error) == (Status.RUNNING, 0, None)
    failed = [e for e in app.events_of(agent_id) if isinstance(e, Agent.ToolFailed)]
    assert [(e.error, e.interrupted) for e in failed] == [("interrupted", True)] * 3
    assert not any(isinstance(e, Agent.LimitReached) for e in app.events_of(agent_id))


def test_real_tool_failures_still_reach_the_limit_after_interruptions(app: AgentLog) -> None:
    agent_id = app.create_agent("a", AgentConfig(max_tool_failures=2))
    app.start_task(agent_id, "go")
    interrupt = threading.Event()
    stops = StopsItsWorker("stops", interrupt)
    runtime = Runtime(app, asks_for("stops"), {"stops": stops}, worker_id="w", interrupt=interrupt)
    runtime.advance(agent_id)
    assert runtime.advance(agent_id).kind is StepKind.INTERRUPTED
    stops.release.set()
    runtime = Runtime(app, asks_for("breaks"), {"breaks": Breaks()}, worker_id="w")
    kinds = [runtime.advance(agent_id).kind for _ in range(4)]
    assert kinds == [StepKind.MODEL, StepKind.TOOL, StepKind.MODEL, StepKind.LIMIT]
    agent = app.get(agent_id)
    assert (agent.status, agent.tool_failures) == (Status.FAILED, 2)
    failed = [e for e in app.events_of(agent_id) if isinstance(e, Agent.ToolFailed)]
    # A failure is stored (and hashed) as before ``interrupted`` existed.
    assert [e.stored_state().get("interrupted") for e in failed] == [True, None, None]
