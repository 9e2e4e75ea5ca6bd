"""Idempotency keys name one call of one agent, not a call id: models reuse call ids.

A model may call ``c1`` in one turn and ``c1`` again, with the same arguments, in a
later one: two calls, two keys, two effects. Only the re-run of one started call (a
dead worker's call picked up again) shares its key. The real runtime runs on a real
SQLite store; the counting tools record, outside the store, each run and effect under
the key the tool was given.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar
from uuid import UUID

import pytest

from agentlog.adapters.scripted import ScriptedModel
from agentlog.domain import Agent, AgentConfig, AgentLog, Policy, Status, ToolCallRequest
from agentlog.domain.ports import Decision
from agentlog.domain.runtime import Runtime

from counting_tools import CountArgs, Ledger, counting_tools

E = TypeVar("E", bound=Agent.Event)
ARGS = {"label": "same"}
DONE = Decision(text="done", done=True)
ALLOWED = AgentConfig(tool_policies={"idempotent": Policy.ALLOW, "side_effecting": Policy.ALLOW})


def calls_c1(tool: str) -> Decision:
    """A model turn calling ``tool`` as ``c1``, always with the same arguments."""
    return Decision(
        text=f"calling {tool}",
        tool_calls=(ToolCallRequest(call_id="c1", tool=tool, args=ARGS),),
    )


def new_agent(log: AgentLog) -> UUID:
    """An agent with a running task, allowed to run the counting tools."""
    agent_id = log.create_agent("counter", ALLOWED)
    log.start_task(agent_id, "count twice")
    return agent_id


def runtime(
    log: AgentLog, ledger: Ledger, script: list[Decision], worker: str, *, later: bool = False
) -> Runtime:
    """A worker following the script; ``later``: its clock is an hour ahead, so a call
    started and left without an outcome looks dead to it."""
    offset = timedelta(hours=1) if later else timedelta()
    return Runtime(
        log,
        ScriptedModel(script),
        counting_tools(ledger, delay=0.0),
        worker_id=worker,
        now=lambda: datetime.now(UTC) + offset,
    )


def events(log: AgentLog, agent_id: UUID, kind: type[E]) -> list[E]:
    """The agent's stored events of one type."""
    return [e for e in log.events_of(agent_id) if isinstance(e, kind)]


def advance_until(runtime: Runtime, agent_id: UUID, done: Callable[[], bool]) -> None:
    """Advance one step at a time until ``done()`` (within a few steps)."""
    for _ in range(10):
        if done():
            return
        runtime.advance(agent_id)
    pytest.fail("the agent did not get there in 10 steps")


@pytest.mark.parametrize("tool", ["idempotent", "side_effecting"])
def test_a_call_id_reused_in_a_later_turn_gets_its_own_key_and_its_effect_happens_again(
    app: AgentLog, tmp_path: Path, tool: str
) -> None:
    ledger = Ledger(tmp_path / "ledger")
    agent_id = new_agent(app)
    script = [calls_c1(tool), calls_c1(tool), DONE]
    runtime(app, ledger, script, "w1").run(agent_id, max_steps=10)
    assert app.get(agent_id).status is Status.COMPLETED
    called = events(app, agent_id, Agent.ToolCalled)
    assert [(c.call_id, c.args) for c in called] == [("c1", ARGS), ("c1", ARGS)]
    starts = events(app, agent_id, Agent.ToolStarted)
    assert [(s.call_id, s.attempt) for s in starts] == [("c1", 1), ("c1", 1)]
    first, second = (s.idempotency_key for s in starts)
    assert first != second
    assert ledger.runs(tool) == {first: 1, second: 1}
    assert ledger.effects(tool) == {first: 1, second: 1}  # the second call did happen


def test_a_dead_call_is_rerun_with_its_own_key_not_the_key_of_the_earlier_call_c1(
    app: AgentLog, tmp_path: Path
) -> None:
    ledger = Ledger(tmp_path / "ledger")
    agent_id = new_agent(app)
    script = [calls_c1("idempotent"), calls_c1("idempotent"), DONE]
    first_worker = runtime(app, ledger, script, "w1")
    advance_until(first_worker, agent_id, lambda: len(events(app, agent_id, Agent.ToolCalled)) == 2)
    agent = app.get(agent_id)  # the second c1 is recorded, not started: a worker claims it,
    agent.start_tool("c1", worker_id="dead")  # does its effect, and dies before the outcome
    app.save(agent)
    first_worker.tools["idempotent"].run(CountArgs(**ARGS), agent.calls["c1"].idempotency_key)
    runtime(app, ledger, script, "w2", later=True).run(agent_id, max_steps=10)
    assert app.get(agent_id).status is Status.COMPLETED
    starts = events(app, agent_id, Agent.ToolStarted)
    assert [(s.worker_id, s.attempt) for s in starts] == [("w1", 1), ("dead", 1), ("w2", 2)]
    earlier, claimed, rerun = (s.idempotency_key for s in starts)
    assert claimed == rerun  # the re-run of the started call keeps its key...
    assert earlier != claimed  # ...which is not the key of the earlier call c1
    assert ledger.runs("idempotent") == {earlier: 1, claimed: 2}
    assert ledger.effects("idempotent") == {earlier: 1, claimed: 1}


def test_two_agents_using_the_same_call_id_get_different_keys_and_both_effects_happen(
    app: AgentLog, tmp_path: Path
) -> None:
    ledger = Ledger(tmp_path / "ledger")
    script = [calls_c1("idempotent"), DONE]
    agents = [new_agent(app), new_agent(app)]
    for agent_id in agents:
        runtime(app, ledger, script, "w1").run(agent_id, max_steps=10)
    keys = [s.idempotency_key for a in agents for s in events(app, a, Agent.ToolStarted)]
    assert len(keys) == 2
    assert keys[0] != keys[1]
    assert ledger.effects("idempotent") == {keys[0]: 1, keys[1]: 1}
