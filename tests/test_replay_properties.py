"""Replay is exact: what a real SQLite file gives back is what was lived, to the type.

Every example writes a random history of Agent commands to its own SQLite file through
the production mapper (a temporary directory per example: function-scoped fixtures are
not reset between hypothesis examples). Commands that break a rule raise an AgentError
and record nothing; the histories are what succeeded.

"Full replay" below opens the same file with snapshotting switched off
(``IS_SNAPSHOTTING_ENABLED=n``, which ``snapshot_interval=0`` also implies today): that
repository has no snapshot store, so it folds every event from version 1 with the
library's own projector. The snapshot side reads the newest snapshot at or below the
version asked for, then the tail, as every load in production does.
"""

from __future__ import annotations

import itertools
import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, JsonValue

from agentlog.adapters.mapper import inflate
from agentlog.adapters.storage import env_for, open_log
from agentlog.domain import (
    GENESIS,
    Agent,
    AgentConfig,
    AgentError,
    AgentLog,
    CallStage,
    EffectClass,
    Lineage,
    Policy,
    TokenUsage,
    ToolCallRequest,
    event_digest,
)

Command = tuple[str, dict[str, Any]]
"""An Agent command method's name and its keyword arguments."""

CALL_IDS = ("c0", "c1", "c2")  # few ids, so later commands often find the call open
TOOLS = ("search", "send_email", "delete_file")

texts = st.text(max_size=12)  # all of Unicode but lone surrogates
names = st.sampled_from(["user", "ana", "worker-1", "Zoë 🤖"])
big_ints = st.integers(min_value=-(2**80), max_value=2**80)
json_values: st.SearchStrategy[JsonValue] = st.recursive(
    st.none() | st.booleans() | big_ints | st.floats(allow_nan=False, allow_infinity=False) | texts,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=10,
)
call_ids = st.sampled_from(CALL_IDS)
requests = st.builds(
    ToolCallRequest,
    call_id=call_ids,
    tool=st.sampled_from(TOOLS),
    args=st.dictionaries(texts, json_values, max_size=3),
)
configs = st.builds(
    AgentConfig,
    model=st.sampled_from(["scripted", "gpt-ö"]),
    system_prompt=texts,
    tool_policies=st.dictionaries(st.sampled_from(TOOLS), st.sampled_from(Policy)),
    default_policy=st.sampled_from(Policy),
    max_steps=st.none() | st.integers(1, 2**40),
    tool_timeout=st.floats(min_value=0.001, max_value=1e9),
)
lineages = st.none() | st.builds(
    Lineage, parent_id=st.uuids(), parent_version=st.integers(1, 2**62)
)


def command(
    name: str | st.SearchStrategy[str], **arguments: st.SearchStrategy[Any]
) -> st.SearchStrategy[Command]:
    """A strategy for one call of the command method ``name``."""
    names_ = st.just(name) if isinstance(name, str) else name
    return st.tuples(names_, st.fixed_dictionaries(arguments))


general_commands = st.one_of(
    command("start_task", goal=texts),
    command("receive_user_message", text=texts),
    command(
        "record_model_response",
        text=texts,
        model=st.sampled_from(["scripted", "gpt-ö"]),
        tool_calls=st.lists(requests, max_size=2).map(tuple),
        usage=st.builds(TokenUsage, prompt=st.integers(0, 2**64), completion=st.integers(0, 99)),
    ),
    command(
        "call_tool",
        request=requests,
        effect=st.sampled_from(EffectClass),
        policy=st.none() | st.sampled_from(Policy),
    ),
    command(st.sampled_from(["request_permission", "mark_outcome_unknown"]), call_id=call_ids),
    command("start_tool", call_id=call_ids, worker_id=names),
    command("succeed", call_id=call_ids, result=json_values),
    command("compact", back=st.integers(-1, 5), summary=texts, summarizer=names),
    command(
        "record_model_failure",
        kind=st.sampled_from(["http", "timeout"]),
        error=texts,
        model=st.sampled_from(["scripted", "gpt-ö"]),
    ),
    command("reject_tool_call", request=requests, reason=texts),
    command(
        "reach_limit",
        limit=st.sampled_from(["max_steps", "budget"]),
        value=st.integers(0, 99) | st.floats(allow_nan=False, allow_infinity=False),
    ),
)
"""Any command (many break a rule). ``compact`` goes back from the current version."""


def weighted(*choices: tuple[int, st.SearchStrategy[Command]]) -> st.SearchStrategy[Command]:
    """One of the strategies, drawn in proportion to its weight."""
    pool = [strategy for weight, strategy in choices for _ in range(weight)]
    return st.sampled_from(pool).flatmap(lambda strategy: strategy)


@cache
def call_steps(stage: CallStage, policy: Policy) -> st.SearchStrategy[Command]:
    """Mostly the step that moves an open call on; sometimes one its stage or policy forbids.

    The call id is filled in later, and ``args_hash`` names which hash an approver gives.
    """
    start = command("start_tool", worker_id=names)
    finish = command("succeed", result=json_values) | command("fail_tool", error=texts)
    given = st.sampled_from(["omitted", "recorded", "wrong"])
    deny = command("deny", args_hash=given, approver=names, reason=texts)
    ask = command("request_permission")
    grant = command("grant", args_hash=given, approver=names)
    unknown = command("mark_outcome_unknown")
    settle = command("settle", happened=st.booleans(), by=names)
    allowed = {Policy.ASK: ask, Policy.ALLOW: start, Policy.DENY: deny}[policy]
    by_stage = {
        CallStage.REQUESTED: weighted((4, allowed), (1, ask), (1, start), (1, deny)),
        CallStage.AWAITING_PERMISSION: weighted((3, grant), (1, deny)),
        CallStage.GRANTED: weighted((3, start), (1, deny)),
        CallStage.STARTED: weighted((3, finish), (1, start), (1, unknown)),
        CallStage.OUTCOME_UNKNOWN: weighted((2, finish), (1, start), (2, settle)),
    }
    return by_stage[stage]


def next_command(data: st.DataObject, agent: Agent) -> Command:
    """Mostly move an open call on; otherwise any command."""
    if agent.calls and data.draw(st.integers(0, 3)) > 0:
        call_id = data.draw(st.sampled_from(sorted(agent.calls)))
        call = agent.calls[call_id]
        name, arguments = data.draw(call_steps(call.stage, call.policy))
        hashes = {"omitted": None, "recorded": call.args_hash, "wrong": "0" * 64}
        if "args_hash" in arguments:
            arguments["args_hash"] = hashes[arguments["args_hash"]]
        return name, {"call_id": call_id, **arguments}
    name, arguments = data.draw(general_commands)
    if name == "compact":
        arguments["through_version"] = agent.version - arguments.pop("back")
    return name, arguments


endings = st.none() | st.one_of(
    command("complete", result=texts),
    command("fail", reason=texts),
    command("cancel", reason=texts),
)


def apply(agent: Agent, cmd: Command) -> None:
    """Run a command; one that breaks a rule records nothing, which the history accepts."""
    name, arguments = cmd
    with suppress(AgentError):
        getattr(agent, name)(**arguments)


def live(url: str, data: st.DataObject, snapshot_interval: int) -> tuple[Agent, list[Any]]:
    """Live a random history on a store, saving now and then.

    Returns the live agent and every event it saved, in order.
    """
    app = open_log(url, snapshot_interval=snapshot_interval)
    try:
        config, lineage = data.draw(configs, "config"), data.draw(lineages, "lineage")
        agent = Agent.create("agent", config, lineage=lineage)
        saved = [r.domain_event for r in app.save(agent)]
        agent.start_task(data.draw(texts, "goal"))
        for _ in range(data.draw(st.integers(0, 40), "steps")):
            apply(agent, next_command(data, agent))
            if data.draw(st.booleans(), "save now"):
                saved += [r.domain_event for r in app.save(agent)]
        ending = data.draw(endings, "ending")
        if ending is not None:
            apply(agent, ending)
        saved += [r.domain_event for r in app.save(agent)]
    finally:
        app.close()
    return agent, saved


@contextmanager
def sqlite_file() -> Iterator[str]:
    """A URL for a fresh SQLite file that is deleted afterwards."""
    with tempfile.TemporaryDirectory() as tmp:
        yield f"sqlite:///{Path(tmp) / 'agentlog.db'}"


@contextmanager
def reopened(url: str, *, snapshots: bool = True) -> Iterator[AgentLog]:
    """A fresh AgentLog on the same file; without snapshots, every load is a full replay."""
    if snapshots:
        app = AgentLog(env_for(url))
    else:
        app = AgentLog(env_for(url, snapshot_interval=0) | {"IS_SNAPSHOTTING_ENABLED": "n"})
    try:
        yield app
    finally:
        app.close()


def shape(value: Any) -> Any:
    """The value with the type of every part made explicit, so == compares types too.

    Plain == lets 1 == 1.0 == True, "ask" == Policy.ASK and [1] == (1,)-in-a-list slip by.
    """
    if isinstance(value, BaseModel):
        fields = type(value).model_fields
        return type(value), tuple((name, shape(getattr(value, name))) for name in fields)
    if isinstance(value, dict):
        return dict, frozenset((shape(k), shape(v)) for k, v in value.items())
    if isinstance(value, list | tuple):
        return type(value), tuple(shape(v) for v in value)
    if isinstance(value, datetime):
        return datetime, value, value.utcoffset()
    return type(value), value


def facts(agent: Agent) -> Any:
    """Everything replay must reproduce about an agent, types included."""
    return shape(agent.state()), agent.version, agent.created_on, agent.modified_on


@given(st.data())
def test_replay_equals_live_state(data: st.DataObject) -> None:
    with sqlite_file() as url:
        agent, _ = live(url, data, snapshot_interval=0)
        with reopened(url) as app:
            reloaded = app.get(agent.id)
            assert app.snapshots is not None
            assert not list(app.snapshots.get(agent.id))  # this one is pure replay
    assert reloaded.state() == agent.state()
    assert facts(reloaded) == facts(agent)


@given(st.data())
def test_snapshot_and_tail_equals_full_replay(data: st.DataObject) -> None:
    with sqlite_file() as url:
        agent, _ = live(url, data, snapshot_interval=3)
        with reopened(url) as app, reopened(url, snapshots=False) as replayer:
            assert app.snapshots is not None
            assert replayer.snapshots is None
            snapshot_versions = [s.originator_version for s in app.snapshots.get(agent.id)]
            assert bool(snapshot_versions) == (agent.version >= 3)  # every save crossing 3k
            assert facts(app.get(agent.id)) == facts(replayer.get(agent.id)) == facts(agent)
            for version in range(1, agent.version + 1):
                past = app.get(agent.id, version)
                assert facts(past) == facts(replayer.get(agent.id, version)), version
                assert past.version == version


@given(st.data())
def test_events_come_back_exactly_as_saved(data: st.DataObject) -> None:
    with sqlite_file() as url:
        agent, saved = live(url, data, snapshot_interval=0)
        with reopened(url) as app:
            loaded = list(app.events.get(agent.id))
    assert loaded == saved
    assert [shape(e) for e in loaded] == [shape(e) for e in saved]
    assert [type(e) for e in loaded] == [type(e) for e in saved]


@given(st.data())
def test_hash_chain_links_every_event_and_verifies_after_reload(data: st.DataObject) -> None:
    with sqlite_file() as url:
        agent, _ = live(url, data, snapshot_interval=3)
        with reopened(url) as app:
            events = list(app.events_of(agent.id))
            records = app.recorder.select_events(agent.id)
            head = app.get(agent.id).head_hash
    assert events[0].prev_hash == GENESIS
    for previous, event in itertools.pairwise(events):
        assert event.prev_hash == previous.digest
    assert all(event.compute_digest() == event.digest for event in events)
    assert head == events[-1].digest == agent.head_hash
    for record, event in zip(records, events, strict=True):
        stored_state = json.loads(inflate(record.state))
        assert stored_state["digest"] == event.digest
        recomputed = event_digest(
            record.topic, str(agent.id), record.originator_version, stored_state
        )
        assert recomputed == event.digest
