"""Copies of aggregates (what a worker's cache hands out) never share mutable state."""

from __future__ import annotations

import copy

from agentlog.adapters.storage import open_log
from agentlog.domain import Agent, AgentConfig, EffectClass, Policy, ToolCallRequest


def agent_with_open_call() -> Agent:
    agent = Agent.create("copy me", AgentConfig(tool_policies={"echo": Policy.ALLOW}))
    agent.start_task("copy")
    call = ToolCallRequest(call_id="c1", tool="echo", args={"text": "hi"})
    agent.record_model_response("calling", model="m", tool_calls=(call,))
    agent.call_tool(call, effect=EffectClass.PURE, policy=Policy.ALLOW)
    return agent


def test_a_copy_changes_without_touching_the_original() -> None:
    original = agent_with_open_call()
    before = copy.deepcopy(original.state())
    twin = copy.deepcopy(original)
    assert twin.state() == original.state()
    assert twin.calls is not original.calls
    twin.start_tool("c1", worker_id="w")
    twin.succeed("c1", "done", actor="worker:w")
    twin.calls["extra"] = twin.calls.get("c1") or next(iter(original.calls.values()))
    assert original.state() == before
    assert original.version == twin.version - 3 + 1  # the copy went on by two events


def test_attributes_a_subclass_adds_are_kept_apart() -> None:
    notebook = Agent.create("nb")  # as a subclass would, with mutable attributes of its own
    vars(notebook).update(pages=[["first"]], tags={"a"}, index={"first": [1]})
    twin = copy.deepcopy(notebook)
    vars(twin)["pages"][0].append("second")
    vars(twin)["tags"].add("b")
    vars(twin)["index"]["first"].append(2)
    assert vars(notebook)["pages"] == [["first"]]
    assert vars(notebook)["tags"] == {"a"}
    assert vars(notebook)["index"] == {"first": [1]}


def test_cached_agents_handed_out_twice_are_independent(sqlite_url: str) -> None:
    log = open_log(sqlite_url, aggregate_cache=10)
    try:
        agent = agent_with_open_call()
        log.save(agent)
        first, second = log.get(agent.id), log.get(agent.id)
        first.start_tool("c1", worker_id="w")
        assert second.calls["c1"].stage != first.calls["c1"].stage
        assert log.get(agent.id).calls["c1"] == second.calls["c1"]
    finally:
        log.close()
