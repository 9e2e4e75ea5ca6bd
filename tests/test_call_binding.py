"""A tool runs only with the arguments that were recorded, granted and chained.

An attacker (or a bad hand edit) changes a call's stored row in the SQLite file between
the model's request and the tool's run. Whatever was edited (the arguments alone, the
arguments and their hash, or those and the event's digest too), the worker refuses the
call: it records ``ToolCallRefused`` with the reason, the model sees it as the call's
error, and the tool never runs. These tests fail on a runtime that reads the arguments
back without checking them.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agentlog.adapters.mapper import inflate
from agentlog.adapters.scripted import ScriptedModel
from agentlog.adapters.storage import DEFAULT_AGGREGATE_CACHE, open_log, sqlite_path
from agentlog.domain import Agent, AgentConfig, AgentLog, Policy, ToolCallRequest, args_hash
from agentlog.domain.chain import event_digest
from agentlog.domain.ports import Decision
from agentlog.domain.runtime import Runtime, StepKind

from counting_tools import Ledger, counting_tools

TURN = Decision(
    text="calling",
    tool_calls=(ToolCallRequest(call_id="c1", tool="side_effecting", args={"label": "safe"}),),
)
DONE = Decision(text="done", done=True)
Edit = Callable[[dict[str, Any]], None]


class Store:
    """A SQLite store, one agent, counting tools, and a way to edit stored rows.

    No agent is kept in memory between steps (``aggregate_cache=0``): each step loads
    the agent from the rows, as a fresh worker after a restart does, so each check meets
    the edited rows on its own. ``kept``: the default, the agents of earlier steps kept.
    """

    def __init__(self, folder: Path, policy: Policy, *, kept: bool = False) -> None:
        self.url = f"sqlite:///{folder / 'agentlog.db'}"
        cache = DEFAULT_AGGREGATE_CACHE if kept else 0
        self.log: AgentLog = open_log(self.url, snapshot_interval=0, aggregate_cache=cache)
        self.ledger = Ledger(folder / "ledger")
        tools = counting_tools(self.ledger, delay=0.0)
        self.runtime = Runtime(self.log, ScriptedModel([TURN, DONE]), tools, worker_id="w")
        config = AgentConfig(tool_policies={"side_effecting": policy})
        self.agent_id = self.log.create_agent("victim", config)
        self.log.start_task(self.agent_id, "write safely")

    def step(self) -> StepKind:
        """One worker step."""
        return self.runtime.advance(self.agent_id).kind

    def version_of(self, kind: type[Agent.Event]) -> int:
        """The version of the agent's (only) event of this type."""
        (version,) = [
            e.originator_version for e in self.log.events_of(self.agent_id) if isinstance(e, kind)
        ]
        return version

    def edit(self, version: int, change: Edit) -> None:
        """Rewrite the stored JSON of the event at ``version`` in the database file."""
        where = "WHERE originator_id=? AND originator_version=?"
        key = (self.agent_id.hex, version)
        with sqlite3.connect(sqlite_path(self.url)) as db:
            (raw,) = db.execute(f"SELECT state FROM stored_events {where}", key).fetchone()
            state = json.loads(inflate(raw))
            change(state)
            db.execute(
                f"UPDATE stored_events SET state=? {where}", (json.dumps(state).encode(), *key)
            )

    def reseal(self, version: int, topic: str) -> Edit:
        """An edit that recomputes the event's digest, as a careful attacker would."""

        def change(state: dict[str, Any]) -> None:
            state["digest"] = event_digest(topic, str(self.agent_id), version, state)

        return change


def both(first: Edit, then: Edit) -> Edit:
    """One edit, then another."""

    def change(state: dict[str, Any]) -> None:
        first(state)
        then(state)

    return change


def evil_args(state: dict[str, Any]) -> None:
    state["args"] = {"label": "evil"}


def evil_args_and_hash(state: dict[str, Any]) -> None:
    evil_args(state)
    state["args_hash"] = args_hash({"label": "evil"})


@pytest.fixture
def allowed(tmp_path: Path) -> Iterator[Store]:
    store = Store(tmp_path, Policy.ALLOW)
    yield store
    store.log.close()


@pytest.fixture
def asked(tmp_path: Path) -> Iterator[Store]:
    store = Store(tmp_path, Policy.ASK)
    yield store
    store.log.close()


def assert_refused(store: Store, reason: str) -> None:
    """The call was recorded as refused with the reason, never started, never run."""
    assert store.step() is StepKind.REFUSED
    (refused,) = [
        e for e in store.log.events_of(store.agent_id) if isinstance(e, Agent.ToolCallRefused)
    ]
    assert refused.call_id == "c1"
    assert reason in refused.reason
    assert not [e for e in store.log.events_of(store.agent_id) if isinstance(e, Agent.ToolStarted)]
    assert store.ledger.runs() == {}
    assert "c1" not in store.log.get(store.agent_id).calls
    assert store.log.get(store.agent_id).last_error == refused.reason


def test_untouched_call_runs_with_its_arguments(allowed: Store) -> None:
    assert [allowed.step(), allowed.step(), allowed.step()] == ["model", "tool", "model"]
    (succeeded,) = [
        e for e in allowed.log.events_of(allowed.agent_id) if isinstance(e, Agent.ToolSucceeded)
    ]
    assert succeeded.result == {"label": "safe", "tool": "side_effecting"}


def test_edited_arguments_of_an_allowed_call_are_refused(allowed: Store) -> None:
    assert allowed.step() is StepKind.MODEL
    allowed.edit(allowed.version_of(Agent.ToolCalled), evil_args)
    assert_refused(allowed, "stored digest does not match its content")


def test_edited_arguments_and_hash_are_refused(allowed: Store) -> None:
    assert allowed.step() is StepKind.MODEL
    allowed.edit(allowed.version_of(Agent.ToolCalled), evil_args_and_hash)
    assert_refused(allowed, "stored digest does not match its content")


def test_resealed_arguments_that_miss_their_recorded_hash_are_refused(allowed: Store) -> None:
    """The newest event, resealed, verifies on its own: its own args_hash still binds it."""
    assert allowed.step() is StepKind.MODEL
    version = allowed.version_of(Agent.ToolCalled)
    reseal = allowed.reseal(version, "agentlog:Agent.ToolCalled@1")
    allowed.edit(version, both(evil_args, reseal))
    assert_refused(allowed, "do not match the hash they were recorded with")


def test_resealed_arguments_and_hash_are_refused_against_the_models_request(
    allowed: Store,
) -> None:
    """Arguments, hash and digest rewritten: the model's response still says what it asked."""
    assert allowed.step() is StepKind.MODEL
    version = allowed.version_of(Agent.ToolCalled)
    reseal = allowed.reseal(version, "agentlog:Agent.ToolCalled@1")
    allowed.edit(version, both(evil_args_and_hash, reseal))
    assert_refused(allowed, "not the ones the model asked for")


def test_resealed_arguments_are_refused_by_a_process_that_kept_the_agent(
    tmp_path: Path,
) -> None:
    """The runtime that recorded the call keeps the agent: rows rewritten under it no
    longer end at the head it knows, so the call is refused as a broken chain."""
    store = Store(tmp_path, Policy.ALLOW, kept=True)
    try:
        assert store.step() is StepKind.MODEL
        version = store.version_of(Agent.ToolCalled)
        reseal = store.reseal(version, "agentlog:Agent.ToolCalled@1")
        store.edit(version, both(evil_args_and_hash, reseal))
        assert_refused(store, "do not end at the agent's head")
    finally:
        store.log.close()


def test_edited_arguments_of_a_granted_call_are_refused(asked: Store) -> None:
    assert [asked.step(), asked.step()] == ["model", "asked"]
    asked.log.grant(asked.agent_id, "c1", approver="ann", args_hash=args_hash({"label": "safe"}))
    asked.edit(asked.version_of(Agent.ToolCalled), evil_args)
    assert_refused(asked, "stored digest does not match its content")


def test_resealed_call_edited_under_a_grant_is_refused(asked: Store) -> None:
    """The edited ToolCalled verifies on its own; its successors' links do not."""
    assert [asked.step(), asked.step()] == ["model", "asked"]
    asked.log.grant(asked.agent_id, "c1", approver="ann")
    version = asked.version_of(Agent.ToolCalled)
    topic = "agentlog:Agent.ToolCalled@1"
    asked.edit(version, both(evil_args_and_hash, asked.reseal(version, topic)))
    assert_refused(asked, "broken chain")


def test_grant_rewritten_to_other_arguments_is_refused(asked: Store) -> None:
    """Even resealed (it is the newest event), a grant for other arguments binds nothing."""
    assert [asked.step(), asked.step()] == ["model", "asked"]
    asked.log.grant(asked.agent_id, "c1", approver="ann")
    version = asked.version_of(Agent.PermissionGranted)
    topic = "agentlog:Agent.PermissionGranted@1"

    def other_grant(state: dict[str, Any]) -> None:
        state["args_hash"] = args_hash({"label": "evil"})
        asked.reseal(version, topic)(state)

    asked.edit(version, other_grant)
    assert_refused(asked, "not the ones the grant was given for")


def test_refused_call_is_the_models_error_and_the_agent_goes_on(allowed: Store) -> None:
    allowed.step()
    allowed.edit(allowed.version_of(Agent.ToolCalled), evil_args)
    assert [allowed.step(), allowed.step()] == ["refused", "model"]
    assert allowed.log.get(allowed.agent_id).status.value == "completed"
    assert allowed.ledger.runs() == {}
