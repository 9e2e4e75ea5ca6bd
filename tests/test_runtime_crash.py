"""SIGKILL real workers at random moments; a new worker always finishes the agents.

Each agent life runs two scripted agents that call pure, idempotent and side-effecting
tools (slow ones, so that kills land mid-tool) in one worker process, which is killed at
a random time after it starts work, several times per life; then a last worker
finishes. The counting tools count executions outside the store, so the test can tell
what really ran, whatever the log says.

The same lives are then run by view workers: the production loop (``Worker.work`` on
the runnable view, exiting when idle), which takes whatever the view lists. When a
killed worker left a side-effecting call started, the next one is killed right after it
records ``ToolOutcomeUnknown`` (it pauses there): every agent must still be finished by
the workers alone, none left blocked, no side effect twice.

Kill points: ``AGENTLOG_CRASH_POINTS`` in all (default 50, split over SQLite and
PostgreSQL; 1000 for the thorough profile), ``AGENTLOG_VIEW_CRASH_POINTS`` for view
workers (default 16). Kill times come from a seeded generator: ``AGENTLOG_CRASH_SEED``
replays a run's kill times (the seed is printed).
"""

from __future__ import annotations

import itertools
import os
import random
import subprocess
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from uuid import UUID

import pytest

from agentlog.adapters.storage import open_log
from agentlog.adapters.tools import ToolRegistry
from agentlog.adapters.views import Store, open_store
from agentlog.adapters.worker import Worker
from agentlog.domain import (
    Agent,
    AgentConfig,
    AgentLog,
    Aggregate,
    CallStage,
    EffectClass,
    Status,
    ToolCallRequest,
)
from agentlog.domain.ports import Decision
from agentlog.projections import queries

from conftest import store_url
from counting_tools import SLOW_DELAY, Ledger, assert_linear_history
from worker_child import Workers

POINTS = int(os.environ.get("AGENTLOG_CRASH_POINTS", "50"))
VIEW_POINTS = int(os.environ.get("AGENTLOG_VIEW_CRASH_POINTS", "16"))
SEED = int(os.environ.get("AGENTLOG_CRASH_SEED", random.randrange(10**6)))
BACKENDS = ["sqlite", "postgres"]
KILLS_PER_LIFE = 5
AGENTS_PER_LIFE = 2
KILL_WINDOW = 0.6  # seconds after a worker starts; a life is ~1.5 s of one worker's work
CONFIG = AgentConfig(tool_timeout=0.3, max_tool_failures=10)
OUTCOMES = (Agent.ToolSucceeded, Agent.ToolFailed)
PAUSE_AFTER_UNKNOWN = 0.3  # seconds a view worker sleeps after recording an unknown outcome
UNKNOWN_WAIT = 5.0  # seconds to wait for a side-effecting call to start, or its unknown outcome
EXTRA_KILLS = (
    3  # a run whose kills missed a case it names goes on, up to this many times its points
)


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


Moment = Callable[[subprocess.Popen[str]], bool]
"""Waits for the moment to kill a working worker; False if it exited first."""


def at_random(rng: random.Random) -> Moment:
    """Kill at a random time in the first KILL_WINDOW seconds of work."""

    def moment(worker: subprocess.Popen[str]) -> bool:
        try:
            worker.wait(timeout=rng.uniform(0, KILL_WINDOW))
        except subprocess.TimeoutExpired:
            return True
        return False

    return moment


def more_lives(kills: int, points: int, covered: bool) -> bool:
    """Whether to run another life: until ``points`` kills landed and the cases the test
    names were hit, but at most ``EXTRA_KILLS`` times ``points`` kills (kill times are
    random, so a short run can miss a narrow moment; it goes on rather than fail)."""
    return kills < points or (not covered and kills < EXTRA_KILLS * points)


def kills_this_life(kills: int, points: int) -> int:
    """The kills to try in the next life: what is left of ``points``, or a whole life's
    worth once they are spent (a kill after an unknown outcome needs an earlier kill in
    the same life)."""
    return KILLS_PER_LIFE if kills >= points else min(KILLS_PER_LIFE, points - kills)


def live(
    workers: Workers,
    agents: Sequence[UUID],
    kills: int,
    moment: Moment,
    after_kill: Callable[[], None] = lambda: None,
) -> int:
    """Kill up to ``kills`` workers, each at its moment, then let one finish; kills that landed."""
    landed, ready = 0, workers.spawn(agents)
    for _ in range(kills):
        worker, ready = ready, workers.spawn(agents)
        workers.go(worker)
        if not moment(worker):
            workers.finish(worker)  # it finished the agents before the kill came
            break
        if not workers.kill(worker):
            break  # it finished the agents just before the kill came
        landed += 1
        after_kill()
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
        while more_lives(kills, points, tally["start without outcome"] > 0):
            agents = [log.create_agent(f"life{lives}-{n}", CONFIG) for n in range(AGENTS_PER_LIFE)]
            for agent_id in agents:
                log.start_task(agent_id, "call every kind of tool")
            kills += live(workers, agents, kills_this_life(kills, points), at_random(rng))
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


def phases(store: Store) -> Counter[str]:
    """How many agents the state view shows in each phase."""
    store.views.catch_up(["state"])
    with store.views.engine.connect() as conn:
        return Counter(
            row["status"] for row in queries.states(conn, store.views.table(conn, "state"))
        )


class ViewKills:
    """Kill moments for view workers. When a killed worker left a side-effecting call
    started, the next worker is killed right after it records ``ToolOutcomeUnknown``
    (it pauses there); otherwise at random, or while a side-effecting call runs, half
    the time each. Counts where the kills landed; an agent left with an unknown outcome
    must be listed by the runnable view."""

    def __init__(self, store: Store, workers: Workers, rng: random.Random) -> None:
        self.store, self.workers, self.rng = store, workers, rng
        self.agents: list[UUID] = []
        self.landed = Counter[str]()

    def moment(self, worker: subprocess.Popen[str]) -> bool:
        """Wait for this worker's moment; False if it exited first."""
        if self._calls_in(CallStage.STARTED):
            return self._after_unknown(worker)
        if self.rng.random() < 0.5:
            return at_random(self.rng)(worker)
        return self._mid_side_effect(worker)

    def after_kill(self) -> None:
        """Count where the kill landed; an unknown outcome must leave its agent runnable."""
        if unknown := self._calls_in(CallStage.OUTCOME_UNKNOWN):
            self.landed["right after a ToolOutcomeUnknown"] += 1
            assert set(unknown) <= set(Worker(self.store, ToolRegistry()).runnable())
        if self._calls_in(CallStage.STARTED):
            self.landed["while a side-effecting call ran"] += 1

    def _after_unknown(self, worker: subprocess.Popen[str]) -> bool:
        lines, deadline = self.workers.outputs[worker.pid], time.monotonic() + UNKNOWN_WAIT
        while not any(line.split(" ")[2:3] == ["unknown"] for line in lines):
            if worker.poll() is not None:
                return False
            if time.monotonic() > deadline:
                return True  # no unknown came: kill wherever it is
            time.sleep(0.002)
        time.sleep(self.rng.uniform(0, PAUSE_AFTER_UNKNOWN / 3))
        return worker.poll() is None

    def _mid_side_effect(self, worker: subprocess.Popen[str]) -> bool:
        deadline = time.monotonic() + UNKNOWN_WAIT
        while not self._calls_in(CallStage.STARTED):
            if worker.poll() is not None:
                return False
            if time.monotonic() > deadline:
                return True
            time.sleep(0.005)
        time.sleep(self.rng.uniform(0, 2 * SLOW_DELAY))  # before or after its effect
        return worker.poll() is None

    def _calls_in(self, stage: CallStage) -> list[UUID]:
        """The agents with a side-effecting call in this stage."""
        agents = (self.store.log.get(agent_id) for agent_id in self.agents)
        return [
            agent.id
            for agent in agents
            if any(
                c.stage is stage and c.effect is EffectClass.SIDE_EFFECTING
                for c in agent.calls.values()
            )
        ]


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_killed_view_workers_leave_no_agent_blocked_and_repeat_no_side_effect(
    backend: str, tmp_path: Path
) -> None:
    url = store_url(backend, tmp_path)
    points, rng = VIEW_POINTS // len(BACKENDS), random.Random(f"{SEED}:views:{backend}")
    print(f"AGENTLOG_CRASH_SEED={SEED} backend={backend} points={points} (view workers)")
    options = ["--views", "--pause-after-unknown", str(PAUSE_AFTER_UNKNOWN)]
    store, workers = open_store(url), Workers(url, tmp_path, SCRIPT, options)
    config = CONFIG.model_copy(update={"model": f"scripted:{workers.script}"})
    kills, lives, tally, keys, started = 0, 0, Counter[str](), set[str](), time.monotonic()
    where = ViewKills(store, workers, rng)

    def covered() -> bool:
        return bool(
            tally["start without outcome"] and where.landed["right after a ToolOutcomeUnknown"]
        )

    try:
        while more_lives(kills, points, covered()):
            agents = [
                store.log.create_agent(f"life{lives}-{n}", config) for n in range(AGENTS_PER_LIFE)
            ]
            for agent_id in agents:
                store.log.start_task(agent_id, "call every kind of tool")
            where.agents = agents
            n = kills_this_life(kills, points)
            kills += live(workers, agents, n, where.moment, where.after_kill)
            lives += 1
            for agent_id in agents:
                tally += check_agent(store.log, workers.ledger, agent_id, keys)
        assert phases(store) == {"completed": lives * AGENTS_PER_LIFE}  # what `agentlog ls` shows
        assert Worker(store, ToolRegistry()).runnable() == []
        reported = check_reported(store.log, workers.steps())
        assert workers.errors() == []
    finally:
        workers.close()
        store.close()
    seconds = time.monotonic() - started
    print(f"{kills} kills, {lives} lives, {len(workers.spawned)} view workers, {seconds:.1f}s")
    print("\n".join(f"  {n:4d}  kills landed {what}" for what, n in sorted(where.landed.items())))
    print(f"{reported} steps reported by workers found in the log as reported")
    print("\n".join(f"  {n:4d}  {what}" for what, n in sorted(tally.items())))
    assert tally["start without outcome"] > 0, "no kill landed mid-tool: widen the window"
    assert where.landed["right after a ToolOutcomeUnknown"] > 0, "no kill after an unknown outcome"
