"""Snapshots: every K events, bounded in size, and a load reads only snapshot + tail."""

from __future__ import annotations

from uuid import UUID

import pytest
from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import StoredEvent

from agentlog.adapters.storage import open_log
from agentlog.domain import AgentLog, EffectClass, Policy, TokenUsage, ToolCallRequest
from agentlog.domain.application import DEFAULT_SNAPSHOT_INTERVAL


def one_step(log: AgentLog, agent_id: UUID, n: int) -> None:
    """A model response with a tool call that runs and returns: four events."""
    assert log.snapshots is not None
    agent = log.get(agent_id)
    call = ToolCallRequest(call_id=f"c{n}", tool="calc", args={"expr": f"{n}+1"})
    agent.record_model_response(
        "thinking " * 20, model="m", tool_calls=(call,), usage=TokenUsage(prompt=100, completion=20)
    )
    agent.call_tool(call, effect=EffectClass.PURE, policy=Policy.ALLOW)
    agent.start_tool(call.call_id, worker_id="w")
    agent.succeed(call.call_id, n + 1)
    log.save(agent)


def snapshot_sizes(log: AgentLog, agent_id: UUID) -> list[int]:
    assert log.snapshots is not None
    return [len(s.state) for s in log.snapshots.recorder.select_events(agent_id)]


def test_snapshot_size_does_not_grow_with_history(sqlite_url: str) -> None:
    log = open_log(sqlite_url, snapshot_interval=20)
    agent_id = log.create_agent("long-lived")
    log.start_task(agent_id, "count")
    for n in range(400):
        one_step(log, agent_id, n)
    sizes = snapshot_sizes(log, agent_id)
    assert len(sizes) == (2 + 400 * 4) // 20
    assert max(sizes) - min(sizes) < 40  # only counters' digits and hashes vary


def test_load_reads_only_the_snapshot_and_its_tail(sqlite_url: str) -> None:
    log = open_log(sqlite_url, snapshot_interval=10)
    agent_id = log.create_agent("a")
    log.start_task(agent_id, "count")
    for n in range(30):
        one_step(log, agent_id, n)
    fresh = open_log(sqlite_url, snapshot_interval=10)
    read: list[int] = []
    original = fresh.mapper.to_domain_event

    def counting(stored: StoredEvent) -> DomainEventProtocol[UUID]:
        read.append(stored.originator_version)
        return original(stored)

    fresh.mapper.to_domain_event = counting  # type: ignore[method-assign,assignment]
    agent = fresh.get(agent_id)
    assert agent.version == 2 + 30 * 4
    assert len(read) <= 1 + 10  # the newest snapshot, then fewer than K events after it


def test_interval_comes_from_the_environment(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert open_log(sqlite_url).snapshot_interval == DEFAULT_SNAPSHOT_INTERVAL
    monkeypatch.setenv("AGENTLOG_SNAPSHOT_INTERVAL", "7")
    assert open_log(sqlite_url).snapshot_interval == 7


def test_interval_zero_turns_snapshots_off(sqlite_url: str) -> None:
    with_snapshots = open_log(sqlite_url, snapshot_interval=5)
    agent_id = with_snapshots.create_agent("a")
    with_snapshots.start_task(agent_id, "count")
    one_step(with_snapshots, agent_id, 0)
    assert snapshot_sizes(with_snapshots, agent_id) != []
    without = open_log(sqlite_url, snapshot_interval=0)
    assert without.snapshots is None  # loads replay the whole log
    assert without.get(agent_id).state() == with_snapshots.get(agent_id).state()
