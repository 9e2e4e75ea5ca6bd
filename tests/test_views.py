"""Each view's rows: state phases, audit facts, transcript messages, runnable flags.

Commands go through the domain and are saved one by one, so every save is its own batch
for the embedded views: what one event's row needs from an earlier event (the tool of a
call, the agent's state) must come from the view's own tables, not from the batch.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from sqlalchemy import select

from agentlog.adapters.views import Store, open_store
from agentlog.domain import (
    Agent,
    AgentConfig,
    EffectClass,
    Policy,
    TokenUsage,
    ToolCallRequest,
    args_hash,
)
from agentlog.domain.messages import replay_transcript
from agentlog.projections import queries
from agentlog.projections.transcript import message_from_row

from conftest import store_url

ASK = AgentConfig(model="m1", system_prompt="be careful", default_policy=Policy.ASK)
ALLOW = AgentConfig(model="m1", default_policy=Policy.ALLOW)
SEARCH = ToolCallRequest(call_id="c1", tool="search", args={"q": "owls", "n": 3})


@pytest.fixture
def store(sqlite_url: str) -> Iterator[Store]:
    """A SQLite store whose views follow every save."""
    opened = open_store(sqlite_url)
    yield opened
    opened.close()


def act(store: Store, agent_id: UUID, command: Callable[[Agent], None]) -> None:
    """Load the agent, run one command on it, save it (one batch for the views)."""
    agent = store.log.get(agent_id)
    command(agent)
    store.log.save(agent)


def ask(store: Store, agent_id: UUID, call_id: str) -> None:
    """Ask a person's permission for the call."""
    act(store, agent_id, lambda a: a.request_permission(call_id))


def start(store: Store, agent_id: UUID, call_id: str) -> None:
    """Record that worker w1 starts the call."""
    act(store, agent_id, lambda a: a.start_tool(call_id, worker_id="w1"))


def running(store: Store, config: AgentConfig, goal: str = "find owls") -> UUID:
    """A new agent with a running task."""
    agent_id = store.log.create_agent("scout", config)
    store.log.start_task(agent_id, goal)
    return agent_id


def call(store: Store, agent_id: UUID, request: ToolCallRequest = SEARCH) -> None:
    """Record a pure tool call under the agent's configured policy."""
    store.log.call_tool(agent_id, request, EffectClass.PURE, None)


def state_row(store: Store, agent_id: UUID) -> dict[str, Any]:
    """The agent's row in the state view."""
    with store.views.engine.connect() as conn:
        rows = queries.states(conn, store.views.table(conn, "state"))
    return next(row for row in rows if row["agent_id"] == str(agent_id))


def audit_rows(store: Store, **where: Any) -> list[dict[str, Any]]:
    """Audit rows matching the filter, in log order."""
    with store.views.engine.connect() as conn:
        table = store.views.table(conn, "audit")
        return queries.audit(conn, table, queries.AuditFilter(**where))


def transcript(store: Store, agent_id: UUID) -> list[tuple[str, str]]:
    """The agent's transcript as (role, content) pairs."""
    with store.views.engine.connect() as conn:
        rows = queries.transcript(conn, store.views.table(conn, "transcript"), agent_id)
    return [(row["role"], row["content"]) for row in rows]


def runnable(store: Store) -> list[UUID]:
    """The agents a worker may advance now."""
    with store.views.engine.connect() as conn:
        return queries.runnable(conn, store.views.table(conn, "runnable"))


def utc(moment: datetime) -> datetime:
    """A stored time as an aware UTC datetime (SQLite gives naive ones back)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def assert_no_view_stopped(store: Store) -> None:
    """Every view applied the whole log."""
    for status in store.views.status():
        assert status.active is not None
        assert (status.name, status.active.error, status.lag) == (status.name, None, 0)


# -- state ---------------------------------------------------------------------------------


def test_state_row_follows_the_agent_through_waiting_blocked_and_completed(store: Store) -> None:
    agent_id = store.log.create_agent("scout", ASK)
    assert state_row(store, agent_id)["status"] == "idle"
    store.log.start_task(agent_id, "find owls")
    assert state_row(store, agent_id)["status"] == "running"
    call(store, agent_id)
    ask(store, agent_id, "c1")
    waiting = state_row(store, agent_id)
    assert (waiting["status"], waiting["pending_approvals"]) == ("waiting", "c1")
    store.log.grant(agent_id, "c1", approver="ana")
    granted = state_row(store, agent_id)
    assert (granted["status"], granted["pending_approvals"]) == ("running", "")
    start(store, agent_id, "c1")
    act(store, agent_id, lambda a: a.mark_outcome_unknown("c1"))
    assert state_row(store, agent_id)["status"] == "running"  # a worker reconciles it
    act(store, agent_id, lambda a: a.leave_to_person("c1", "cannot tell"))
    assert state_row(store, agent_id)["status"] == "blocked"
    store.log.record_result(agent_id, "c1", {"owls": 2})
    assert state_row(store, agent_id)["status"] == "running"
    store.log.complete(agent_id, "two owls")
    done = state_row(store, agent_id)
    assert (done["status"], done["result"], done["version"]) == ("completed", "two owls", 10)


def test_state_lists_every_call_waiting_for_a_person(store: Store) -> None:
    agent_id = running(store, ASK)
    for call_id in ("c1", "c2", "c3"):
        call(store, agent_id, SEARCH.model_copy(update={"call_id": call_id}))
    for call_id in ("c1", "c3"):
        ask(store, agent_id, call_id)
    assert state_row(store, agent_id)["pending_approvals"] == "c1,c3"


def test_state_counts_steps_and_tokens_and_names_the_model(store: Store) -> None:
    agent_id = running(store, ASK)
    first, second = TokenUsage(prompt=100, completion=7), TokenUsage(prompt=250, completion=7)
    act(store, agent_id, lambda a: a.record_model_response("hm", model="m1", usage=first))
    act(store, agent_id, lambda a: a.record_model_response("aha", model="m1", usage=second))
    row = state_row(store, agent_id)
    assert (row["name"], row["goal"], row["model"]) == ("scout", "find owls", "m1")
    assert (row["steps"], row["tokens"]) == (2, 364)


def test_state_keeps_the_last_error_and_the_reason_a_task_failed(store: Store) -> None:
    agent_id = running(store, ALLOW)
    call(store, agent_id)
    start(store, agent_id, "c1")
    act(store, agent_id, lambda a: a.fail_tool("c1", "timeout"))
    assert state_row(store, agent_id)["last_error"] == "timeout"
    act(store, agent_id, lambda a: a.fail("gave up"))
    row = state_row(store, agent_id)
    assert (row["status"], row["last_error"], row["result"]) == ("failed", "gave up", "gave up")


def test_state_times_are_the_agents_first_and_last_event_times(store: Store) -> None:
    agent_id = running(store, ASK)
    store.log.cancel(agent_id, "not needed")
    agent, row = store.log.get(agent_id), state_row(store, agent_id)
    assert utc(row["created_at"]) == agent.created_on
    assert utc(row["last_event_at"]) == agent.modified_on
    assert (row["status"], row["result"]) == ("cancelled", "not needed")


def test_state_view_holds_the_agent_as_the_log_replays_it(store: Store) -> None:
    agent_id = running(store, ASK)
    call(store, agent_id)
    ask(store, agent_id, "c1")
    with store.views.engine.connect() as conn:
        seen = queries.agent_from_state(conn, store.views.table(conn, "state"), agent_id)
    stored = store.log.get(agent_id)
    assert (seen.version, seen.state()) == (stored.version, stored.state())


# -- runnable ------------------------------------------------------------------------------


def test_only_agents_a_worker_can_move_are_runnable(store: Store) -> None:
    idle = store.log.create_agent("idle", ASK)
    runs = running(store, ALLOW)
    waits = running(store, ASK)
    call(store, waits)
    ask(store, waits, "c1")
    blocked = running(store, ALLOW)
    call(store, blocked)
    start(store, blocked, "c1")
    act(store, blocked, lambda a: a.mark_outcome_unknown("c1"))
    reconciles = running(store, ALLOW)
    call(store, reconciles)
    start(store, reconciles, "c1")
    act(store, reconciles, lambda a: a.mark_outcome_unknown("c1"))
    act(store, blocked, lambda a: a.leave_to_person("c1", "cannot tell"))
    done = running(store, ALLOW)
    store.log.complete(done)
    assert set(runnable(store)) == {runs, reconciles}
    with store.views.engine.connect() as conn:
        table = store.views.table(conn, "runnable")
        flags = {
            row.agent_id: (row.runnable, row.open_calls) for row in conn.execute(select(table))
        }
    assert flags == {
        str(idle): (False, 0),
        str(runs): (True, 0),
        str(waits): (False, 1),
        str(blocked): (False, 1),
        str(reconciles): (True, 1),
        str(done): (False, 0),
    }


def test_runnable_agents_come_idle_longest_first(store: Store) -> None:
    first, second = running(store, ALLOW), running(store, ALLOW)
    assert runnable(store) == [first, second]
    store.log.send(first, "and bats")  # first moved last
    assert runnable(store) == [second, first]


def test_an_agent_waiting_for_a_grant_becomes_runnable_once_granted(store: Store) -> None:
    agent_id = running(store, ASK)
    call(store, agent_id)
    ask(store, agent_id, "c1")
    assert runnable(store) == []
    store.log.grant(agent_id, "c1", approver="ana")
    assert runnable(store) == [agent_id]


# -- audit ---------------------------------------------------------------------------------


def test_a_call_is_one_row_from_its_request_to_its_outcome(store: Store) -> None:
    agent_id = running(store, ASK)
    call(store, agent_id)
    ask(store, agent_id, "c1")
    assert [r["decision"] for r in audit_rows(store)] == ["waiting"]
    store.log.grant(agent_id, "c1", approver="ana")
    start(store, agent_id, "c1")
    store.log.record_result(agent_id, "c1", ["owl"])
    (row,) = audit_rows(store, agent=str(agent_id))
    events = {type(e).__name__: e for e in store.log.events_of(agent_id)}
    assert {k: row[k] for k in ("call_id", "tool", "args_hash", "effect", "policy")} == {
        "call_id": "c1",
        "tool": "search",
        "args_hash": args_hash(SEARCH.args),
        "effect": "pure",
        "policy": "ask",
    }
    assert json.loads(row["args"]) == SEARCH.args
    assert (row["called_version"], row["requested_by"]) == (3, events["ToolCalled"].actor)
    assert (row["decision"], row["decided_by"], row["outcome"]) == ("approved", "ana", "succeeded")
    assert (row["attempts"], row["result_size"], row["detail"]) == (1, len('["owl"]'), None)
    times = [utc(row[k]) for k in ("called_at", "decided_at", "started_at", "finished_at")]
    assert times == [
        events[name].timestamp
        for name in ("ToolCalled", "PermissionGranted", "ToolStarted", "ToolSucceeded")
    ]
    assert row["finished_by"] == events["ToolSucceeded"].actor


def test_audit_rows_say_who_decided_what_and_what_came_of_it(store: Store) -> None:
    agent_id = running(store, ASK)
    for call_id in ("c1", "c2", "c3", "c4", "c5"):
        call(store, agent_id, SEARCH.model_copy(update={"call_id": call_id}))
        ask(store, agent_id, call_id)
    store.log.deny(agent_id, "c1", approver="bob", reason="too broad")
    for call_id in ("c2", "c3", "c4", "c5"):
        store.log.grant(agent_id, call_id, approver="ana")
    for call_id in ("c2", "c3", "c4"):
        start(store, agent_id, call_id)
    store.log.record_result(agent_id, "c2", 1)
    act(store, agent_id, lambda a: a.fail_tool("c3", "HTTP 500"))
    act(store, agent_id, lambda a: a.mark_outcome_unknown("c4"))
    act(store, agent_id, lambda a: a.refuse("c5", "edited"))
    facts = [
        (r["call_id"], r["decision"], r["decided_by"], r["outcome"], r["detail"])
        for r in audit_rows(store)
    ]
    assert facts == [
        ("c1", "denied", "bob", "not_run", "too broad"),
        ("c2", "approved", "ana", "succeeded", None),
        ("c3", "approved", "ana", "failed", "HTTP 500"),
        ("c4", "approved", "ana", "unknown", None),
        ("c5", "approved", "ana", "refused", "edited"),
    ]


def test_a_policy_decides_calls_it_allows_or_denies(store: Store) -> None:
    allowed, denied = running(store, ALLOW), running(store, ASK)
    call(store, allowed)
    call(store, denied)
    act(store, denied, lambda a: a.deny("c1", approver="policy", reason="search is denied"))
    rows = {r["agent_id"]: r for r in audit_rows(store)}
    auto, refused = rows[str(allowed)], rows[str(denied)]
    assert (auto["decision"], auto["decided_by"], auto["outcome"]) == ("auto", "policy", "pending")
    assert auto["decided_at"] == auto["called_at"]
    assert (refused["decision"], refused["decided_by"]) == ("denied", "policy")
    assert [r["call_id"] for r in audit_rows(store, actor="policy")] == ["c1", "c1"]


def test_audit_filters_by_agent_tool_actor_decision_effect_outcome_and_time(
    store: Store,
) -> None:
    one, two = running(store, ASK), running(store, ALLOW)
    call(store, one)
    ask(store, one, "c1")
    store.log.grant(one, "c1", approver="ana")
    email = ToolCallRequest(call_id="c1", tool="send_email", args={"to": "ana"})
    store.log.call_tool(two, email, EffectClass.SIDE_EFFECTING, None)
    start(store, two, "c1")
    assert [r["tool"] for r in audit_rows(store)] == ["search", "send_email"]
    assert [r["tool"] for r in audit_rows(store, agent=str(two))] == ["send_email"]
    assert [r["agent_id"] for r in audit_rows(store, tool="search")] == [str(one)]
    assert [r["tool"] for r in audit_rows(store, actor="ana")] == ["search"]
    assert [r["tool"] for r in audit_rows(store, decision="auto")] == ["send_email"]
    assert [r["tool"] for r in audit_rows(store, effect="side_effecting")] == ["send_email"]
    assert [r["tool"] for r in audit_rows(store, outcome="running")] == ["send_email"]
    assert [r["tool"] for r in audit_rows(store, outcome="pending")] == ["search"]
    assert audit_rows(store, agent=str(one), tool="send_email") == []
    later = datetime.now(UTC) + timedelta(minutes=1)
    assert audit_rows(store, since=later) == []
    cut = utc(audit_rows(store)[1]["called_at"])
    assert [r["tool"] for r in audit_rows(store, since=cut)] == ["send_email"]
    assert [r["tool"] for r in audit_rows(store, until=cut)] == ["search"]


def test_a_reused_call_id_gets_a_row_of_its_own(store: Store) -> None:
    agent_id = running(store, ALLOW)
    call(store, agent_id, ToolCallRequest(call_id="c1", tool="search"))
    start(store, agent_id, "c1")
    store.log.record_result(agent_id, "c1", "ok")
    email = ToolCallRequest(call_id="c1", tool="send_email", args={"to": "ana"})
    call(store, agent_id, email)
    start(store, agent_id, "c1")
    rows = [(r["tool"], r["args_hash"], r["outcome"]) for r in audit_rows(store)]
    assert rows == [
        ("search", args_hash({}), "succeeded"),
        ("send_email", args_hash(email.args), "running"),
    ]


def test_a_rejected_call_is_audited_under_the_tool_it_asked_for(store: Store) -> None:
    agent_id = running(store, ALLOW)
    call(store, agent_id, ToolCallRequest(call_id="c1", tool="search"))
    rejected = ToolCallRequest(call_id="c1", tool="rm_rf", args={"path": "/"})
    act(store, agent_id, lambda a: a.reject_tool_call(rejected, "unknown tool"))
    start(store, agent_id, "c1")  # the recorded c1, not the rejected one
    rows = [(r["tool"], r["decision"], r["outcome"], r["detail"]) for r in audit_rows(store)]
    assert rows == [
        ("search", "auto", "running", None),
        ("rm_rf", "refused", "refused", "unknown tool"),
    ]
    refused = audit_rows(store, tool="rm_rf")[0]
    assert (refused["args"], refused["args_hash"]) == ('{"path":"/"}', None)  # as asked


def test_a_call_made_before_the_views_process_started_is_found_in_the_table(
    sqlite_url: str,
) -> None:
    first = open_store(sqlite_url)
    agent_id = running(first, ASK)
    call(first, agent_id)
    ask(first, agent_id, "c1")
    first.close()
    second = open_store(sqlite_url)  # its audit view keeps no call in memory
    try:
        second.log.grant(agent_id, "c1", approver="ana")
        start(second, agent_id, "c1")
        store_rows = [(r["decided_by"], r["outcome"]) for r in audit_rows(second)]
        assert store_rows == [("ana", "running")]
        assert_no_view_stopped(second)
    finally:
        second.close()


# -- transcript ----------------------------------------------------------------------------


def test_transcript_holds_the_messages_the_model_sees_in_order(store: Store) -> None:
    agent_id = running(store, ASK)
    calls = (
        SEARCH,
        ToolCallRequest(call_id="c2", tool="rm"),
        SEARCH.model_copy(update={"call_id": "c3"}),
    )
    act(
        store,
        agent_id,
        lambda a: a.record_model_response("let me look", model="m1", tool_calls=calls),
    )
    for request in calls:
        call(store, agent_id, request)
        ask(store, agent_id, request.call_id)
    store.log.grant(agent_id, "c1", approver="ana")
    start(store, agent_id, "c1")
    store.log.record_result(agent_id, "c1", {"owls": ["barn"]})
    store.log.deny(agent_id, "c2", approver="bob", reason="never")
    store.log.grant(agent_id, "c3", approver="ana")
    start(store, agent_id, "c3")
    act(store, agent_id, lambda a: a.fail_tool("c3", "rate limited"))
    store.log.send(agent_id, "thanks")
    assert transcript(store, agent_id) == [
        ("system", "be careful"),
        ("user", "find owls"),
        ("assistant", "let me look"),
        ("tool", '{"owls": ["barn"]}'),
        ("tool", "denied by bob: never"),
        ("tool", "error: rate limited"),
        ("user", "thanks"),
    ]
    with store.views.engine.connect() as conn:
        table = store.views.table(conn, "transcript")
        rows = list(conn.execute(select(table).order_by(table.c.seq)))
    assert json.loads(rows[2].tool_calls) == [c.model_dump(mode="json") for c in calls]
    assert [row.call_id for row in rows] == [None, None, None, "c1", "c2", "c3", None]


def test_compaction_replaces_the_messages_it_covers_with_its_summary(store: Store) -> None:
    agent_id = running(store, ASK)
    store.log.send(agent_id, "first")
    act(store, agent_id, lambda a: a.record_model_response("answer", model="m1"))
    store.log.send(agent_id, "second")
    act(store, agent_id, lambda a: a.compact(4, "asked for owls, got an answer", summarizer="s"))
    store.log.send(agent_id, "third")
    assert transcript(store, agent_id) == [
        ("system", "be careful"),
        ("user", "[summary of the conversation so far]\nasked for owls, got an answer"),
        ("user", "second"),
        ("user", "third"),
    ]


def test_a_later_compaction_replaces_the_earlier_summary(store: Store) -> None:
    agent_id = running(store, ASK)
    store.log.send(agent_id, "first")
    act(store, agent_id, lambda a: a.compact(3, "one", summarizer="s"))
    store.log.send(agent_id, "second")
    store.log.send(agent_id, "third")
    act(store, agent_id, lambda a: a.compact(5, "two", summarizer="s"))
    assert transcript(store, agent_id) == [
        ("system", "be careful"),
        ("user", "[summary of the conversation so far]\ntwo"),
        ("user", "third"),
    ]


def test_compaction_in_the_same_batch_as_the_messages_it_covers(store: Store) -> None:
    agent_id = store.log.create_agent("scout", ASK)
    agent = store.log.get(agent_id)
    agent.start_task("find owls")
    agent.receive_user_message("first")
    agent.compact(3, "short", summarizer="s")
    agent.receive_user_message("second")
    store.log.save(agent)
    assert transcript(store, agent_id) == [
        ("system", "be careful"),
        ("user", "[summary of the conversation so far]\nshort"),
        ("user", "second"),
    ]


def test_transcript_view_equals_the_domains_replay_of_the_log(store: Store) -> None:
    agent_id = running(store, ALLOW)
    act(
        store, agent_id, lambda a: a.record_model_response("look", model="m1", tool_calls=(SEARCH,))
    )
    call(store, agent_id)
    start(store, agent_id, "c1")
    store.log.record_result(agent_id, "c1", None)
    act(
        store,
        agent_id,
        lambda a: a.reject_tool_call(ToolCallRequest(call_id="c9", tool="x"), "no such tool"),
    )
    act(store, agent_id, lambda a: a.compact(3, "sum", summarizer="s"))
    store.log.send(agent_id, "go on")
    with store.views.engine.connect() as conn:
        table = store.views.table(conn, "transcript")
        query = select(table).where(table.c.agent_id == str(agent_id)).order_by(table.c.seq)
        seen = [message_from_row(row) for row in conn.execute(query)]
    assert seen == replay_transcript(store.log.events_of(agent_id))
    assert [m.role for m in seen] == ["user", "tool", "tool", "user"]


def test_compacting_through_the_system_prompt_keeps_the_transcript_view_going(
    store: Store,
) -> None:
    agent_id = store.log.create_agent("scout", ASK)
    act(store, agent_id, lambda a: a.compact(1, "nothing yet", summarizer="s"))
    store.log.start_task(agent_id, "find owls")
    assert_no_view_stopped(store)
    assert transcript(store, agent_id) == [
        ("system", "be careful"),
        ("user", "[summary of the conversation so far]\nnothing yet"),
        ("user", "find owls"),
    ]


# -- what the domain accepts, every backend's views can hold ---------------------------------


BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A store on the backend the test is parametrized with."""
    opened = open_store(store_url(request.param, tmp_path))
    yield opened
    opened.close()


@pytest.mark.parametrize("any_store", BACKENDS, indirect=True)
def test_a_nul_character_in_a_message_does_not_stop_the_views(any_store: Store) -> None:
    """PostgreSQL's TEXT cannot hold NUL: the views show U+FFFD in its place."""
    agent_id = running(any_store, ASK, goal="find\x00owls")
    any_store.log.send(agent_id, "and\x00bats")
    assert_no_view_stopped(any_store)
    assert state_row(any_store, agent_id)["goal"] == "find\ufffdowls"
    assert transcript(any_store, agent_id)[-1] == ("user", "and\ufffdbats")


@pytest.mark.parametrize("any_store", BACKENDS, indirect=True)
def test_a_long_agent_name_or_approver_does_not_stop_the_views(any_store: Store) -> None:
    agent_id = any_store.log.create_agent("n" * 300, ASK)
    any_store.log.start_task(agent_id, "find owls", actor="a" * 300)
    assert_no_view_stopped(any_store)
    assert state_row(any_store, agent_id)["name"] == "n" * 300


@pytest.mark.parametrize("any_store", BACKENDS, indirect=True)
def test_token_totals_beyond_32_bits_do_not_stop_the_state_view(any_store: Store) -> None:
    agent_id = running(any_store, ASK)
    usage = TokenUsage(prompt=3_000_000_000, completion=1)
    act(any_store, agent_id, lambda a: a.record_model_response("long", model="m1", usage=usage))
    assert_no_view_stopped(any_store)
    assert state_row(any_store, agent_id)["tokens"] == 3_000_000_001
