"""An unknown outcome never strands an agent that a tool can settle: a worker taking
agents from the runnable view picks it up and finishes it, with no one running it by hand.

A worker killed right after recording ``ToolOutcomeUnknown`` is simulated by saving the
call's start (and, where it matters, doing its effect) and its unknown outcome by hand.
Then ``Worker.work``, the loop ``agentlog worker`` runs, goes on from the views alone;
it builds each agent's model from its config (``scripted:FILE``). Only an outcome the
tool cannot tell waits for a person, and only side-effecting calls wait behind it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TypeVar
from uuid import UUID

import pytest

from agentlog.adapters.tools import ToolRegistry
from agentlog.adapters.views import Store, open_store
from agentlog.adapters.worker import Worker
from agentlog.domain import Agent, AgentConfig, CallStage, EffectClass, Status, ToolCallRequest
from agentlog.domain.ports import Decision, Tool
from agentlog.domain.runtime import Step, StepKind
from agentlog.projections import queries

from conftest import store_url
from counting_tools import CountArgs, CountingTool, Ledger, counting_tools

E = TypeVar("E", bound=Agent.Event)
DONE = Decision(text="done", done=True)
GUARD = 30.0
"""Seconds a worker may take to go idle; one that takes longer never would."""


def turn(*calls: tuple[str, str]) -> Decision:
    """A model turn asking for calls (call id, tool), each labelled with its id."""
    requests = (ToolCallRequest(call_id=c, tool=t, args={"label": c}) for c, t in calls)
    return Decision(text="calling", tool_calls=tuple(requests))


class Floor:
    """A store with its views, a ledger of tool runs, and agents whose config names a
    scripted model."""

    def __init__(self, store: Store, folder: Path, *script: Decision) -> None:
        self.store, self.log, self.ledger = store, store.log, Ledger(folder / "ledger")
        self.tools = counting_tools(self.ledger, delay=0.0)
        self.unsure = self.tools | {
            "side_effecting": CountingTool(
                "side_effecting", EffectClass.SIDE_EFFECTING, self.ledger, can_reconcile=False
            )
        }
        self.script = folder / "script.json"
        self.script.write_text(json.dumps([d.model_dump(mode="json") for d in script]))

    def agent(self) -> UUID:
        """A new agent with a running task, which a worker has asked the model once."""
        config = AgentConfig(model=f"scripted:{self.script}")
        agent_id = self.log.create_agent("a", config)
        self.log.start_task(agent_id, "count")
        step = Worker(self.store, ToolRegistry(self.tools), name="first").step(agent_id)
        assert step.kind is StepKind.MODEL
        return agent_id

    def die_after_unknown(self, agent_id: UUID, call_id: str, *, after_effect: bool) -> None:
        """A worker claims the call, maybe does its effect, finds no outcome, records it
        as unknown, and dies before it reconciles."""
        agent = self.log.get(agent_id)
        agent.start_tool(call_id, worker_id="dead")
        self.log.save(agent)
        if after_effect:
            call = agent.calls[call_id]
            self.tools[call.tool].run(CountArgs(label=call_id), call.idempotency_key)
        agent.mark_outcome_unknown(call_id, actor="worker:dead")
        self.log.save(agent)

    def work(self, tools: Mapping[str, Tool] | None = None) -> list[StepKind]:
        """Run a worker until it goes idle (it must, within GUARD); its steps' kinds."""
        steps: list[Step] = []
        stop = threading.Event()
        guard = threading.Timer(GUARD, stop.set)
        guard.start()
        try:
            worker = Worker(self.store, ToolRegistry(tools or self.tools), name="worker")
            worker.work(poll=0.01, exit_when_idle=True, on_step=steps.append, stop=stop)
        finally:
            guard.cancel()
        assert not stop.is_set(), f"the worker did not go idle in {GUARD}s: {steps[-5:]}"
        return [step.kind for step in steps]

    def runnable(self) -> list[UUID]:
        """What the runnable view lists (caught up first, as a worker reads it)."""
        return Worker(self.store, ToolRegistry()).runnable()

    def phase(self, agent_id: UUID) -> str:
        """The phase ``agentlog ls`` shows (the state view's status column)."""
        self.store.views.catch_up(["state"])
        with self.store.views.engine.connect() as conn:
            rows = queries.states(conn, self.store.views.table(conn, "state"))
        (status,) = [row["status"] for row in rows if row["agent_id"] == str(agent_id)]
        return str(status)

    def events(self, agent_id: UUID, kind: type[E]) -> list[E]:
        """The agent's stored events of one type."""
        return [e for e in self.log.events_of(agent_id) if isinstance(e, kind)]

    def key(self, agent_id: UUID, call_id: str) -> str:
        """The idempotency key every start of the call was given (there must be one)."""
        starts = self.events(agent_id, Agent.ToolStarted)
        (key,) = {s.idempotency_key for s in starts if s.call_id == call_id}
        return key

    def started(self, agent_id: UUID) -> list[str]:
        """Call ids in the order their starts were recorded (one per attempt)."""
        return [s.call_id for s in self.events(agent_id, Agent.ToolStarted)]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A fresh store with its views, on a SQLite file and on PostgreSQL; the views catch
    up when a worker looks for work (or the test reads one), not after each save."""
    store = open_store(store_url(request.param, tmp_path), embedded=False)  # as workers do
    yield store
    store.close()


@pytest.mark.parametrize(
    ("after_effect", "settled_by"),
    [(True, StepKind.RECONCILED), (False, StepKind.TOOL)],
    ids=["it-had-happened", "it-had-not-happened"],
)
def test_worker_picks_up_an_unknown_outcome_its_tool_can_settle_and_finishes_the_agent(
    store: Store, tmp_path: Path, after_effect: bool, settled_by: StepKind
) -> None:
    floor = Floor(store, tmp_path, turn(("c1", "side_effecting")), DONE)
    agent_id = floor.agent()
    floor.die_after_unknown(agent_id, "c1", after_effect=after_effect)
    assert floor.runnable() == [agent_id]
    assert floor.phase(agent_id) == "running"
    assert floor.work() == [settled_by, StepKind.MODEL, StepKind.FINISHED]
    assert floor.log.get(agent_id).status is Status.COMPLETED
    assert (floor.runnable(), floor.phase(agent_id)) == ([], "completed")
    key = floor.key(agent_id, "c1")
    assert floor.ledger.runs() == floor.ledger.effects() == {key: 1}
    (succeeded,) = floor.events(agent_id, Agent.ToolSucceeded)
    if after_effect:
        assert succeeded.result == {"reconciled": True}
        assert floor.started(agent_id) == ["c1"]
    else:
        assert succeeded.result == {"label": "c1", "tool": "side_effecting"}
        assert floor.started(agent_id) == ["c1", "c1"]
    assert floor.events(agent_id, Agent.OutcomeUndecided) == []


def test_unknown_outcome_its_tool_cannot_tell_waits_for_a_person_then_finishes(
    store: Store, tmp_path: Path
) -> None:
    floor = Floor(store, tmp_path, turn(("c1", "side_effecting")), DONE)
    agent_id = floor.agent()
    floor.die_after_unknown(agent_id, "c1", after_effect=True)
    assert floor.runnable() == [agent_id]  # the tool may yet tell: a worker must look
    assert floor.work(floor.unsure) == [StepKind.UNDECIDED, StepKind.BLOCKED]
    (undecided,) = floor.events(agent_id, Agent.OutcomeUndecided)
    assert (undecided.call_id, undecided.reason) == ("c1", "side_effecting cannot tell")
    assert (floor.runnable(), floor.phase(agent_id)) == ([], "blocked")
    assert floor.work(floor.unsure) == []  # nothing to do: the worker exits at once
    assert len(floor.events(agent_id, Agent.OutcomeUndecided)) == 1
    floor.log.settle(agent_id, "c1", happened=True, by="ann")
    assert (floor.runnable(), floor.phase(agent_id)) == ([agent_id], "running")
    assert floor.work(floor.unsure) == [StepKind.MODEL, StepKind.FINISHED]
    assert floor.log.get(agent_id).status is Status.COMPLETED
    key = floor.key(agent_id, "c1")
    assert floor.ledger.runs() == floor.ledger.effects() == {key: 1}  # the dead worker's run
    assert floor.started(agent_id) == ["c1"]


def test_harmless_calls_go_on_behind_an_undecided_outcome_and_side_effects_wait(
    store: Store, tmp_path: Path
) -> None:
    calls = (("s1", "side_effecting"), ("p1", "pure"), ("i1", "idempotent"))
    floor = Floor(store, tmp_path, turn(*calls, ("s2", "side_effecting")), DONE)
    agent_id = floor.agent()
    floor.die_after_unknown(agent_id, "s1", after_effect=False)
    steps = floor.work(floor.unsure)
    assert steps == [StepKind.UNDECIDED, StepKind.TOOL, StepKind.TOOL, StepKind.BLOCKED]
    assert floor.started(agent_id) == ["s1", "p1", "i1"]
    p1, i1 = floor.key(agent_id, "p1"), floor.key(agent_id, "i1")
    assert floor.ledger.runs() == {p1: 1, i1: 1}
    assert floor.ledger.effects() == {i1: 1}
    calls_left = floor.log.get(agent_id).calls
    assert {c: s.stage for c, s in calls_left.items()} == {
        "s1": CallStage.OUTCOME_UNKNOWN,
        "s2": CallStage.REQUESTED,
    }
    assert (floor.runnable(), floor.phase(agent_id)) == ([], "blocked")
    floor.log.settle(agent_id, "s1", happened=False, by="ann")
    assert floor.work(floor.unsure) == [StepKind.TOOL, StepKind.MODEL, StepKind.FINISHED]
    assert floor.log.get(agent_id).status is Status.COMPLETED
    assert floor.started(agent_id) == ["s1", "p1", "i1", "s2"]
    s2 = floor.key(agent_id, "s2")
    assert floor.ledger.runs() == {p1: 1, i1: 1, s2: 1}  # s1 never ran: ann said so
    assert floor.ledger.effects() == {i1: 1, s2: 1}
