"""The state column's JSON made from an aggregate's attributes without validating them
(projections/direct_state.py): byte for byte the validated model's JSON, or not made
at all (then the validated way runs, and says what it always said)."""

from __future__ import annotations

import json
from typing import Any
from uuid import uuid4

import pytest
from histories import grow, moves
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, Field, ValidationError, field_validator

from agentlog.adapters.storage import open_log
from agentlog.domain import Agent, AgentConfig, Aggregate, GraphThread, Status
from agentlog.projections.agent_rows import state_columns
from agentlog.projections.direct_state import direct_json, validation_keeps
from agentlog.projections.runnable import RunnableAgents
from agentlog.projections.snapshot_text import snapshot_text
from agentlog.projections.state import AgentStates

texts = st.text(max_size=8).filter(lambda t: "\x00" not in t)


def validated(aggregate: Aggregate) -> str:
    """The long way: validate the attributes into the model, then write it."""
    return type(aggregate).State.model_validate(aggregate.state()).model_dump_json()


def long_way(aggregate: Aggregate) -> str:
    """What the state column held before: the validated model, then ``json.dumps``
    of the extras."""
    body = validated(aggregate)
    tail = json.dumps(aggregate.snapshot_extras(), separators=(",", ":"))[1:-1]
    return body[:-1] + "," + tail + "}"


@settings(max_examples=40, deadline=None)
@given(plan=moves, name=texts, goal=texts, prompt=texts, model=texts)
def test_the_direct_text_is_the_validated_text_of_any_history(
    plan: list[tuple[str, Any]], name: str, goal: str, prompt: str, model: str
) -> None:
    log = open_log("memory://")
    try:
        agent = Agent.create(name, AgentConfig(model=model or "m", system_prompt=prompt))
        agent.start_task(goal)
        log.save(agent)
        grow(log, agent.id, plan)
        for seen in (log.get(agent.id), agent):  # replayed, and as it was made
            assert direct_json(seen) == validated(seen)
            assert snapshot_text(seen) == long_way(seen)
    finally:
        log.close()


def test_threads_and_fresh_agents_give_the_validated_text() -> None:
    for aggregate in [Agent.create("fresh"), GraphThread(f"thread-{uuid4()}")]:
        assert direct_json(aggregate) is not None
        assert snapshot_text(aggregate) == long_way(aggregate)


def test_each_config_gives_its_own_text_whatever_came_before() -> None:
    agents = [Agent.create(f"a{n}", AgentConfig(model=f"model-{n}")) for n in range(3)]
    for _ in range(2):
        for agent in agents:
            assert json.loads(snapshot_text(agent))["config"]["model"] == agent.config.model
            assert snapshot_text(agent) == long_way(agent)
    agents[0].config = AgentConfig(model="changed")  # a new value: a new text
    assert json.loads(snapshot_text(agents[0]))["config"]["model"] == "changed"


def test_a_value_of_another_type_goes_the_validated_way() -> None:
    agent = Agent.create("typed")
    agent.start_task("a goal")
    agent.status = "running"  # type: ignore[assignment]  # text, where the model has an enum
    assert direct_json(agent) is None
    assert snapshot_text(agent) == long_way(agent)
    assert agent.status == Status.RUNNING


def test_an_attribute_the_state_does_not_have_fails_as_it_always_did() -> None:
    agent = Agent.create("extra")
    agent.nickname = "not a field"  # type: ignore[attr-defined]
    assert direct_json(agent) is None
    with pytest.raises(ValidationError):
        snapshot_text(agent)


class _Trimmed(BaseModel):
    word: str

    @field_validator("word")
    @classmethod
    def _trim(cls, value: str) -> str:
        return value.strip()


class _Bounded(BaseModel):
    count: int = Field(ge=0)


class _Stripped(BaseModel):
    model_config = {"str_strip_whitespace": True}
    word: str


class _Nested(BaseModel):
    inner: _Trimmed  # a nested model is kept as it is: its validators do not run again


def test_only_models_whose_validation_keeps_values_are_written_directly() -> None:
    assert validation_keeps(Agent.State)
    assert validation_keeps(GraphThread.State)
    assert validation_keeps(_Nested)
    assert not validation_keeps(_Trimmed)
    assert not validation_keeps(_Bounded)
    assert not validation_keeps(_Stripped)


class _Again(BaseModel):
    model_config = {"revalidate_instances": "always"}
    word: str


class _HoldsAgain(BaseModel):
    inner: _Again


def test_a_nested_model_validated_again_is_not_written_directly() -> None:
    assert not validation_keeps(_HoldsAgain)


def test_agent_rows_made_as_tuples_hold_each_column_in_its_place() -> None:
    """The state and runnable rows, made as tuples: each value under its own column."""
    agent = Agent.create("rows", AgentConfig(model="m"))
    agent.start_task("a goal\x00with a NUL")
    agent.record_model_response("ok", model="m")
    expected = {
        "state": {
            **{"name": "rows", "status": "running", "goal": "a goal\ufffdwith a NUL"},
            **{"steps": 1, "pending_approvals": "", "last_error": None, "result": None},
            **{"tokens": 0, "model": "m"},
            **{"created_at": agent.created_on, "last_event_at": agent.modified_on},
        },
        "runnable": {"runnable": True, "open_calls": 0, "since": agent.modified_on},
    }
    for view in (AgentStates(1), RunnableAgents(2)):
        names = [column.key for column in view.rows.columns][len(state_columns()) :]
        assert view.own_values(agent) == tuple(expected[view.name][name] for name in names)
        assert view.columns_for(agent) == expected[view.name]
        assert view._values(agent)[:3] == (str(agent.id), "agentlog:Agent@1", agent.version)
