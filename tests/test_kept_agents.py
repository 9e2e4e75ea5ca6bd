"""A worker's kept agents: handed over without copies, never one that is not as stored,
never one another thread holds; the events it stored serve the model's context."""

from __future__ import annotations

import itertools
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any, ClassVar
from uuid import UUID

import pytest
from eventsourcing.persistence import IntegrityError
from pydantic import BaseModel, JsonValue

from agentlog.adapters.scripted import FunctionModel
from agentlog.adapters.storage import open_log
from agentlog.domain import Agent, AgentConfig, EffectClass, Policy, ToolCallRequest
from agentlog.domain.application import AgentLog
from agentlog.domain.ports import Context, Decision
from agentlog.domain.runtime import Runtime, StepKind

from counting_tools import assert_linear_history


class NoArgs(BaseModel):
    """No arguments."""


@pytest.fixture
def worker(sqlite_url: str) -> Iterator[AgentLog]:
    log = open_log(sqlite_url, aggregate_cache=10)
    yield log
    log.close()


@pytest.fixture
def other(sqlite_url: str) -> Iterator[AgentLog]:
    """Another process writing to the same store."""
    log = open_log(sqlite_url)
    yield log
    log.close()


def new_agent(log: AgentLog) -> Agent:
    agent = Agent.create("kept", AgentConfig(tool_policies={"echo": Policy.ALLOW}))
    agent.start_task("keep me")
    log.save(agent)
    return agent


def call(agent: Agent, call_id: str) -> None:
    request = ToolCallRequest(call_id=call_id, tool="echo", args={"text": call_id})
    agent.record_model_response("calling", model="m", tool_calls=(request,))
    agent.call_tool(request, effect=EffectClass.PURE, policy=Policy.ALLOW)


def count_decoding(log: AgentLog, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The versions the log decodes from stored rows from now on."""
    decoded: list[int] = []
    to_domain_event = log.mapper.to_domain_event

    def spy(stored: Any) -> Any:
        decoded.append(stored.originator_version)
        return to_domain_event(stored)

    monkeypatch.setattr(log.mapper, "to_domain_event", spy)
    return decoded


def test_a_kept_agent_is_handed_over_without_a_copy_or_decoding(
    worker: AgentLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent_id = new_agent(worker).id
    agent = worker.take(agent_id)
    call(agent, "c1")
    worker.save(agent)
    worker.keep(agent)
    decoded = count_decoding(worker, monkeypatch)
    again = worker.take(agent_id)
    assert again is agent
    assert decoded == []
    assert again.state() == worker.get(agent_id, version=again.version).state()


@pytest.mark.parametrize("handed_back", [False, True])
def test_an_agent_whose_save_failed_is_never_handed_out_again(
    worker: AgentLog, other: AgentLog, handed_back: bool
) -> None:
    agent_id = new_agent(worker).id
    agent = worker.take(agent_id)
    other.send(agent_id, "I was first")
    call(agent, "c1")
    with pytest.raises(IntegrityError):
        worker.save(agent)
    if handed_back:
        worker.keep(agent)  # as a careless caller would
    again = worker.take(agent_id)
    assert again is not agent
    assert "c1" not in again.calls
    assert again.version == other.get(agent_id).version


def test_an_agent_changed_and_not_saved_is_not_kept(worker: AgentLog) -> None:
    agent_id = new_agent(worker).id
    stored = worker.get(agent_id).version
    agent = worker.take(agent_id)
    call(agent, "c1")  # never saved
    worker.keep(agent)
    again = worker.take(agent_id)
    assert again is not agent
    assert again.version == stored
    assert "c1" not in again.calls


def test_a_kept_agent_catches_up_with_what_others_stored(worker: AgentLog, other: AgentLog) -> None:
    agent_id = new_agent(worker).id
    worker.keep(worker.take(agent_id))
    other.send(agent_id, "from elsewhere")
    assert worker.take(agent_id).version == other.get(agent_id).version


def test_another_thread_never_gets_the_agent_a_thread_holds(
    worker: AgentLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent_id = new_agent(worker).id
    held = worker.take(agent_id)
    call(held, "c1")
    worker.save(held)  # still held: this thread may go on using it
    decoded = count_decoding(worker, monkeypatch)
    got: list[Agent] = []
    thread = threading.Thread(target=lambda: got.append(worker.take(agent_id)))
    thread.start()
    thread.join()
    assert got[0] is not held
    assert decoded  # loaded from the store: never a copy of an object another thread holds
    assert got[0].state() == held.state()
    mine = worker.take(agent_id)  # this thread again: a copy, it still holds the original
    assert mine is not held
    assert mine.state() == held.state()


def test_get_always_hands_out_a_copy(worker: AgentLog) -> None:
    agent_id = new_agent(worker).id
    agent = worker.take(agent_id)
    worker.keep(agent)
    copy = worker.get(agent_id)
    assert copy is not agent
    call(copy, "c1")
    assert "c1" not in worker.take(agent_id).calls


def test_recent_events_are_the_stored_events_without_reading_them(
    worker: AgentLog, other: AgentLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = new_agent(worker)
    for n in range(3):
        agent = worker.take(agent.id)
        call(agent, f"c{n}")
        agent.start_tool(f"c{n}", worker_id="w")
        agent.succeed(f"c{n}", "done", actor="worker:w")
        worker.save(agent)
        worker.keep(agent)
    stored = list(worker.events_of(agent.id))
    decoded = count_decoding(worker, monkeypatch)
    assert list(worker.recent_events(agent.id, after=4, upto=agent.version)) == stored[4:]
    assert decoded == []
    other.send(agent.id, "a gap in what this worker saw")
    later = worker.take(agent.id)  # reads the message: kept too
    call(later, "c9")
    worker.save(later)
    decoded.clear()
    everything = list(worker.events_of(agent.id))
    assert decoded  # events_of still reads the store
    decoded.clear()
    recent = list(worker.recent_events(agent.id, after=agent.version, upto=later.version))
    assert recent == everything[agent.version :]
    assert decoded == []


def test_recent_events_read_what_was_not_seen_here(worker: AgentLog, other: AgentLog) -> None:
    agent_id = new_agent(worker).id
    other.send(agent_id, "stored elsewhere")
    agent = worker.get(agent_id, version=3)  # loaded at a version: the cache never saw 3
    call(agent, "c1")
    worker.save(agent)
    assert list(worker.recent_events(agent_id, after=0, upto=agent.version)) == list(
        worker.events_of(agent_id)
    )


class CountingTool:
    """A pure tool, allowed, that counts its runs by idempotency key."""

    name = "count"
    description = "Counts its runs."
    args_model: ClassVar[type[BaseModel]] = NoArgs
    effect = EffectClass.PURE
    policy = Policy.ALLOW

    def __init__(self) -> None:
        self.runs: Counter[str] = Counter()
        self.lock = threading.Lock()

    def run(self, args: BaseModel, idempotency_key: str) -> JsonValue:
        """Count."""
        with self.lock:
            self.runs[idempotency_key] += 1
        return None

    def reconcile(self, idempotency_key: str) -> bool | None:
        """Cannot tell."""
        return None


def test_threads_advancing_their_own_agents_share_one_cached_log(worker: AgentLog) -> None:
    tool = CountingTool()
    calls = itertools.count()

    def decide(context: Context) -> Decision:
        request = ToolCallRequest(call_id=f"c{next(calls)}", tool=tool.name, args={})
        return Decision(text="again", tool_calls=(request,))

    model = FunctionModel(decide, name="m")
    agents = [
        worker.create_agent(f"a{n}", AgentConfig(max_steps=10**6), goal="count") for n in range(4)
    ]

    def advance(agent_id: UUID) -> None:
        runtime = Runtime(worker, model, {tool.name: tool}, worker_id=str(agent_id))
        for _ in range(30):
            assert runtime.advance(agent_id).kind in (StepKind.MODEL, StepKind.TOOL)

    threads = [threading.Thread(target=advance, args=(a,)) for a in agents]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    succeeded = 0
    for agent_id in agents:
        events = list(worker.events_of(agent_id))
        assert assert_linear_history(events) == worker.get(agent_id).version
        assert worker.get(agent_id).state() == worker.get(agent_id, version=len(events)).state()
        succeeded += sum(isinstance(e, Agent.ToolSucceeded) for e in events)
    assert succeeded == 4 * 15
    assert set(tool.runs.values()) == {1}  # every call ran exactly once
    assert len(tool.runs) == succeeded
