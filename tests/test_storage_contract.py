"""One contract, every backend: in-memory, SQLite and PostgreSQL, each on both engines."""

from __future__ import annotations

from collections.abc import Iterator
from uuid import UUID, uuid4

import pytest
from eventsourcing.cipher import AESCipher
from eventsourcing.persistence import IntegrityError

from agentlog.adapters.storage import open_log
from agentlog.domain import (
    Agent,
    AgentConfig,
    AgentLog,
    EffectClass,
    Policy,
    Status,
    TokenUsage,
    ToolCallRequest,
    UnknownAgentError,
)


@pytest.fixture
def log(backend_url: str) -> Iterator[AgentLog]:
    app = open_log(backend_url, snapshot_interval=4)
    yield app
    app.close()


def live_agent(log: AgentLog) -> tuple[UUID, int]:
    """An agent with a tool call that went through a grant; returns (id, version)."""
    agent_id = log.create_agent("scribe", AgentConfig(tool_policies={"write": Policy.ASK}))
    log.start_task(agent_id, "write a haiku")
    agent = log.get(agent_id)
    request = ToolCallRequest(call_id="c1", tool="write", args={"path": "h.txt", "lines": [5, 7]})
    agent.record_model_response(
        "drafting", model="m1", tool_calls=(request,), usage=TokenUsage(prompt=9, completion=3)
    )
    agent.call_tool(request, effect=EffectClass.SIDE_EFFECTING)
    agent.request_permission("c1")
    log.save(agent)
    log.grant(agent_id, "c1", approver="ana")
    agent = log.get(agent_id)
    agent.start_tool("c1", worker_id="w1")
    log.save(agent)
    log.record_result(agent_id, "c1", {"bytes": 42})
    log.complete(agent_id, "done")
    return agent_id, log.get(agent_id).version


def test_saved_agent_comes_back_the_same(log: AgentLog) -> None:
    agent_id, version = live_agent(log)
    agent = log.get(agent_id)
    assert (agent.status, agent.version, agent.steps, agent.tokens.total) == (
        Status.COMPLETED,
        version,
        1,
        12,
    )
    assert agent.calls == {}


def test_time_travel_returns_each_past_version(log: AgentLog) -> None:
    agent_id, version = live_agent(log)
    assert log.get(agent_id, version=2).status is Status.RUNNING
    assert log.get(agent_id, version=6).calls["c1"].approver == "ana"
    assert [log.get(agent_id, version=v).version for v in range(1, version + 1)] == list(
        range(1, version + 1)
    )


def test_snapshots_are_taken_every_k_events_and_match_replay(log: AgentLog) -> None:
    agent_id, version = live_agent(log)
    assert log.snapshots is not None
    snapshots = list(log.snapshots.get(agent_id))
    # Saves end at versions 1, 2, 5, 6, 7, 8, 9: those crossing a multiple of 4 snapshot.
    assert [s.originator_version for s in snapshots] == [5, 8]
    replayed = log.get(agent_id, version=version)
    from_events: Agent | None = None
    for event in log.events_of(agent_id):
        from_events = event.mutate(from_events)
    assert from_events is not None
    assert replayed.state() == from_events.state()


def test_unknown_agent_is_a_clear_error(log: AgentLog) -> None:
    missing = uuid4()
    with pytest.raises(UnknownAgentError) as error:
        log.get(missing)
    assert error.value.agent_id == missing


def test_stored_events_equal_the_events_recorded(log: AgentLog) -> None:
    agent_id = log.create_agent("a", AgentConfig(tool_policies={"t": Policy.DENY}))
    agent = log.get(agent_id)
    agent.start_task("ünïcode ✓ goal")
    request = ToolCallRequest(call_id="x", tool="t", args={"n": 2**53, "nested": {"a": [1, None]}})
    agent.record_model_response("", model="m", tool_calls=(request,))
    agent.call_tool(request, effect=EffectClass.PURE)
    recorded = [*log.events_of(agent_id), *agent.collect_events()]
    log.save(*recorded[1:])
    assert list(log.events_of(agent_id)) == recorded


def test_loser_of_a_race_gets_integrity_error_and_nothing_is_written(log: AgentLog) -> None:
    agent_id = log.create_agent("a")
    first, second = log.get(agent_id), log.get(agent_id)
    first.start_task("one")
    second.start_task("two")
    log.save(first)
    with pytest.raises(IntegrityError):
        log.save(second)
    assert log.get(agent_id).goal == "one"


def test_agents_are_listed_in_creation_order(log: AgentLog) -> None:
    ids = [log.create_agent(f"a{i}") for i in range(3)]
    log.start_task(ids[0], "busy")
    assert list(log.agent_ids(page=2)) == ids
    assert log.resolve(str(ids[1])[:13]) == ids[1]


def test_compressed_and_encrypted_store_round_trips(backend_url: str) -> None:
    separator = "&" if "?" in backend_url else "?"
    key = AESCipher.create_key(16)
    app = open_log(f"{backend_url}{separator}compress=zlib", cipher_key=key)
    agent_id, version = live_agent(app)
    assert app.get(agent_id).version == version
    assert app.mapper.cipher is not None
    assert app.mapper.compressor is not None
    app.close()
