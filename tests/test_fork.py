"""Forking: a fork's state and model context equal its parent's at the fork version; the
parent is never changed; the link to the parent is recorded and checkable; a version
with a tool call in flight cannot be forked; the views, the runtime and the CLI see it.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from click.testing import CliRunner, Result
from eventsourcing.persistence import StoredEvent
from hypothesis import event, given
from hypothesis import strategies as st

from agentlog.adapters.scripted import FunctionModel
from agentlog.adapters.storage import env_for, open_log
from agentlog.adapters.views import open_store
from agentlog.cli import main
from agentlog.domain import (
    GENESIS,
    Agent,
    AgentConfig,
    AgentLog,
    Lineage,
    Policy,
    event_digest,
)
from agentlog.domain.errors import ForkPointError
from agentlog.domain.inheritance import IDENTITY
from agentlog.domain.lineage import ancestry, divergence
from agentlog.domain.ports import Context, Decision, Message
from agentlog.domain.runtime import LogTranscript, Runtime
from agentlog.projections import queries
from agentlog.projections.transcript import message_from_row

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
if str(EXAMPLES) not in sys.path:
    sys.path.insert(0, str(EXAMPLES))

from histories import grow, moves, rows  # noqa: E402
from support_agent import SupportAgent, SupportDesk  # noqa: E402


def own(agent: Agent) -> dict[str, Any]:
    """The state a fork inherits (all but its identity)."""
    return {k: v for k, v in agent.state().items() if k not in IDENTITY}


def in_flight(log: AgentLog, agent: Agent) -> bool:
    """Whether a tool call has no outcome at the agent's version (recorded or not)."""
    context = log.context(agent)
    answered = {m.call_id for m in context if m.role == "tool"}
    asked = {c.call_id for m in context for c in m.tool_calls}
    return bool(agent.calls) or not asked <= answered


@given(prompt=st.sampled_from(["", "be brief"]), plan=moves, data=st.data())
def test_a_forks_state_and_context_equal_its_parents_at_the_fork_version(
    prompt: str, plan: list[tuple[str, Any]], data: st.DataObject
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "a.db"
        log = open_log(f"sqlite:///{path}", snapshot_interval=3)
        try:
            parent_id = log.create_agent("p", AgentConfig(system_prompt=prompt, max_steps=10**6))
            log.start_task(parent_id, "work")
            grow(log, parent_id, plan)
            head = log.get(parent_id).version
            version = data.draw(st.integers(1, head), label="version")
            at = log.get(parent_id, version=version)
            before = rows(path)
            event("refused" if in_flight(log, at) else "forked")
            if in_flight(log, at):
                with pytest.raises(ForkPointError):
                    log.fork(parent_id, version)
                assert rows(path) == before
                return
            child_id = log.fork(parent_id, version, model="other")
            child = log.get(child_id)
            assert own(child) == own(at)
            assert log.context(child) == log.context(at)
            assert (child.version, child.compacted_through, child.config.model) == (1, 0, "other")
            assert child.config.model_copy(update={"model": at.config.model}) == at.config
            assert child.lineage == Lineage(
                parent_id=parent_id, parent_version=version, parent_digest=at.head_hash
            )
            assert [r for r in rows(path) if r[0] == parent_id.hex] == [
                r for r in before if r[0] == parent_id.hex
            ]  # the parent's rows, byte for byte
            created = next(log.events_of(child_id))
            assert created.prev_hash == GENESIS
            assert log.chained_events(child, 1) == [created]
            assert ancestry(log, child_id)[0].check == "verified"
        finally:
            log.close()


@given(plan=moves, after=st.lists(st.text(max_size=4), max_size=6))
def test_a_fork_loads_the_same_from_its_snapshots_and_from_its_events(
    plan: list[tuple[str, Any]], after: list[str]
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'a.db'}"
        log = open_log(url, snapshot_interval=2)
        try:
            parent_id = log.create_agent("p", AgentConfig(max_steps=10**6))
            log.start_task(parent_id, "work")
            grow(log, parent_id, [m for m in plan if m[0] != "call"])
            child_id = log.fork(parent_id)
            for text in after:
                log.send(child_id, text)
            replayed = AgentLog(env_for(url) | {"IS_SNAPSHOTTING_ENABLED": "n"})
            assert replayed.get(child_id).state() == log.get(child_id).state()
            replayed.close()
        finally:
            log.close()


def test_a_fork_of_a_custom_aggregate_keeps_its_class_and_its_own_state() -> None:
    desk = SupportDesk(env_for("memory://"))
    ticket = desk.open_ticket("T-7")
    desk.start_task(ticket, "help")
    desk.escalate(ticket, "billing", "refund")
    child = desk.get_support_agent(desk.fork(ticket))
    assert (child.ticket, child.escalations, child.escalated_to) == ("T-7", 1, "billing")
    assert own(child) == own(desk.get(ticket))
    assert type(child) is SupportAgent


def test_calls_in_flight_are_refused_with_a_clear_error_and_nothing_is_stored(
    app: AgentLog,
) -> None:
    parent = app.create_agent("p", AgentConfig(default_policy=Policy.ALLOW))
    app.start_task(parent, "work")
    grow(app, parent, [("call", 1)])  # 3: the model asks, 4: the call is recorded
    asked = app.get(parent).version - 1
    with pytest.raises(ForkPointError, match="are not recorded yet"):
        app.fork(parent, asked)
    with pytest.raises(ForkPointError, match=r"without outcome: c0-0 \(requested\)"):
        app.fork(parent)
    assert list(app.agent_ids()) == [parent]


def test_a_lineage_recorded_before_digests_still_reads(app: AgentLog) -> None:
    """A Created stored without ``inherited`` and with a lineage without
    ``parent_digest`` (as written before forks carried them) loads and verifies."""
    parent = app.create_agent("p")
    lineage = Lineage(parent_id=parent, parent_version=1)
    fresh = Agent.create("old child", lineage=lineage)
    state: dict[str, Any] = fresh.collect_events()[0].stored_state()
    del state["inherited"]
    del state["lineage"]["parent_digest"]
    state["digest"] = event_digest("agentlog:Agent.Created@1", str(fresh.id), 1, state)
    row = StoredEvent(fresh.id, 1, "agentlog:Agent.Created@1", json.dumps(state).encode())
    app.recorder.insert_events([row])
    old = app.get(fresh.id)
    assert (old.name, old.lineage) == ("old child", lineage)
    assert app.chained_events(old, 1)[0].digest == state["digest"]
    assert [link.check for link in ancestry(app, fresh.id)] == ["unrecorded", ""]


def test_a_forks_first_model_call_sees_the_parents_context(app: AgentLog) -> None:
    parent = app.create_agent("p", AgentConfig(system_prompt="sys", model="a"))
    app.start_task(parent, "count")
    grow(app, parent, [("answer", "one"), ("say", "more"), ("answer", "two")])
    fork_at = app.get(parent).version - 1  # before "two": the step to retry
    seen: list[Context] = []

    def decide(context: Context) -> Decision:
        seen.append(context)
        return Decision(text="better", done=True)

    child = app.fork(parent, fork_at, model="b")
    runtime = Runtime(app, FunctionModel(decide, "b"), {}, worker_id="w")
    runtime.advance(child)
    assert list(seen[0].messages) == app.context(app.get(parent, version=fork_at))
    assert [m.content for m in seen[0].messages] == ["sys", "count", "one", "more"]
    assert app.get(child).result == "better"
    assert app.get(parent).status == "running"  # the parent goes on as it was


def test_a_forks_own_compaction_covers_the_inherited_context(app: AgentLog) -> None:
    parent = app.create_agent("p", AgentConfig(system_prompt="sys"))
    app.start_task(parent, "go")
    grow(app, parent, [("answer", "a"), ("say", "b")])
    child = app.fork(parent)
    app.send(child, "c")
    app.compact(child, "all so far", summarizer="s")
    app.send(child, "d")
    messages = LogTranscript(app).messages(app.get(child))
    assert [m.content for m in messages] == [
        "sys",
        "[summary of the conversation so far]\nall so far",
        "d",
    ]


def test_the_views_show_a_fork_from_its_parents_point(sqlite_url: str) -> None:
    store = open_store(sqlite_url)
    try:
        log = store.log
        parent = log.create_agent("p", AgentConfig(system_prompt="sys"))
        log.start_task(parent, "go")
        grow(log, parent, [("answer", "a"), ("say", "b"), ("answer", "c")])
        child = log.fork(parent, 4, name="kid")
        at = log.get(parent, version=4)
        with store.views.engine.connect() as conn:
            views = store.views
            state = queries.agent_from_state(conn, views.table(conn, "state"), child)
            transcript = queries.transcript(conn, views.table(conn, "transcript"), child)
            runnable = queries.runnable(conn, views.table(conn, "runnable"))
        assert own(state) == own(at)
        assert state.name == "kid"
        assert [message_from_row(r) for r in _rows(transcript)] == log.context(at)
        assert child in runnable
        assert parent in runnable
        store.views.rebuild_many(("transcript",), lambda *_: None)
        with store.views.engine.connect() as conn:
            rebuilt = queries.transcript(conn, store.views.table(conn, "transcript"), child)
        assert rebuilt == transcript
    finally:
        store.close()


def _rows(rows: list[dict[str, Any]]) -> list[Any]:
    return [type("Row", (), row)() for row in rows]


def test_diff_finds_the_common_point_of_two_forks_of_one_parent(app: AgentLog) -> None:
    parent = app.create_agent("p")
    app.start_task(parent, "go")
    grow(app, parent, [("say", "1"), ("say", "2"), ("say", "3")])
    early, late = app.fork(parent, 3), app.fork(parent, 4)
    app.send(early, "e")
    parted = divergence(app, early, late)
    assert parted.common is not None
    assert parted.common[:2] == (parent, 3)
    assert [(e.originator_id, e.originator_version) for e in parted.a] == [
        (early, 1),
        (early, 2),
    ]
    assert [(e.originator_id, e.originator_version) for e in parted.b] == [
        (parent, 4),
        (late, 1),
    ]
    assert divergence(app, parent, late).common == (parent, 4, app.get(parent, 4).head_hash)
    other = app.create_agent("x")
    assert divergence(app, parent, other).common is None


# The command line


@pytest.fixture
def cli(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("AGENTLOG_DB", sqlite_url)
    return CliRunner()


def run(cli: CliRunner, *args: str) -> Result:
    return cli.invoke(main, list(args))


def test_fork_log_lineage_show_and_diff_on_the_command_line(
    cli: CliRunner, sqlite_url: str
) -> None:
    parent = run(cli, "new", "--name", "p", "--goal", "go").output.strip()
    log = open_log(sqlite_url)
    grow(log, UUID(parent), [("say", "one"), ("say", "two")])
    log.close()
    result = run(cli, "fork", parent[:8], "--at", "3", "--name", "kid", "--model", "openai:m2")
    assert result.exit_code == 0, result.output
    child = result.output.strip()
    shown = json.loads(run(cli, "show", child, "--json").output)
    assert (shown["name"], shown["goal"], shown["config"]["model"]) == ("kid", "go", "openai:m2")
    assert (shown["lineage"]["parent_id"], shown["lineage"]["parent_version"]) == (parent, 3)
    walked = run(cli, "log", child, "--lineage")
    assert walked.exit_code == 0, walked.output
    lines = walked.output.splitlines()
    assert lines[0].startswith(f"== agent {parent} 'p', v1..v3")
    assert lines[4].startswith(f"== agent {child} 'kid'")
    assert lines[4].endswith("[verified]")
    as_json = [
        json.loads(line)
        for line in run(cli, "log", child, "--lineage", "--json").output.splitlines()
    ]
    assert [(e["originator_id"], e["originator_version"]) for e in as_json] == [
        (parent, 1),
        (parent, 2),
        (parent, 3),
        (child, 1),
    ]
    parted = json.loads(run(cli, "diff", parent, child, "--json").output)
    assert (parted["common"]["agent_id"], parted["common"]["version"]) == (parent, 3)
    assert [e["type"] for e in parted["a"]["events"]] == ["UserMessageReceived"]
    assert [e["type"] for e in parted["b"]["events"]] == ["Created"]
    text = run(cli, "diff", parent, child).output
    assert f"common point: {parent} v3" in text
    assert "UserMessageReceived" in text


def test_fork_errors_are_one_line(cli: CliRunner, sqlite_url: str) -> None:
    parent = run(cli, "new", "--name", "p", "--goal", "go").output.strip()
    log = open_log(sqlite_url)
    grow(log, UUID(parent), [("call", 1)])
    log.close()
    refused = run(cli, "fork", parent)
    assert refused.exit_code == 1
    assert refused.output.startswith("Error: cannot fork agent")
    assert "c0-0" in refused.output
    assert run(cli, "fork", parent, "--at", "99").exit_code == 1
    assert run(cli, "fork", parent, "--at", "2", "--model", "nope").exit_code == 2
    assert run(cli, "ls", "--json").output.count('"id"') == 1  # nothing was created


def test_a_fork_runs_with_its_own_model_from_the_command_line(
    cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.json").write_text(json.dumps([{"text": "wrong", "done": True}]))
    (tmp_path / "good.json").write_text(json.dumps([{"text": "right", "done": True}]))
    parent = run(cli, "new", "--name", "p", "--goal", "go", "--model", "scripted:bad.json")
    parent_id = parent.output.strip()
    assert run(cli, "run", parent_id).exit_code == 0
    child = run(cli, "fork", parent_id, "--at", "2", "--model", "scripted:good.json")
    assert child.exit_code == 0, child.output
    assert run(cli, "run", child.output.strip()).exit_code == 0
    shown = json.loads(run(cli, "show", child.output.strip(), "--json").output)
    assert (shown["status"], shown["result"]) == ("completed", "right")
    parent_shown = json.loads(run(cli, "show", parent_id, "--json").output)
    assert parent_shown["result"] == "wrong"


def test_message_order_of_an_inherited_context(app: AgentLog) -> None:
    """Inherited messages sit before anything the fork records (negative places)."""
    parent = app.create_agent("p", AgentConfig(system_prompt="sys"))
    app.start_task(parent, "go")
    child = app.fork(parent)
    app.send(child, "next")
    assert app.context(app.get(child)) == [
        Message(role="system", content="sys"),
        Message(role="user", content="go"),
        Message(role="user", content="next"),
    ]


def test_fork_lineage_and_diff_on_every_backend(backend_url: str) -> None:
    log = open_log(backend_url)
    try:
        parent = log.create_agent("p", AgentConfig(system_prompt="sys"))
        log.start_task(parent, "go")
        grow(log, parent, [("say", "a"), ("call", 1), ("run", 0), ("compact", 1), ("say", "b")])
        version = log.get(parent).version - 1
        child = log.fork(parent, version)
        at = log.get(parent, version=version)
        assert own(log.get(child)) == own(at)
        assert log.context(log.get(child)) == log.context(at)
        assert [link.check for link in ancestry(log, child)] == ["verified", ""]
        parted = divergence(log, parent, child)
        assert parted.common == (parent, version, at.head_hash)
        assert [e.originator_version for e in parted.a] == [version + 1]
    finally:
        log.close()
