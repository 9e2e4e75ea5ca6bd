"""A worker's step reads the store once: a model step to see what others stored after the
agent it keeps, a tool step for that and the call check together; the outcome is saved
without a read. A write by someone else meanwhile is read then, never missed: the save
loses its race, and the outcome is recorded on the agent as stored, the tool never run
again. What the one read gives the call check are the stored bytes: an edit is refused."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from eventsourcing.persistence import OperationalError
from pydantic import BaseModel, JsonValue

from agentlog.adapters.mapper import inflate
from agentlog.adapters.scripted import ScriptedModel
from agentlog.adapters.storage import open_log, sqlite_path
from agentlog.domain import (
    Agent,
    AgentConfig,
    AgentLog,
    Aggregate,
    EffectClass,
    Policy,
    ToolCallRequest,
)
from agentlog.domain.call_check import check_from
from agentlog.domain.chain import args_hash, event_digest
from agentlog.domain.errors import BrokenChainError
from agentlog.domain.log_transcript import LogTranscript
from agentlog.domain.ports import Context, Decision, Model
from agentlog.domain.runtime import Runtime, StepKind

from conftest import store_url
from counting_tools import assert_linear_history

Edit = Callable[[dict[str, Any]], None]
CALLED = "agentlog:Agent.ToolCalled@1"


class Label(BaseModel):
    """One label."""

    label: str


class Echo:
    """A side-effecting tool that counts its runs and may do something while it runs."""

    name = "echo"
    description = "Echoes its label."
    args_model: ClassVar[type[BaseModel]] = Label
    effect = EffectClass.SIDE_EFFECTING
    policy = Policy.ALLOW

    def __init__(self) -> None:
        self.runs: list[str] = []
        self.meanwhile: Callable[[], None] = lambda: None

    def run(self, args: BaseModel, idempotency_key: str) -> JsonValue:
        """Count, do what was asked meanwhile, echo."""
        self.runs.append(idempotency_key)
        self.meanwhile()
        return {"label": getattr(args, "label", None)}

    def reconcile(self, idempotency_key: str) -> bool | None:
        """Whether it ran with that key."""
        return idempotency_key in self.runs


def turn(n: int, calls: int = 1) -> Decision:
    """A model turn asking for ``calls`` echoes."""
    return Decision(
        text=f"turn {n}",
        tool_calls=tuple(
            ToolCallRequest(call_id=f"c{n}-{k}", tool="echo", args={"label": "safe"})
            for k in range(calls)
        ),
    )


class Worker:
    """A worker's log (its aggregate cache, its cached transcripts) and runtime, with the
    reads of its store counted."""

    def __init__(self, url: str, turns: int = 3, calls: int = 1, *, defaults: bool = False):
        # defaults: a library user's runtime, nothing configured (open_log's own cache)
        self.log: AgentLog = open_log(url) if defaults else open_log(url, aggregate_cache=10)
        self.other: AgentLog = open_log(url)  # someone else writing to the same store
        self.tool = Echo()
        decisions = [turn(n, calls) for n in range(turns)]
        model = ScriptedModel([*decisions, Decision(text="done", done=True)])
        transcripts = None if defaults else LogTranscript(self.log, cache_size=10)
        self.runtime = Runtime(
            self.log, model, {"echo": self.tool}, worker_id="w", transcripts=transcripts
        )
        self.agent_id = self.log.create_agent("reader", AgentConfig(max_steps=100), goal="echo")
        self.reads = 0
        for recorder in (self.log.recorder, getattr(self.log.snapshots, "recorder", None)):
            if recorder is not None:
                self._count(recorder)

    def _count(self, recorder: Any) -> None:
        select = recorder.select_events

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.reads += 1
            return select(*args, **kwargs)

        recorder.select_events = counted

    def step(self, *, after_own_step: bool = False) -> tuple[StepKind, int]:
        """One step, and how many reads of the store it made."""
        before = self.reads
        kind = self.runtime.advance(self.agent_id, after_own_step=after_own_step).kind
        return kind, self.reads - before

    def events(self) -> list[Aggregate.Event]:
        """The agent's stored events (read by the other log)."""
        return list(self.other.events_of(self.agent_id))

    def close(self) -> None:
        """Close both logs."""
        self.log.close()
        self.other.close()


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[Worker]:
    worker = Worker(f"sqlite:///{tmp_path / 'agentlog.db'}")
    yield worker
    worker.close()


@pytest.fixture(params=["sqlite", "postgres"])
def any_worker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Worker]:
    """A worker on each backend (their IntegrityErrors come from different drivers)."""
    worker = Worker(store_url(request.param, tmp_path))
    yield worker
    worker.close()


@pytest.mark.parametrize(
    ("backend", "defaults"), [("sqlite", False), ("postgres", False), ("sqlite", True)]
)
def test_a_model_step_and_a_tool_step_each_read_the_store_once(
    backend: str, defaults: bool, tmp_path: Path
) -> None:
    """A worker's runtime, and one built on ``open_log(url)`` with nothing configured."""
    worker = Worker(store_url(backend, tmp_path), defaults=defaults)
    try:
        assert worker.step()[0] is StepKind.MODEL  # the first: loaded from the store
        steps = [worker.step() for _ in range(5)]
        assert steps == [
            (StepKind.TOOL, 1),
            (StepKind.MODEL, 1),
            (StepKind.TOOL, 1),
            (StepKind.MODEL, 1),
            (StepKind.TOOL, 1),
        ]
        assert len(worker.tool.runs) == len(set(worker.tool.runs)) == 3  # each call once
        events = worker.events()
        assert assert_linear_history(events) == worker.other.get(worker.agent_id).version
        kept = worker.log.take(worker.agent_id)
        assert kept.state() == worker.other.get(worker.agent_id).state()
    finally:
        worker.close()


class Asked:
    """The worker's model, with the contexts it was asked with noted."""

    def __init__(self, model: Model) -> None:
        self.model, self.contexts = model, list[Context]()
        self.name = model.name

    def decide(self, context: Context) -> Decision:
        """The model's decision; the context noted."""
        self.contexts.append(context)
        return self.model.decide(context)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_model_step_after_the_workers_own_step_reads_nothing(
    backend: str, tmp_path: Path
) -> None:
    """The steps of a turn after its first: a model step starts from the agent as this
    worker stored it; a tool step still reads, for its call check."""
    worker = Worker(store_url(backend, tmp_path))
    try:
        assert worker.step()[0] is StepKind.MODEL
        assert worker.step(after_own_step=True) == (StepKind.TOOL, 1)
        assert worker.step(after_own_step=True) == (StepKind.MODEL, 0)
        assert worker.step(after_own_step=True) == (StepKind.TOOL, 1)
        assert worker.step() == (StepKind.MODEL, 1)  # a turn's first step reads
        events = worker.events()
        assert assert_linear_history(events) == worker.other.get(worker.agent_id).version
        assert worker.log.take(worker.agent_id).state() == worker.other.get(worker.agent_id).state()
    finally:
        worker.close()


def test_a_message_stored_between_two_steps_of_a_turn_reaches_the_model(
    any_worker: Worker,
) -> None:
    """The model step that did not read loses its save's race to the message: it is
    decided again, read, and what is recorded answers a context with the message."""
    worker = any_worker
    asked = Asked(worker.runtime.model)
    worker.runtime.model = asked
    assert worker.step()[0] is StepKind.MODEL
    assert worker.step(after_own_step=True)[0] is StepKind.TOOL
    worker.other.send(worker.agent_id, "by the way")
    kind, reads = worker.step(after_own_step=True)
    assert kind is StepKind.MODEL
    assert reads >= 1  # its first save lost: the agent was read
    assert ["by the way" in str(c.messages) for c in asked.contexts] == [False, False, True]
    events = worker.events()
    assert assert_linear_history(events) == len(events)
    names = [type(e).__name__ for e in events[-4:]]
    assert names == ["ToolSucceeded", "UserMessageReceived", "ModelResponded", "ToolCalled"]
    assert worker.log.take(worker.agent_id).state() == worker.other.get(worker.agent_id).state()


def test_a_cancel_between_two_steps_of_a_turn_records_no_model_response(
    any_worker: Worker,
) -> None:
    worker = any_worker
    assert worker.step()[0] is StepKind.MODEL
    assert worker.step(after_own_step=True)[0] is StepKind.TOOL
    worker.other.cancel(worker.agent_id, "stop")
    assert worker.step(after_own_step=True)[0] is StepKind.FINISHED
    events = worker.events()
    assert assert_linear_history(events) == len(events)
    assert [type(e).__name__ for e in events[-2:]] == ["ToolSucceeded", "TaskCancelled"]
    assert len(worker.tool.runs) == 1


def test_a_message_stored_before_the_tool_step_is_read_with_the_call_check(
    worker: Worker,
) -> None:
    assert worker.step()[0] is StepKind.MODEL
    worker.other.send(worker.agent_id, "by the way")
    assert worker.step() == (StepKind.TOOL, 1)
    events = worker.events()
    assert assert_linear_history(events) == len(events)
    assert [type(e).__name__ for e in events[-4:]] == [
        "ToolCalled",
        "UserMessageReceived",
        "ToolStarted",
        "ToolSucceeded",
    ]
    assert len(worker.tool.runs) == 1


def test_a_message_stored_while_the_tool_runs_is_read_before_its_outcome_is_recorded(
    any_worker: Worker,
) -> None:
    """The outcome's save loses the race to the message; it is recorded once, on the
    agent as stored, and the tool runs once."""
    worker = any_worker
    assert worker.step()[0] is StepKind.MODEL
    worker.tool.meanwhile = lambda: worker.other.send(worker.agent_id, "while you work")
    kind, reads = worker.step()
    assert kind is StepKind.TOOL
    assert reads > 1  # the outcome's first save lost: the agent was read again
    events = worker.events()
    assert assert_linear_history(events) == len(events)
    names = [type(e).__name__ for e in events[-3:]]
    assert names == ["ToolStarted", "UserMessageReceived", "ToolSucceeded"]
    assert worker.other.get(worker.agent_id).calls == {}
    worker.tool.meanwhile = lambda: None
    assert worker.step()[0] is StepKind.MODEL  # what is kept is the agent as stored
    assert len(worker.tool.runs) == 1
    kept = worker.log.take(worker.agent_id)
    assert kept.state() == worker.other.get(worker.agent_id).state()


def test_a_cancel_while_the_tool_runs_is_read_before_its_outcome_is_recorded(
    any_worker: Worker,
) -> None:
    """A task cancelled meanwhile takes no outcome (as ever): the save on the agent as
    claimed loses the race, and the agent as stored says the task is over."""
    worker = any_worker
    assert worker.step()[0] is StepKind.MODEL
    worker.tool.meanwhile = lambda: worker.other.cancel(worker.agent_id, "stop")
    kind, reads = worker.step()
    assert kind is StepKind.BUSY
    assert reads > 1
    events = worker.events()
    assert assert_linear_history(events) == len(events)
    assert [type(e).__name__ for e in events[-2:]] == ["ToolStarted", "TaskCancelled"]
    assert worker.step()[0] is StepKind.FINISHED
    assert len(worker.tool.runs) == 1


def test_an_outcome_saved_by_another_worker_meanwhile_is_not_recorded_twice(
    any_worker: Worker,
) -> None:
    """The call was taken over (it looked dead) and settled elsewhere while it ran here."""
    worker = any_worker
    assert worker.step()[0] is StepKind.MODEL

    def settle_elsewhere() -> None:
        agent = worker.other.get(worker.agent_id)
        agent.succeed("c0-0", "settled elsewhere", actor="worker:other")
        worker.other.save(agent)

    worker.tool.meanwhile = settle_elsewhere
    kind, _ = worker.step()
    assert kind is StepKind.BUSY
    succeeded = [e for e in worker.events() if isinstance(e, Agent.ToolSucceeded)]
    assert [e.result for e in succeeded] == ["settled elsewhere"]
    assert len(worker.tool.runs) == 1


# --- an edit of the store is caught by the one read ------------------------------------


def edit(worker: Worker, url: str, version: int, change: Edit) -> None:
    """Rewrite the stored JSON of the agent's event at ``version`` in the SQLite file."""
    where = "WHERE originator_id=? AND originator_version=?"
    key = (worker.agent_id.hex, version)
    with sqlite3.connect(sqlite_path(url)) as db:
        (raw,) = db.execute(f"SELECT state FROM stored_events {where}", key).fetchone()
        state = json.loads(inflate(raw))
        change(state)
        db.execute(f"UPDATE stored_events SET state=? {where}", (json.dumps(state).encode(), *key))


def evil_args(state: dict[str, Any]) -> None:
    state["args"] = {"label": "evil"}


def evil_args_and_hash(state: dict[str, Any]) -> None:
    evil_args(state)
    state["args_hash"] = args_hash({"label": "evil"})


def resealed(change: Edit, worker: Worker, version: int) -> Edit:
    """The edit, then the event's digest recomputed, as a careful attacker would."""

    def both(state: dict[str, Any]) -> None:
        change(state)
        state["digest"] = event_digest(CALLED, str(worker.agent_id), version, state)

    return both


@pytest.mark.parametrize("how", ["args", "args and hash"])
@pytest.mark.parametrize("resealed_too", [False, True])
@pytest.mark.parametrize("others_wrote", [False, True])
def test_an_edited_tool_call_is_refused_by_a_worker_that_keeps_the_agent(
    tmp_path: Path, how: str, resealed_too: bool, others_wrote: bool
) -> None:
    """The kept agent remembers what it stored: a resealed edit of its head breaks the
    head; once someone stored after it, the call's recorded hash still binds it."""
    url = f"sqlite:///{tmp_path / 'agentlog.db'}"
    worker = Worker(url)
    try:
        assert worker.step()[0] is StepKind.MODEL  # the agent is kept, its call in memory
        (called,) = [e for e in worker.events() if isinstance(e, Agent.ToolCalled)]
        version = called.originator_version
        change = evil_args if how == "args" else evil_args_and_hash
        edit(worker, url, version, resealed(change, worker, version) if resealed_too else change)
        if others_wrote:  # the one read brings new events too
            worker.other.send(worker.agent_id, "stored after the edit")
        assert worker.step() == (StepKind.REFUSED, 1)
        (refused,) = [e for e in worker.events() if isinstance(e, Agent.ToolCallRefused)]
        if not resealed_too:
            assert "stored digest does not match its content" in refused.reason
        elif others_wrote:
            assert "do not match the hash they were recorded with" in refused.reason
        else:
            assert "do not end at the agent's head" in refused.reason
        assert worker.tool.runs == []
        assert not [e for e in worker.events() if isinstance(e, Agent.ToolStarted)]
    finally:
        worker.close()


@pytest.mark.parametrize("resealed_too", [False, True])
def test_an_edit_of_what_the_worker_stored_itself_is_refused(
    tmp_path: Path, resealed_too: bool
) -> None:
    """The second call of a turn was stored before the first ran: the one read gives the
    check its stored bytes, not what the worker remembers having stored."""
    url = f"sqlite:///{tmp_path / 'agentlog.db'}"
    worker = Worker(url, calls=2)
    try:
        assert worker.step()[0] is StepKind.MODEL
        assert worker.step() == (StepKind.TOOL, 1)
        (called,) = [
            e for e in worker.events() if isinstance(e, Agent.ToolCalled) and e.call_id == "c0-1"
        ]
        version = called.originator_version
        assert version < worker.other.get(worker.agent_id).version  # not the head
        change = resealed(evil_args, worker, version) if resealed_too else evil_args
        edit(worker, url, version, change)
        assert worker.step() == (StepKind.REFUSED, 1)
        (refused,) = [e for e in worker.events() if isinstance(e, Agent.ToolCallRefused)]
        assert refused.call_id == "c0-1"
        assert "broken chain" in refused.reason
        assert len(worker.tool.runs) == 1  # the first call's run, never the edited one
    finally:
        worker.close()


# --- the rows read with a kept agent serve its call check once, while it is unchanged --


def kept_with_a_call(worker: Worker) -> Agent:
    """The agent as the worker keeps it after a model step (one open call), taken with
    the call check's rows."""
    assert worker.step()[0] is StepKind.MODEL
    return worker.log.take(worker.agent_id, check_from=check_from)


def test_the_rows_read_with_a_kept_agent_are_its_chained_events_once(worker: Worker) -> None:
    agent = kept_with_a_call(worker)
    (call,) = agent.calls.values()
    since = check_from(agent)
    assert since is not None
    assert since == call.asked_version
    fresh = worker.other.chained_events(worker.other.get(worker.agent_id), since)
    before = worker.reads
    assert worker.log.chained_events(agent, since) == fresh
    assert worker.reads == before  # from the take's read
    assert worker.log.chained_events(agent, since) == fresh
    assert worker.reads == before + 1  # once only: then the store is read again


def test_the_rows_read_with_a_kept_agent_do_not_serve_it_once_changed(worker: Worker) -> None:
    agent = kept_with_a_call(worker)
    since = check_from(agent)
    assert since is not None
    agent.receive_user_message("not saved")
    before = worker.reads
    with pytest.raises(BrokenChainError, match="do not end at the agent's head"):
        worker.log.chained_events(agent, since)
    assert worker.reads == before + 1


def test_the_rows_read_with_a_kept_agent_serve_only_the_thread_holding_it(
    worker: Worker,
) -> None:
    agent = kept_with_a_call(worker)
    since = check_from(agent)
    assert since is not None
    before = worker.reads
    thread = threading.Thread(target=worker.log.chained_events, args=(agent, since))
    thread.start()
    thread.join()
    assert worker.reads == before + 1  # another thread reads for itself
    worker.log.chained_events(agent, since)
    assert worker.reads == before + 1  # the holder still gets the rows read with it


# --- the store out of reach when the outcome is saved --------------------------------


@pytest.mark.parametrize("committed", [False, True])
def test_an_outcome_whose_save_met_an_outage_is_recorded_once_on_the_agent_as_stored(
    worker: Worker, committed: bool
) -> None:
    """Whether the save that met the outage went through is unknown: the retry reads the
    agent as stored (never the one the failed save was made on) and records the outcome
    if it is not there yet."""
    waited: list[Exception] = []

    def patience(error: Exception) -> bool:
        waited.append(error)
        return True

    worker.runtime.patience = patience
    assert worker.step()[0] is StepKind.MODEL
    insert = worker.log.recorder.insert_events
    outages = [OperationalError("the store is out of reach")]

    def flaky(*args: Any, **kwargs: Any) -> Any:
        is_outcome = outages and worker.tool.runs  # the claim goes through, the outcome not
        if is_outcome and not committed:
            raise outages.pop()
        result = insert(*args, **kwargs)
        if is_outcome:
            raise outages.pop()
        return result

    worker.log.recorder.insert_events = flaky  # type: ignore[method-assign]
    kind, _ = worker.step()
    assert len(waited) == 1
    assert kind is (StepKind.BUSY if committed else StepKind.TOOL)
    events = worker.events()
    assert assert_linear_history(events) == len(events)
    assert [type(e).__name__ for e in events[-2:]] == ["ToolStarted", "ToolSucceeded"]
    assert len(worker.tool.runs) == 1
    assert worker.step()[0] is StepKind.MODEL
