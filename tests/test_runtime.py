"""The runtime's decision procedure, one ``advance`` at a time, on real stores.

A worker that died mid-call is simulated by saving a ``ToolStarted`` (and, where it
matters, doing the tool's effect) without an outcome; the next worker looks at the log
through a clock that is later than the call's timeout. The counting tools count what
really ran, outside the store.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar
from uuid import UUID

import pytest

from agentlog.adapters.scripted import ScriptedModel
from agentlog.adapters.storage import env_for, open_log
from agentlog.domain import (
    Agent,
    AgentConfig,
    AgentLog,
    ArgsHashMismatchError,
    CallStage,
    EffectClass,
    Phase,
    Policy,
    Status,
    ToolCallRequest,
    args_hash,
)
from agentlog.domain.ports import Decision, Message, Tool
from agentlog.domain.runtime import LogTranscript, Runtime, Step, StepKind

from conftest import store_url
from counting_tools import CountArgs, CountingTool, Ledger, assert_linear_history, counting_tools

E = TypeVar("E", bound=Agent.Event)
LATER = timedelta(hours=1)  # far past any call's timeout
DONE = Decision(text="done", done=True)


def turn(*calls: tuple[str, str]) -> Decision:
    """A model turn asking for calls (call id, tool), each labelled with its id."""
    requests = (ToolCallRequest(call_id=c, tool=t, args={"label": c}) for c, t in calls)
    return Decision(text="calling", tool_calls=tuple(requests))


class World:
    """A store, a ledger of tool runs, and agents following one script."""

    def __init__(self, log: AgentLog, folder: Path, *script: Decision) -> None:
        self.log, self.ledger, self.script = log, Ledger(folder / "ledger"), list(script)
        self.tools = counting_tools(self.ledger, delay=0.0)

    def agent(self, **config: object) -> UUID:
        """A new agent with a running task."""
        agent_id = self.log.create_agent("a", AgentConfig.model_validate(config))
        self.log.start_task(agent_id, "count")
        return agent_id

    def runtime(
        self, *, later: bool = False, worker: str = "w", tools: Mapping[str, Tool] | None = None
    ) -> Runtime:
        """A worker (with some tools replaced); ``later``: its clock is an hour ahead, so
        started calls look dead."""
        offset = LATER if later else timedelta()
        return Runtime(
            self.log,
            ScriptedModel(self.script),
            self.tools | dict(tools or {}),
            worker_id=worker,
            now=lambda: datetime.now(UTC) + offset,
        )

    def steps(self, runtime: Runtime, agent_id: UUID, n: int) -> list[StepKind]:
        """The kinds of ``n`` steps."""
        return [runtime.advance(agent_id).kind for _ in range(n)]

    def die_mid_call(self, agent_id: UUID, call_id: str, *, after_effect: bool) -> None:
        """A worker claims the call, maybe does its effect, and dies before the outcome."""
        agent = self.log.get(agent_id)
        agent.start_tool(call_id, worker_id="dead")
        self.log.save(agent)
        if after_effect:
            call = agent.calls[call_id]
            self.tools[call.tool].run(CountArgs(label=call_id), call.idempotency_key)

    def key(self, agent_id: UUID, call_id: str) -> str:
        """The idempotency key every start of the call was given (there must be one)."""
        starts = self.events(agent_id, Agent.ToolStarted)
        (key,) = {s.idempotency_key for s in starts if s.call_id == call_id}
        return key

    def events(self, agent_id: UUID, kind: type[E]) -> list[E]:
        """The agent's stored events of one type."""
        return [e for e in self.log.events_of(agent_id) if isinstance(e, kind)]

    def kinds(self, agent_id: UUID) -> list[str]:
        """The agent's event class names, after its task started."""
        return [type(e).__name__ for e in self.log.events_of(agent_id)][2:]


@pytest.fixture(params=["memory", "sqlite"])
def log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AgentLog]:
    """A fresh store in memory and on a SQLite file."""
    log = open_log(store_url(request.param, tmp_path))
    yield log
    log.close()


def test_allowed_call_runs_in_the_step_after_the_model_asked_for_it(
    log: AgentLog, tmp_path: Path
) -> None:
    world = World(log, tmp_path, turn(("c1", "side_effecting")), DONE)
    agent_id = world.agent(tool_policies={"side_effecting": "allow"})
    assert world.steps(world.runtime(), agent_id, 3) == ["model", "tool", "model"]
    assert world.ledger.runs() == {world.key(agent_id, "c1"): 1}
    assert world.kinds(agent_id) == [
        "ModelResponded",
        "ToolCalled",
        "ToolStarted",
        "ToolSucceeded",
        "ModelResponded",
        "TaskCompleted",
    ]


def test_ask_call_waits_for_a_grant_bound_to_its_arguments(log: AgentLog, tmp_path: Path) -> None:
    world = World(log, tmp_path, turn(("c1", "side_effecting")), DONE)
    agent_id, runtime = world.agent(tool_policies={"side_effecting": "ask"}), world.runtime()
    assert world.steps(runtime, agent_id, 4) == ["model", "asked", "waiting", "waiting"]
    assert world.ledger.runs() == {}
    with pytest.raises(ArgsHashMismatchError):
        log.grant(agent_id, "c1", approver="ann", args_hash=args_hash({"label": "other"}))
    log.grant(agent_id, "c1", approver="ann", args_hash=args_hash({"label": "c1"}))
    assert world.steps(runtime, agent_id, 2) == ["tool", "model"]
    assert world.ledger.runs() == {world.key(agent_id, "c1"): 1}
    (granted,) = world.events(agent_id, Agent.PermissionGranted)
    (started,) = world.events(agent_id, Agent.ToolStarted)
    assert (granted.approver, granted.args_hash) == ("ann", args_hash({"label": "c1"}))
    assert granted.originator_version < started.originator_version


def test_call_denied_by_a_person_never_runs(log: AgentLog, tmp_path: Path) -> None:
    world = World(log, tmp_path, turn(("c1", "side_effecting")), DONE)
    agent_id, runtime = world.agent(tool_policies={"side_effecting": "ask"}), world.runtime()
    assert world.steps(runtime, agent_id, 2) == ["model", "asked"]
    log.deny(agent_id, "c1", approver="ann", reason="not today")
    assert world.steps(runtime, agent_id, 2) == ["model", "finished"]
    assert world.ledger.runs() == {}
    assert world.events(agent_id, Agent.ToolStarted) == []


def test_deny_policy_is_recorded_as_denied_by_policy_and_never_runs(
    log: AgentLog, tmp_path: Path
) -> None:
    world = World(log, tmp_path, turn(("c1", "pure"), ("c2", "idempotent")), DONE)
    world.tools["pure"] = CountingTool("pure", EffectClass.PURE, world.ledger, policy=Policy.DENY)
    agent_id = world.agent(tool_policies={"idempotent": "deny"})  # the config's word counts too
    steps = world.steps(world.runtime(), agent_id, 4)
    assert steps == ["model", "denied", "denied", "model"]
    denials = world.events(agent_id, Agent.PermissionDenied)
    assert [(d.call_id, d.approver) for d in denials] == [("c1", "policy"), ("c2", "policy")]
    assert world.events(agent_id, Agent.ToolStarted) == []
    assert world.ledger.runs() == {}
    assert log.get(agent_id).status is Status.COMPLETED


@pytest.mark.parametrize("effect", ["pure", "idempotent"])
def test_dead_harmless_call_is_rerun_with_the_same_idempotency_key(
    log: AgentLog, tmp_path: Path, effect: str
) -> None:
    world = World(log, tmp_path, turn(("c1", effect)), DONE)
    agent_id = world.agent()
    assert world.steps(world.runtime(), agent_id, 1) == ["model"]
    world.die_mid_call(agent_id, "c1", after_effect=True)
    assert world.steps(world.runtime(later=True), agent_id, 2) == ["tool", "model"]
    starts = world.events(agent_id, Agent.ToolStarted)
    assert [(s.attempt, s.worker_id) for s in starts] == [(1, "dead"), (2, "w")]
    assert starts[0].idempotency_key == starts[1].idempotency_key
    assert world.ledger.runs() == {world.key(agent_id, "c1"): 2}
    assert world.ledger.effects() == (
        {world.key(agent_id, "c1"): 1} if effect == "idempotent" else {}
    )


def test_started_call_younger_than_the_timeout_makes_the_step_busy(
    log: AgentLog, tmp_path: Path
) -> None:
    world = World(log, tmp_path, turn(("c1", "pure")), DONE)
    agent_id = world.agent(tool_timeout=60)
    world.steps(world.runtime(), agent_id, 1)
    world.die_mid_call(agent_id, "c1", after_effect=False)
    version = log.get(agent_id).version
    assert world.steps(world.runtime(), agent_id, 2) == ["busy", "busy"]
    assert log.get(agent_id).version == version
    assert world.ledger.runs() == {}


def test_dead_side_effecting_call_gets_outcome_unknown_and_is_not_rerun(
    log: AgentLog, tmp_path: Path
) -> None:
    world = World(log, tmp_path, turn(("c1", "side_effecting")), DONE)
    agent_id = world.agent()
    world.steps(world.runtime(), agent_id, 1)
    world.die_mid_call(agent_id, "c1", after_effect=False)
    unsure = CountingTool(
        "side_effecting", EffectClass.SIDE_EFFECTING, world.ledger, can_reconcile=False
    )
    assert world.steps(
        world.runtime(later=True, tools={"side_effecting": unsure}), agent_id, 1
    ) == ["unknown"]
    (unknown,) = world.events(agent_id, Agent.ToolOutcomeUnknown)
    assert (unknown.call_id, unknown.attempt) == ("c1", 1)
    assert world.ledger.runs() == {}


def test_unknown_outcome_that_reconciles_as_done_succeeds_without_rerunning(
    log: AgentLog, tmp_path: Path
) -> None:
    world = World(log, tmp_path, turn(("c1", "side_effecting")), DONE)
    agent_id = world.agent()
    world.steps(world.runtime(), agent_id, 1)
    world.die_mid_call(agent_id, "c1", after_effect=True)
    steps = world.steps(world.runtime(later=True), agent_id, 3)
    assert steps == ["unknown", "reconciled", "model"]
    (succeeded,) = world.events(agent_id, Agent.ToolSucceeded)
    assert succeeded.result == {"reconciled": True}
    assert len(world.events(agent_id, Agent.ToolStarted)) == 1
    assert world.ledger.runs() == world.ledger.effects() == {world.key(agent_id, "c1"): 1}


def test_unknown_outcome_that_reconciles_as_not_done_runs_it_once(
    log: AgentLog, tmp_path: Path
) -> None:
    world = World(log, tmp_path, turn(("c1", "side_effecting")), DONE)
    agent_id = world.agent()
    world.steps(world.runtime(), agent_id, 1)
    world.die_mid_call(agent_id, "c1", after_effect=False)
    assert world.steps(world.runtime(later=True), agent_id, 3) == ["unknown", "tool", "model"]
    starts = world.events(agent_id, Agent.ToolStarted)
    assert [s.attempt for s in starts] == [1, 2]
    assert starts[0].idempotency_key == starts[1].idempotency_key
    assert world.ledger.runs() == world.ledger.effects() == {world.key(agent_id, "c1"): 1}


def test_unknown_outcome_the_tool_cannot_reconcile_stays_blocked_for_a_person(
    log: AgentLog, tmp_path: Path
) -> None:
    world = World(log, tmp_path, turn(("c1", "side_effecting")), DONE)
    unsure = CountingTool(
        "side_effecting", EffectClass.SIDE_EFFECTING, world.ledger, can_reconcile=False
    )
    agent_id = world.agent()
    world.steps(world.runtime(), agent_id, 1)
    world.die_mid_call(agent_id, "c1", after_effect=False)
    runtime = world.runtime(later=True, tools={"side_effecting": unsure})
    assert world.steps(runtime, agent_id, 3) == ["unknown", "undecided", "blocked"]
    (undecided,) = world.events(agent_id, Agent.OutcomeUndecided)
    assert (undecided.call_id, undecided.reason) == ("c1", "side_effecting cannot tell")
    blocked = log.get(agent_id)
    assert blocked.calls["c1"].stage is CallStage.OUTCOME_UNKNOWN
    assert (blocked.phase, blocked.has_work) == (Phase.BLOCKED, False)
    assert world.ledger.runs() == {}
    log.settle(agent_id, "c1", happened=False, by="ann")
    assert world.steps(runtime, agent_id, 2) == ["model", "finished"]
    assert world.ledger.runs() == {}  # the person's word is final: it is not run


def test_max_steps_fails_the_task_with_limit_reached(log: AgentLog, tmp_path: Path) -> None:
    world = World(log, tmp_path, *[Decision(text=f"thinking {n}") for n in range(5)])
    agent_id = world.agent(max_steps=2)
    assert world.steps(world.runtime(), agent_id, 4) == ["model", "model", "limit", "finished"]
    (limit,) = world.events(agent_id, Agent.LimitReached)
    assert (limit.limit, limit.value) == ("max_steps", 2)
    assert log.get(agent_id).status is Status.FAILED


@pytest.mark.parametrize(
    ("effect", "outcome"),
    [
        ("pure", Agent.ToolFailed),
        ("idempotent", Agent.ToolFailed),
        ("side_effecting", Agent.ToolOutcomeUnknown),
    ],
)
def test_call_slower_than_its_timeout_fails_or_becomes_unknown_by_effect_class(
    log: AgentLog, tmp_path: Path, effect: str, outcome: type[Agent.Event]
) -> None:
    world = World(log, tmp_path, turn(("c1", effect)), DONE)
    slow = CountingTool(effect, EffectClass(effect), world.ledger, delay=0.25)
    agent_id = world.agent(tool_timeout=0.1)
    runtime = world.runtime(tools={effect: slow})
    assert world.steps(runtime, agent_id, 2) == ["model", "tool"]
    last = list(log.events_of(agent_id))[-1]
    assert isinstance(last, outcome)
    if isinstance(last, Agent.ToolFailed):
        assert last.error == "timed out after 0.1s"
    join_tool_threads()


def test_run_stops_after_max_steps_and_records_limit_reached(log: AgentLog, tmp_path: Path) -> None:
    world = World(log, tmp_path, *[turn((f"c{n}", "pure")) for n in range(5)])
    agent_id = world.agent()
    seen: list[Step] = []
    last = world.runtime().run(agent_id, max_steps=3, on_step=seen.append)
    assert [s.kind for s in seen] == ["model", "tool", "model"]
    assert last.kind is StepKind.LIMIT
    (limit,) = world.events(agent_id, Agent.LimitReached)
    assert (limit.limit, limit.value) == ("max_steps_per_run", 3)
    assert log.get(agent_id).status is Status.RUNNING  # a later run goes on


def test_run_returns_at_the_first_step_that_waits_for_someone(
    log: AgentLog, tmp_path: Path
) -> None:
    world = World(log, tmp_path, turn(("c1", "side_effecting")), DONE)
    agent_id = world.agent(tool_policies={"side_effecting": "ask"})
    last = world.runtime().run(agent_id, max_steps=10)
    assert (last.kind, last.detail) == (StepKind.WAITING, "c1")
    assert world.events(agent_id, Agent.LimitReached) == []


def test_side_effect_that_timed_out_but_still_runs_is_not_run_again(
    log: AgentLog, tmp_path: Path
) -> None:
    world = World(log, tmp_path, turn(("c1", "side_effecting")), DONE)
    slow = CountingTool("side_effecting", EffectClass.SIDE_EFFECTING, world.ledger, delay=0.5)
    agent_id = world.agent(tool_timeout=0.1)
    runtime = world.runtime(tools={"side_effecting": slow})
    world.steps(runtime, agent_id, 3)  # model, tool (timed out: unknown), reconcile
    join_tool_threads()
    assert list(world.ledger.effects().values()) == [1]


class AnotherWorkerFirst:
    """A transcript source that lets another worker take a step just before it reads."""

    def __init__(self, log: AgentLog, other: Runtime) -> None:
        self.log, self.other = log, other

    def messages(self, agent: Agent) -> list[Message]:
        """Let the other worker advance the agent; then read the log's transcript."""
        self.other.advance(agent.id)
        return LogTranscript(self.log).messages(agent)


@pytest.mark.parametrize(
    "script",
    [[DONE], [turn(("c1", "pure"))]],
    ids=["the-other-worker-completes-the-task", "the-other-worker-asks-for-a-call"],
)
def test_worker_that_asked_the_model_from_a_stale_state_reloads_and_redecides(
    log: AgentLog, tmp_path: Path, script: list[Decision]
) -> None:
    world = World(log, tmp_path, *script)
    agent_id = world.agent()
    slow_worker = Runtime(
        log,
        ScriptedModel(script),
        world.tools,
        worker_id="slow",
        transcripts=AnotherWorkerFirst(log, world.runtime(worker="fast")),
    )
    step = slow_worker.advance(agent_id)  # the fast worker answered first: re-decide
    assert world.events(agent_id, Agent.ModelFailed) == []
    assert step.kind in (StepKind.FINISHED, StepKind.TOOL)


class InterleavingLog(AgentLog):
    """An agent log that lets someone else save right after the next load, once."""

    name = "agentlog"
    after_next_get: Callable[[], None] | None = None

    def get(self, agent_id: UUID, version: int | None = None) -> Agent:
        """Load; then run the hook (another writer), if one is set."""
        agent = super().get(agent_id, version)
        if (hook := self.after_next_get) is not None:
            self.after_next_get = None
            hook()
        return agent


def test_run_that_loses_a_race_while_recording_its_step_limit_does_not_crash(
    tmp_path: Path,
) -> None:
    log = InterleavingLog(env_for(store_url("sqlite", tmp_path)))
    world = World(log, tmp_path, *[Decision(text=f"thinking {n}") for n in range(5)])
    agent_id = world.agent()

    def someone_writes_after_the_last_step(step: Step) -> None:
        log.after_next_get = lambda: log.send(agent_id, "are you there?")

    try:
        world.runtime().run(agent_id, max_steps=1, on_step=someone_writes_after_the_last_step)
        assert_linear_history(log.events_of(agent_id))
    finally:
        log.close()


def join_tool_threads() -> None:
    """Wait for tool threads a timeout left running (they still write to the ledger)."""
    for thread in threading.enumerate():
        if thread.name.startswith("tool-"):
            thread.join()
