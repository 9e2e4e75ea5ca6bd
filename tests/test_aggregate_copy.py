"""Copies of aggregates (what a worker's cache hands out) never share mutable state."""

from __future__ import annotations

import copy
from typing import Any

import pytest

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


def test_a_worker_loads_what_it_saved_without_decoding_it_again(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    worker = open_log(sqlite_url, aggregate_cache=10)
    other = open_log(sqlite_url)  # another process, writing to the same store
    try:
        agent = agent_with_open_call()
        worker.save(agent)
        loaded = worker.get(agent.id)
        loaded.start_tool("c1", worker_id="w")
        worker.save(loaded)
        decoded: list[int] = []
        to_domain_event = worker.mapper.to_domain_event

        def spy(stored: Any) -> Any:
            decoded.append(stored.originator_version)
            return to_domain_event(stored)

        monkeypatch.setattr(worker.mapper, "to_domain_event", spy)
        again = worker.get(agent.id)
        assert decoded == []
        assert again.state() == loaded.state()
        assert again is not loaded
        loaded.succeed("c1", "kept out of the cache", actor="worker:w")  # never saved
        assert worker.get(agent.id).version == again.version
        other.send(agent.id, "from elsewhere")
        assert worker.get(agent.id).version == again.version + 1  # fast-forward still runs
        assert decoded == [again.version + 1]
    finally:
        worker.close()
        other.close()
