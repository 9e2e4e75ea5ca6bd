"""Whatever the model does wrong becomes an event; the agent stays usable until a limit."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID

import pytest

from agentlog.adapters.openai_model import OpenAIChatModel
from agentlog.adapters.storage import open_log
from agentlog.adapters.tools import ToolRegistry, builtin_tools
from agentlog.domain import Agent, AgentConfig, AgentLog, Status
from agentlog.domain.runtime import Runtime, StepKind

from fake_chat_server import (
    FakeChatServer,
    Reply,
    error_reply,
    raw_reply,
    slow_reply,
    text_reply,
    tool_call,
    tool_calls_reply,
)

E = TypeVar("E", bound=Agent.Event)


@dataclass
class World:
    """An agent log on SQLite, real tools, and the adapter talking to a fake server."""

    server: FakeChatServer
    log: AgentLog
    tools: ToolRegistry
    model: OpenAIChatModel

    def start(self, **config: Any) -> UUID:
        """A new agent with a running task."""
        agent_id = self.log.create_agent("a", AgentConfig(model="fake", **config))
        self.log.start_task(agent_id, "compute 6*7")
        return agent_id

    def run(self, agent_id: UUID) -> list[StepKind]:
        """Run the agent until it stops; the kinds of the steps taken."""
        kinds: list[StepKind] = []
        self.runtime().run(agent_id, max_steps=10, on_step=lambda step: kinds.append(step.kind))
        return kinds

    def runtime(self, model: OpenAIChatModel | None = None) -> Runtime:
        """A worker with the world's model (or another one)."""
        return Runtime(self.log, model or self.model, self.tools, worker_id="w")

    def events(self, agent_id: UUID, kind: type[E]) -> list[E]:
        """The agent's stored events of one type."""
        return [e for e in self.log.events_of(agent_id) if isinstance(e, kind)]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    """A fresh world; the client waits 0.3 s at most and never retries on its own."""
    with FakeChatServer() as server:
        model = OpenAIChatModel(
            "fake", base_url=server.base_url, api_key="k", timeout=0.3, max_retries=0
        )
        log = open_log(f"sqlite:///{tmp_path}/a.db")
        yield World(server, log, builtin_tools(tmp_path / "sandbox"), model)
        log.close()
        model.close()


ANSWER = text_reply("42")

MODEL_FAILURES = {
    "http 500": (error_reply(500, "internal error"), "http_error", "HTTP 500: internal error"),
    "http 429": (error_reply(429, "rate limited", kind="rate_limit"), "http_error", "HTTP 429"),
    "timeout": (slow_reply(5), "timeout", "no answer within 0.3s"),
    "body not json": (raw_reply(b"<html>oops"), "bad_output", "unreadable response"),
    "malformed tool arguments": (
        tool_calls_reply(tool_call("c1", "calculator", '{"expression": 6*7')),
        "bad_output",
        "arguments of calculator are not JSON",
    ),
}


@pytest.mark.parametrize(("reply", "kind", "fragment"), MODEL_FAILURES.values(), ids=MODEL_FAILURES)
def test_a_model_failure_is_recorded_and_the_agent_goes_on(
    world: World, reply: Reply, kind: str, fragment: str
) -> None:
    agent_id = world.start()
    world.server.queue(reply, ANSWER)
    runtime = world.runtime()
    assert runtime.advance(agent_id).kind is StepKind.MODEL_FAILED
    (failed,) = world.events(agent_id, Agent.ModelFailed)
    assert (failed.kind, failed.model, fragment in failed.error) == (kind, "fake", True)
    assert runtime.run(agent_id, max_steps=5).kind is StepKind.FINISHED
    assert (world.log.get(agent_id).status, world.log.get(agent_id).result) == (
        Status.COMPLETED,
        "42",
    )


def test_an_unreachable_server_is_recorded_and_a_later_worker_goes_on(world: World) -> None:
    agent_id = world.start()
    with FakeChatServer() as gone:
        url = gone.base_url
    offline = OpenAIChatModel("fake", base_url=url, api_key="k", timeout=0.3, max_retries=0)
    assert world.runtime(offline).advance(agent_id).kind is StepKind.MODEL_FAILED
    offline.close()
    (failed,) = world.events(agent_id, Agent.ModelFailed)
    assert (failed.kind, url in failed.error) == ("connection", True)
    world.server.queue(ANSWER)
    world.runtime().run(agent_id, max_steps=5)
    assert world.log.get(agent_id).status is Status.COMPLETED


CALL_REJECTIONS = {
    "unknown tool": (tool_call("c1", "rm_rf", {"path": "/"}), "unknown tool 'rm_rf'"),
    "invalid arguments": (
        tool_call("c1", "calculator", {"expr": "6*7"}),
        "invalid arguments for calculator: expression: Field required",
    ),
    "arguments too long": (
        tool_call("c1", "calculator", {"expression": "1+" * 200 + "1"}),
        "invalid arguments for calculator: expression: String should have at most 200",
    ),
}


@pytest.mark.parametrize(("call", "reason"), CALL_REJECTIONS.values(), ids=CALL_REJECTIONS)
def test_a_call_that_cannot_be_made_is_rejected_and_the_model_is_told_why(
    world: World, call: dict[str, Any], reason: str
) -> None:
    agent_id = world.start()
    world.server.queue(tool_calls_reply(call), ANSWER)
    runtime = world.runtime()
    assert runtime.advance(agent_id).kind is StepKind.MODEL
    (rejected,) = world.events(agent_id, Agent.ToolCallRejected)
    assert (rejected.call_id, reason in rejected.reason) == ("c1", True)
    assert world.events(agent_id, Agent.ToolCalled) == []
    runtime.run(agent_id, max_steps=5)
    assert world.log.get(agent_id).status is Status.COMPLETED
    told = world.server.requests[1].messages[-1]
    assert (told["role"], told["tool_call_id"]) == ("tool", "c1")
    assert told["content"] == f"error: {rejected.reason}"


def test_a_good_call_next_to_a_rejected_one_still_runs(world: World) -> None:
    agent_id = world.start()
    calls = tool_call("bad", "nope", {}), tool_call("good", "calculator", {"expression": "6*7"})
    world.server.queue(tool_calls_reply(*calls), ANSWER)
    world.runtime().run(agent_id, max_steps=5)
    (succeeded,) = world.events(agent_id, Agent.ToolSucceeded)
    assert (succeeded.call_id, succeeded.result) == ("good", 42)
    assert world.log.get(agent_id).status is Status.COMPLETED


def test_too_many_model_failures_in_a_row_fail_the_task(world: World) -> None:
    agent_id = world.start(max_model_failures=2)
    world.server.queue(error_reply(500, "down"), error_reply(503, "still down"), ANSWER)
    kinds = world.run(agent_id)
    (limit,) = world.events(agent_id, Agent.LimitReached)
    (failed,) = world.events(agent_id, Agent.TaskFailed)
    assert kinds == [StepKind.MODEL_FAILED, StepKind.LIMIT, StepKind.FINISHED]
    assert (limit.limit, limit.value) == ("max_model_failures", 2)
    assert failed.reason == "limit reached: max_model_failures = 2"
    assert (world.log.get(agent_id).status, world.server.pending) == (Status.FAILED, 1)


def test_model_failures_count_only_in_a_row(world: World) -> None:
    agent_id = world.start(max_model_failures=2)
    world.server.queue(
        error_reply(500, "down"),
        text_reply("thinking", finish_reason="length"),
        error_reply(500, "down again"),
        ANSWER,
    )
    world.run(agent_id)
    assert len(world.events(agent_id, Agent.ModelFailed)) == 2
    assert world.log.get(agent_id).status is Status.COMPLETED


def test_too_many_rejected_calls_in_a_row_fail_the_task(world: World) -> None:
    agent_id = world.start(max_tool_failures=2)
    world.server.queue(
        tool_calls_reply(tool_call("c1", "nope", {})),
        tool_calls_reply(tool_call("c2", "calculator", {})),
        ANSWER,
    )
    kinds = world.run(agent_id)
    (limit,) = world.events(agent_id, Agent.LimitReached)
    assert kinds == [StepKind.MODEL, StepKind.MODEL, StepKind.LIMIT, StepKind.FINISHED]
    assert (limit.limit, limit.value) == ("max_tool_failures", 2)
    assert len(world.events(agent_id, Agent.ToolCallRejected)) == 2
    assert len(world.events(agent_id, Agent.TaskFailed)) == 1
    assert (world.log.get(agent_id).status, world.server.pending) == (Status.FAILED, 1)
