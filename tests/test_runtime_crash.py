"""SIGKILL real workers at random moments; a new worker always finishes the agents.

Each agent life runs two scripted agents that call pure, idempotent and side-effecting
tools (slow ones, so that kills land mid-tool) in one worker process, which is killed at
a random time after it starts work, several times per life; then a last worker
finishes. The counting tools count executions outside the store, so the test can tell
what really ran, whatever the log says.

Kill points: ``AGENTLOG_CRASH_POINTS`` in all (default 50, split over SQLite and
PostgreSQL; 1000 for the thorough profile). Kill times come from a seeded generator:
``AGENTLOG_CRASH_SEED`` replays a run's kill times (the seed is printed).
"""

from __future__ import annotations

import itertools
import os
import random
import subprocess
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from uuid import UUID

import pytest

from agentlog.adapters.storage import open_log
from agentlog.domain import (
    Agent,
    AgentConfig,
    AgentLog,
    Aggregate,
    EffectClass,
    Status,
    ToolCallRequest,
)
from agentlog.domain.ports import Decision

from conftest import store_url
from counting_tools import Ledger, assert_linear_history
from worker_child import Workers

POINTS = int(os.environ.get("AGENTLOG_CRASH_POINTS", "50"))
SEED = int(os.environ.get("AGENTLOG_CRASH_SEED", random.randrange(10**6)))
BACKENDS = ["sqlite", "postgres"]
KILLS_PER_LIFE = 5
AGENTS_PER_LIFE = 2
KILL_WINDOW = 0.6  # seconds after a worker starts; a life is ~1.5 s of one worker's work
CONFIG = AgentConfig(tool_timeout=0.3, max_tool_failures=10)
OUTCOMES = (Agent.ToolSucceeded, Agent.ToolFailed)


def _turn(text: str, *calls: tuple[str, str]) -> Decision:
    requests = (ToolCallRequest(call_id=c, tool=t, args={"label": c}) for c, t in calls)
    return Decision(text=text, tool_calls=tuple(requests))


SCRIPT = [
    _turn("look", ("p1", "slow_pure"), ("i1", "idempotent")),
    _turn("post", ("s1", "slow_side_effecting")),
    _turn("sync", ("i2", "slow_idempotent"), ("s2", "side_effecting")),
    _turn("post again", ("s3", "slow_side_effecting"), ("p2", "pure")),
    _turn("both", ("i3", "slow_idempotent"), ("s4", "slow_side_effecting")),
    Decision(text="done", done=True),
]
CALLS = [call for decision in SCRIPT for call in decision.tool_calls]

# What the event at the version a worker reported must be, by the kind of step.
REPORTED: dict[str, tuple[type[Aggregate.Event], ...]] = {
    "model": (Agent.ModelResponded, Agent.ToolCalled, Agent.TaskCompleted),
    "tool": (*OUTCOMES, Agent.ToolOutcomeUnknown),
    "unknown": (Agent.ToolOutcomeUnknown,),
    "reconciled": (Agent.ToolSucceeded,),
}


def live(workers: Workers, agents: Sequence[UUID], kills: int, rng: random.Random) -> int:
    """Kill up to ``kills`` workers at random moments, then let one finish; kills that landed."""
    landed, ready = 0, workers.spawn(agents)
    for _ in range(kills):
        worker, ready = ready, workers.spawn(agents)
        workers.go(worker)
        try:
            worker.wait(timeout=rng.uniform(0, KILL_WINDOW))
        except subprocess.TimeoutExpired:
            workers.kill(worker)
            landed += 1
        else:
            workers.finish(worker)  # it finished the agents before the kill came
            break
    workers.go(ready)
    workers.finish(ready)
    return landed


def check_agent(log: AgentLog, ledger: Ledger, agent_id: UUID, keys: set[str]) -> Counter[str]:
    """The agent finished with a linear, chained history; every call resolved by its class.

    ``keys``: the idempotency keys seen so far (each call has its own, on every attempt).
    """
    agent = log.get(agent_id)
    assert agent.status is Status.COMPLETED, agent.last_error
    events = list(log.events_of(agent_id))
    assert assert_linear_history(events) == agent.version
    responses = [e.text for e in events if isinstance(e, Agent.ModelResponded)]
    assert responses == [decision.text for decision in SCRIPT]  # none lost, none twice
    calls: defaultdict[str, list[Aggregate.Event]] = defaultdict(list)
    for event in events:
        if (call_id := getattr(event, "call_id", None)) is not None:
            calls[call_id].append(event)
    assert list(calls) == [call.call_id for call in CALLS]
    runs, effects, tally = ledger.runs(), ledger.effects(), Counter[str]()
    for history in calls.values():
        (key,) = {e.idempotency_key for e in history if isinstance(e, Agent.ToolStarted)}
        assert key not in keys, f"two calls share the idempotency key {key}"
        keys.add(key)
        tally += check_call(key, history, runs[key])
        tally += check_effect(key, history, runs[key], effects[key])
    return tally


def check_call(key: str, history: list[Aggregate.Event], runs: int) -> Counter[str]:
    """Every start without an outcome was followed by what its effect class calls for."""
    called, *rest = history
    assert isinstance(called, Agent.ToolCalled)
    starts = [e for e in rest if isinstance(e, Agent.ToolStarted)]
    assert [s.attempt for s in starts] == list(range(1, len(starts) + 1))
    assert runs <= len(starts), f"{key} ran {runs} times but was started {len(starts)} times"
    assert [type(e) for e in rest if isinstance(e, OUTCOMES)] == [type(rest[-1])]
    tally = Counter[str]()
    for before, after in itertools.pairwise(rest):
        if isinstance(before, Agent.ToolStarted) and not isinstance(after, OUTCOMES):
            tally["start without outcome"] += 1
            if called.effect is EffectClass.SIDE_EFFECTING:
                assert isinstance(after, Agent.ToolOutcomeUnknown), (key, after)
            else:
                assert isinstance(after, Agent.ToolStarted), (key, after)
                tally[f"{called.effect}: re-run with the same key"] += 1
        if isinstance(before, Agent.ToolOutcomeUnknown):
            assert called.effect is EffectClass.SIDE_EFFECTING
            if isinstance(after, Agent.ToolStarted):
                tally["side_effecting: reconciled, had not happened, ran it"] += 1
            else:
                assert isinstance(after, Agent.ToolSucceeded), (key, after)
                assert after.result == {"reconciled": True}
                tally["side_effecting: reconciled, had happened"] += 1
    if isinstance(rest[-1], Agent.ToolFailed):
        tally[f"{called.effect}: failed ({rest[-1].error[:20]})"] += 1
    return tally


def check_effect(key: str, history: list[Aggregate.Event], runs: int, effects: int) -> Counter[str]:
    """Side effects happen at most once, idempotent ones once per key; once if succeeded."""
    called, outcome = history[0], history[-1]
    assert isinstance(called, Agent.ToolCalled)
    if called.effect is EffectClass.PURE:
        assert effects == 0
        return Counter()
    assert effects <= 1, f"{called.tool} {key}: the effect happened {effects} times"
    if isinstance(outcome, Agent.ToolSucceeded):
        assert effects == 1, f"{called.tool} {key}: succeeded without its effect"
    return Counter({f"{called.effect}: ran more than once, effect once": runs > 1})


def check_reported(log: AgentLog, steps: list[tuple[UUID, str, int, str]]) -> int:
    """What any worker, killed or not, reported as saved is in the log, as reported."""
    histories = {agent_id: list(log.events_of(agent_id)) for agent_id, *_ in steps}
    checked = 0
    for agent_id, kind, version, detail in steps:
        if kind not in REPORTED:
            continue
        event = histories[agent_id][version - 1]
        assert isinstance(event, REPORTED[kind]), (agent_id, kind, version, event)
        if kind != "model":
            assert getattr(event, "call_id", None) == detail.split(":")[0]
        checked += 1
    return checked


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_killed_workers_never_repeat_a_side_effect_and_lose_no_event(
    backend: str, tmp_path: Path
) -> None:
    url = store_url(backend, tmp_path)
    points, rng = POINTS // len(BACKENDS), random.Random(f"{SEED}:{backend}")
    print(f"AGENTLOG_CRASH_SEED={SEED} backend={backend} points={points}")
    log, workers = open_log(url), Workers(url, tmp_path, SCRIPT, ["--snapshot-interval", "7"])
    kills, lives, tally, keys, started = 0, 0, Counter[str](), set[str](), time.monotonic()
    try:
        while kills < points:
            agents = [log.create_agent(f"life{lives}-{n}", CONFIG) for n in range(AGENTS_PER_LIFE)]
            for agent_id in agents:
                log.start_task(agent_id, "call every kind of tool")
            kills += live(workers, agents, min(KILLS_PER_LIFE, points - kills), rng)
            lives += 1
            for agent_id in agents:
                tally += check_agent(log, workers.ledger, agent_id, keys)
        reported = check_reported(log, workers.steps())
        assert workers.errors() == []
    finally:
        workers.close()
        log.close()
    seconds = time.monotonic() - started
    print(f"{kills} kills, {lives} lives, {len(workers.spawned)} workers, {seconds:.1f}s")
    print(f"{reported} steps reported by workers found in the log as reported")
    print("\n".join(f"  {n:4d}  {what}" for what, n in sorted(tally.items())))
    assert tally["start without outcome"] > 0, "no kill landed mid-tool: widen the window"
