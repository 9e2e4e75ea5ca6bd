"""The agent-row views' ``state`` column (projections/snapshot_text.py): pydantic's JSON
of the snapshot state, one text per agent and version for every view that writes it.
Parsed, it must be exactly the domain's ``snapshot_state()``."""

from __future__ import annotations

import json
from typing import Any
from uuid import uuid4

import pytest
from histories import grow, moves
from hypothesis import given, settings
from hypothesis import strategies as st

from agentlog.adapters.storage import open_log
from agentlog.domain import Agent, AgentConfig, GraphThread
from agentlog.projections.snapshot_text import SnapshotTexts, snapshot_text

texts = st.text(max_size=8).filter(lambda t: "\x00" not in t)


@settings(max_examples=40, deadline=None)
@given(plan=moves, name=texts, goal=texts, prompt=texts)
def test_the_text_parses_to_the_snapshot_state_of_any_history(
    plan: list[tuple[str, Any]], name: str, goal: str, prompt: str
) -> None:
    log = open_log("memory://")
    try:
        agent = Agent.create(name, AgentConfig(system_prompt=prompt))
        agent.start_task(goal)
        log.save(agent)
        grow(log, agent.id, plan)
        stored = log.get(agent.id)
        assert json.loads(snapshot_text(stored)) == stored.snapshot_state()
    finally:
        log.close()


def test_a_thread_and_a_fresh_agent_give_their_snapshot_state() -> None:
    for aggregate in [Agent.create("fresh"), GraphThread(f"thread-{uuid4()}")]:
        assert json.loads(snapshot_text(aggregate)) == aggregate.snapshot_state()


def test_a_class_with_its_own_snapshot_state_keeps_it(monkeypatch: pytest.MonkeyPatch) -> None:
    default = GraphThread.snapshot_state

    def annotated(self: GraphThread) -> dict[str, Any]:
        return {**default(self), "note": "mine"}

    monkeypatch.setattr(GraphThread, "snapshot_state", annotated)
    thread = GraphThread(f"thread-{uuid4()}")
    assert json.loads(snapshot_text(thread)) == thread.snapshot_state()
    assert json.loads(snapshot_text(thread))["note"] == "mine"


def test_one_text_serves_every_view_until_the_agent_changes() -> None:
    texts_made = SnapshotTexts()
    agent = Agent.create("shared")
    first = texts_made.text(agent)
    assert texts_made.text(agent) is first
    agent.start_task("a goal")
    second = texts_made.text(agent)
    assert json.loads(second)["goal"] == "a goal"
    assert texts_made.text(agent) is second


def test_the_texts_kept_stay_within_capacity() -> None:
    texts_made = SnapshotTexts(capacity=3)
    agents = [Agent.create(f"agent {n}") for n in range(10)]
    for agent in agents:
        assert json.loads(texts_made.text(agent)) == agent.snapshot_state()
    assert len(texts_made._texts) <= 3
