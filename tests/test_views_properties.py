"""Rebuilt view == incremental view, for random multi-agent histories, on SQLite and PostgreSQL.

Each example lives a random history of several agents through the domain's commands
(commands that break a rule raise an AgentError, record nothing and are skipped), saving
now and then, one agent or several in one save. The views are embedded, as in the CLI:
they catch up after every save, in batches of a few events, so batch boundaries fall
anywhere. Then every view is rebuilt from position 0 with another batch size, and the
serving rows before and after must be equal, column by column.

The views are also checked against the log itself: the state view's agent is the
replayed agent, the transcript is the domain's ``replay_transcript``, the audit view has
one row per tool call with the decision and outcome its events say.

Texts have no NUL character: the views store U+FFFD in its place (PostgreSQL's TEXT
cannot hold NUL), so their transcript would differ from the log's replay on purpose.

Every example gets its own SQLite file or PostgreSQL database (function-scoped fixtures
are not reset between hypothesis examples).

The last tests are about rebuilds as readers see them: the serving build keeps serving
until the new one caught up, then they swap; a new view version gets fresh tables.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, ClassVar
from uuid import UUID

import pytest
from histories import embedded_views
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import JsonValue
from sqlalchemy import (
    Column,
    Connection,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    insert,
    inspect,
    select,
)

from agentlog.adapters.storage import open_log
from agentlog.adapters.views import engine_for
from agentlog.domain import (
    Agent,
    AgentConfig,
    AgentError,
    AgentLog,
    CallStage,
    CallState,
    EffectClass,
    Phase,
    Policy,
    Status,
    TokenUsage,
    ToolCallRequest,
)
from agentlog.domain.messages import replay_transcript
from agentlog.projections import DEFAULT_VIEWS, Positioned, Projections, View, queries
from agentlog.projections.transcript import message_from_row

from conftest import store_url

Command = tuple[str, dict[str, Any]]
"""An Agent command method's name and its keyword arguments."""

TOOLS = ("search", "send_email", "delete_file")
VIEW_NAMES = [cls.name for cls in DEFAULT_VIEWS]

texts = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=8)
people = st.sampled_from(["user", "ana", "worker-1", "Zoë 🤖", "long " * 60])
names = texts | st.just("a name longer than a VARCHAR(200) " * 8)
json_values: st.SearchStrategy[JsonValue] = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**6), 10**6) | texts,
    lambda inner: st.lists(inner, max_size=2) | st.dictionaries(texts, inner, max_size=2),
    max_leaves=5,
)
configs = st.builds(
    AgentConfig,
    model=st.sampled_from(["scripted", "gpt-ö"]),
    system_prompt=st.sampled_from(["", "be brief"]) | texts,
    tool_policies=st.dictionaries(st.sampled_from(TOOLS), st.sampled_from(Policy)),
    default_policy=st.sampled_from(Policy),
)
usages = st.builds(
    TokenUsage, prompt=st.integers(0, 2**40), completion=st.integers(0, 500)
)  # totals beyond 32 bits

RAM_DISK = "/dev/shm" if Path("/dev/shm").is_dir() else None
"""Where the SQLite files go: the behaviour is the same, without waiting for fsync."""

pg_examples = settings(max_examples=max(5, settings().max_examples // 3))
"""PostgreSQL examples cost a database each: a third of the profile's count."""


def command(name: str, **arguments: st.SearchStrategy[Any]) -> st.SearchStrategy[Command]:
    """A strategy for one call of the command method ``name``."""
    return st.tuples(st.just(name), st.fixed_dictionaries(arguments))


def requests(ids: st.SearchStrategy[str]) -> st.SearchStrategy[ToolCallRequest]:
    """Tool calls as a model would ask for them."""
    return st.builds(
        ToolCallRequest,
        call_id=ids,
        tool=st.sampled_from(TOOLS),
        args=st.dictionaries(texts, json_values, max_size=2),
    )


def call_step(call_id: str, call: CallState) -> st.SearchStrategy[Command]:
    """A command that moves an open call on (or that its policy forbids)."""
    one = st.just(call_id)
    ask = command("request_permission", call_id=one)
    grant = command("grant", call_id=one, approver=people)
    deny = command("deny", call_id=one, approver=people, reason=texts)
    start = command("start_tool", call_id=one, worker_id=people)
    succeed = command("succeed", call_id=one, result=json_values)
    fail = command("fail_tool", call_id=one, error=texts)
    unknown = command("mark_outcome_unknown", call_id=one)
    by_stage = {
        CallStage.REQUESTED: st.one_of(ask, start, deny),
        CallStage.AWAITING_PERMISSION: st.one_of(grant, grant, deny),
        CallStage.GRANTED: st.one_of(start, start, deny),
        CallStage.STARTED: st.one_of(succeed, fail, unknown, start),
        CallStage.OUTCOME_UNKNOWN: st.one_of(succeed, fail, start),
    }
    return by_stage[call.stage]


def weighted(*choices: tuple[int, st.SearchStrategy[Command]]) -> st.SearchStrategy[Command]:
    """One of the strategies, drawn in proportion to its weight."""
    pool = [strategy for weight, strategy in choices for _ in range(weight)]
    return st.sampled_from(pool).flatmap(lambda strategy: strategy)


def agent_step(agent: Agent, ids: st.SearchStrategy[str]) -> st.SearchStrategy[Command]:
    """A command for the agent as it is; endings are rare, so that histories get long."""
    compact = command(
        "compact", through_version=st.integers(1, agent.version + 1), summary=texts,
        summarizer=people,
    )  # fmt: skip
    message = command("receive_user_message", text=texts, actor=people)
    if agent.status is not Status.RUNNING:
        return weighted((4, command("start_task", goal=texts)), (1, message), (1, compact))
    respond = command(
        "record_model_response",
        text=texts,
        model=st.sampled_from(["scripted", "gpt-ö"]),
        tool_calls=st.lists(requests(ids), max_size=2).map(tuple),
        usage=usages,
    )
    call = command(
        "call_tool",
        request=requests(ids),
        effect=st.sampled_from(EffectClass),
        policy=st.none() | st.sampled_from(Policy),
    )
    model_failure = command(
        "record_model_failure", kind=st.sampled_from(["http", "timeout"]), error=texts,
        model=st.just("scripted"),
    )  # fmt: skip
    ending = st.one_of(
        command("complete", result=texts),
        command("fail", reason=texts),
        command("cancel", reason=texts),
    )
    return weighted(
        (4, call),
        (3, respond),
        (2, message),
        (2, compact),
        (1, command("reject_tool_call", request=requests(ids), reason=texts)),
        (1, model_failure),
        (1, command("reach_limit", limit=st.just("max_steps"), value=st.integers(1, 9))),
        (1, command("start_task", goal=texts)),  # breaks a rule: records nothing
        (1, ending),
    )


class Lives:
    """Several agents living a random history on one log."""

    def __init__(self, app: AgentLog, data: st.DataObject) -> None:
        self.app, self.data = app, data
        self.agents: list[Agent] = []

    def call_ids(self) -> st.SearchStrategy[str]:
        """Few ids, so that an id is often used again after its first call closed."""
        return st.sampled_from(["c0", "c1", "c2"])

    def new_agent(self) -> Agent:
        """Create an agent, mostly with a task at once."""
        agent = Agent.create(self.data.draw(names, "name"), self.data.draw(configs))
        if self.data.draw(st.integers(0, 4), "start at once?") > 0:
            agent.start_task(self.data.draw(texts, "goal"))
        self.agents.append(agent)
        return agent

    def pick(self) -> Agent:
        """An agent whose task is not over, now and then a new one."""
        alive = [a for a in self.agents if not a.status.is_final]
        if not alive or (len(self.agents) < 4 and self.data.draw(st.integers(0, 9)) == 0):
            return self.new_agent()
        return alive[self.data.draw(st.integers(0, len(alive) - 1), "agent")]

    def step(self) -> None:
        """One command for one agent, then perhaps a save of it, or of every agent."""
        agent = self.pick()
        if agent.calls and self.data.draw(st.integers(0, 3), "move a call?") > 0:
            call_id = self.data.draw(st.sampled_from(sorted(agent.calls)), "call")
            name, arguments = self.data.draw(call_step(call_id, agent.calls[call_id]))
        else:
            name, arguments = self.data.draw(agent_step(agent, self.call_ids()))
        with suppress(AgentError):
            getattr(agent, name)(**arguments)
        save = self.data.draw(st.sampled_from(["no", "no", "this", "all"]), "save")
        if save == "this":
            self.app.save(agent)
        elif save == "all":
            self.app.save(*self.agents)

    def live(self, max_steps: int) -> None:
        """The whole history; everything is saved at the end."""
        for _ in range(self.data.draw(st.integers(max_steps // 3, max_steps), "steps")):
            self.step()
        self.app.save(*self.agents)


@contextmanager
def sqlite_file() -> Iterator[str]:
    """A URL for a fresh SQLite file that is deleted afterwards."""
    with tempfile.TemporaryDirectory(dir=RAM_DISK) as tmp:
        yield f"sqlite:///{Path(tmp) / 'agentlog.db'}"


@contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh database on the test session's PostgreSQL server."""
    yield store_url("postgres", Path())


def rows_of(views: Projections, name: str) -> list[tuple[Any, ...]]:
    """Every row of the view's serving build, in primary key order."""
    with views.engine.connect() as conn:
        table = views.table(conn, name)
        query = select(table).order_by(*table.primary_key.columns)
        return [tuple(row) for row in conn.execute(query)]


def assert_caught_up_without_errors(views: Projections) -> None:
    """Every view serves a build at the head of the log, and none stopped."""
    for status in views.status():
        assert status.active is not None
        assert status.active.error is None, status.active.error
        assert status.lag == 0, status


Expected = tuple[str, str | None, str | None, str]
"""A call's tool, arguments hash, decision and outcome."""
_STAGES: dict[type[Any], tuple[str | None, str | None, bool]] = {
    # event -> (decision it makes, outcome it gives, whether the call is closed after it)
    Agent.PermissionRequested: ("waiting", None, False),
    Agent.PermissionGranted: ("approved", None, False),
    Agent.PermissionDenied: ("denied", "not_run", True),
    Agent.ToolStarted: (None, "running", False),
    Agent.ToolSucceeded: (None, "succeeded", True),
    Agent.ToolFailed: (None, "failed", True),
    Agent.ToolOutcomeUnknown: (None, "unknown", False),
    Agent.ToolCallRefused: (None, "refused", True),
}


def expected_calls(app: AgentLog) -> dict[int, Expected]:
    """Position of each call's first event -> what became of the call, read from the log.

    A rejected call names its tool but was never recorded, so it has no arguments hash.
    """
    open_calls: dict[tuple[UUID, str], int] = {}
    calls: dict[int, Expected] = {}
    for notification in app.recorder.select_notifications(1, 10**9):
        event, position = app.mapper.to_domain_event(notification), notification.id
        key = (event.originator_id, getattr(event, "call_id", ""))
        if isinstance(event, Agent.ToolCalled):
            auto = "auto" if event.policy is Policy.ALLOW else None
            calls[position] = (event.tool, event.args_hash, auto, "pending")
            open_calls[key] = position
        elif isinstance(event, Agent.ToolCallRejected):
            calls[position] = (event.tool, None, "refused", "refused")
        elif key in open_calls and type(event) in _STAGES:
            decision, outcome, closes = _STAGES[type(event)]
            at = open_calls.pop(key) if closes else open_calls[key]
            tool, digest, was_decided, was_outcome = calls[at]
            calls[at] = (tool, digest, decision or was_decided, outcome or was_outcome)
    return calls


def assert_views_agree_with_the_log(app: AgentLog, views: Projections, agents: list[Agent]) -> None:
    """The views say what the log says: agents, messages, audit rows, runnable flags."""
    with views.engine.connect() as conn:
        states, transcripts = views.table(conn, "state"), views.table(conn, "transcript")
        for agent in agents:
            stored = app.get(agent.id)
            seen = queries.agent_from_state(conn, states, agent.id)
            assert (seen.version, seen.state()) == (stored.version, stored.state())
            query = select(transcripts).where(transcripts.c.agent_id == str(agent.id))
            rows = conn.execute(query.order_by(transcripts.c.seq))
            messages = replay_transcript(app.events_of(agent.id))
            assert [message_from_row(row) for row in rows] == messages
        audit = queries.audit(conn, views.table(conn, "audit"), queries.AuditFilter())
        runnable = set(queries.runnable(conn, views.table(conn, "runnable"), limit=10**6))
    calls = expected_calls(app)
    assert [row["position"] for row in audit] == list(calls)
    columns = ("tool", "args_hash", "decision", "outcome")
    assert {row["position"]: tuple(row[c] for c in columns) for row in audit} == calls
    assert runnable == {a.id for a in agents if a.phase is Phase.RUNNING}


def check_rebuilt_equals_incremental(url: str, data: st.DataObject, max_steps: int) -> None:
    """Live a history with embedded views, then rebuild every view and compare."""
    with embedded_views(url, data.draw(st.integers(1, 5), "batch size")) as (app, views):
        lives = Lives(app, data)
        lives.live(max_steps)
        assert_caught_up_without_errors(views)
        incremental = {name: rows_of(views, name) for name in VIEW_NAMES}
        assert_views_agree_with_the_log(app, views, lives.agents)
        rebuild_batch = data.draw(st.sampled_from([1, 2, 7, 1000]), "rebuild batch size")
        rebuilder = Projections(app, views.engine, DEFAULT_VIEWS, batch_size=rebuild_batch)
        old_builds = {s.name: s.active for s in views.status()}
        for name in VIEW_NAMES:
            rebuilder.rebuild(name)
        assert_caught_up_without_errors(views)
        for status in views.status():
            assert status.active != old_builds[status.name]  # a fresh build serves now
        rebuilt = {name: rows_of(views, name) for name in VIEW_NAMES}
    for name in VIEW_NAMES:
        assert rebuilt[name] == incremental[name], name


@given(st.data())
def test_rebuilt_view_equals_incremental_view_and_the_log_on_sqlite(data: st.DataObject) -> None:
    with sqlite_file() as url:
        check_rebuilt_equals_incremental(url, data, max_steps=30)


@pytest.mark.postgres
@pg_examples
@given(st.data())
def test_rebuilt_view_equals_incremental_view_and_the_log_on_postgres(
    data: st.DataObject,
) -> None:
    with postgres_database() as url:
        check_rebuilt_equals_incremental(url, data, max_steps=16)


# -- Rebuilds: no reader ever sees a half-built view -----------------------------------------


class Counter(View):
    """Test-only view, version 1: the position of every event."""

    name: ClassVar[str] = "counter"
    version: ClassVar[int] = 1

    def define(self, metadata: MetaData) -> None:
        """One row per event."""
        self.rows = Table(
            self.table_name(),
            metadata,
            Column("position", Integer, primary_key=True, autoincrement=False),
        )

    def process(self, conn: Connection, events: Sequence[Positioned]) -> None:
        """Insert the batch's positions."""
        conn.execute(insert(self.rows), [{"position": p} for p, _ in events])


class CounterV2(View):
    """The same view, version 2: a new column, so new tables."""

    name: ClassVar[str] = "counter"
    version: ClassVar[int] = 2

    def define(self, metadata: MetaData) -> None:
        """One row per event, with the event's type."""
        self.rows = Table(
            self.table_name(),
            metadata,
            Column("position", Integer, primary_key=True, autoincrement=False),
            Column("event_type", String(100), nullable=False),
        )

    def process(self, conn: Connection, events: Sequence[Positioned]) -> None:
        """Insert the batch's positions and event types."""
        rows = [{"position": p, "event_type": type(e).__name__} for p, e in events]
        conn.execute(insert(self.rows), rows)


def write_history(app: AgentLog, agents: int = 5, messages: int = 6) -> None:
    """A few agents with a few messages each."""
    for n in range(agents):
        agent = Agent.create(f"agent-{n}")
        agent.start_task("count")
        for m in range(messages):
            agent.receive_user_message(f"message {m}")
        app.save(agent)


@pytest.fixture
def sqlite_log(sqlite_url: str) -> Iterator[tuple[str, AgentLog]]:
    """A SQLite file's URL and a log on it, without views."""
    app = open_log(sqlite_url)
    yield sqlite_url, app
    app.close()


def test_old_build_serves_every_reader_until_the_rebuild_caught_up(
    sqlite_log: tuple[str, AgentLog],
) -> None:
    url, app = sqlite_log
    write_history(app)
    views = Projections(app, engine_for(url), DEFAULT_VIEWS, batch_size=4)
    views.catch_up()
    before = {name: rows_of(views, name) for name in VIEW_NAMES}
    seen_mid_rebuild: list[int] = []

    def reader(name: str) -> Callable[[int, int], None]:
        def read(position: int, head: int) -> None:
            status = next(s for s in views.status() if s.name == name)
            if position < head:
                assert status.building is not None  # still building: readers get the old one
                assert rows_of(views, name) == before[name]
                seen_mid_rebuild.append(position)

        return read

    for name in VIEW_NAMES:
        views.rebuild(name, progress=reader(name))
        assert rows_of(views, name) == before[name]
    assert len(seen_mid_rebuild) > 4 * len(VIEW_NAMES)
    assert_caught_up_without_errors(views)


def counter_tables(engine: Engine) -> list[str]:
    """The counter view's tables in the database, whatever their build."""
    return sorted(t for t in inspect(engine).get_table_names() if t.startswith("agentlog_counter"))


def test_a_new_version_is_built_in_fresh_tables_and_swapped_in_when_caught_up(
    sqlite_log: tuple[str, AgentLog],
) -> None:
    url, app = sqlite_log
    write_history(app)
    engine = engine_for(url)
    Projections(app, engine, [Counter]).catch_up()
    upgraded = Projections(app, engine, [CounterV2], batch_size=5)
    (status,) = upgraded.status()
    assert status.active is not None
    assert status.building is not None
    assert (status.active.version, status.building.version) == (1, 2)
    head = app.recorder.max_notification_id() or 0
    assert rows_of(upgraded, "counter") == [(p,) for p in range(1, head + 1)]  # the old one
    upgraded.catch_up()
    (status,) = upgraded.status()
    assert status.active is not None
    assert (status.active.version, status.building) == (2, None)
    assert rows_of(upgraded, "counter")[:2] == [(1, "Created"), (2, "TaskStarted")]
    assert len(rows_of(upgraded, "counter")) == head
    old, new = "agentlog_counter_b1", f"agentlog_counter_b{status.active.build}"
    assert counter_tables(engine) == [old, new]  # the old one outlives its swap by one
    upgraded.rebuild("counter")
    (status,) = upgraded.status()
    assert counter_tables(engine) == [
        new,
        f"agentlog_counter_b{status.active and status.active.build}",
    ]


def test_a_new_version_is_built_even_when_the_old_build_lags(
    sqlite_log: tuple[str, AgentLog],
) -> None:
    url, app = sqlite_log
    engine = engine_for(url)
    write_history(app, agents=1)
    Projections(app, engine, [Counter]).catch_up()
    old_head = app.recorder.max_notification_id() or 0
    write_history(app, agents=1)  # while no view follows
    upgraded = Projections(app, engine, [CounterV2])
    assert rows_of(upgraded, "counter") == [(p,) for p in range(1, old_head + 1)]
    upgraded.catch_up()
    (status,) = upgraded.status()
    assert (status.active and status.active.version, status.lag, status.building) == (2, 0, None)


class Interrupted(BaseException):
    """Stands for Ctrl-C (or kill -9) in the middle of a rebuild."""


def test_a_new_version_is_built_even_after_an_interrupted_rebuild(
    sqlite_log: tuple[str, AgentLog],
) -> None:
    url, app = sqlite_log
    engine = engine_for(url)
    write_history(app, agents=2)
    views = Projections(app, engine, [Counter], batch_size=3)
    views.catch_up()

    def interrupt(position: int, head: int) -> None:
        raise Interrupted

    with pytest.raises(Interrupted):
        views.rebuild("counter", progress=interrupt)
    upgraded = Projections(app, engine, [CounterV2])
    write_history(app, agents=1)
    upgraded.catch_up()
    (status,) = upgraded.status()
    assert (status.active and status.active.version, status.lag, status.building) == (2, 0, None)


def test_a_reader_that_chose_the_old_build_just_before_the_swap_still_reads_it(
    sqlite_log: tuple[str, AgentLog],
) -> None:
    url, app = sqlite_log
    write_history(app)
    views = Projections(app, engine_for(url), DEFAULT_VIEWS)
    views.catch_up()
    before = rows_of(views, "audit")
    with views.engine.connect() as conn:
        table = views.table(conn, "audit")  # the reader picked the serving build
        views.rebuild("audit")  # another process swaps in a new one
        rows = conn.execute(select(table).order_by(table.c.position))
        assert [tuple(row) for row in rows] == before


def test_two_followers_finishing_one_rebuild_keep_the_old_build_for_one_more_swap(
    sqlite_log: tuple[str, AgentLog],
) -> None:
    url, app = sqlite_log
    write_history(app)
    rebuilder = Projections(app, engine_for(url), DEFAULT_VIEWS, batch_size=2)
    other = Projections(app, engine_for(url), DEFAULT_VIEWS, batch_size=2)
    rebuilder.catch_up()
    before = rows_of(rebuilder, "audit")
    with rebuilder.engine.connect() as reader:
        table = rebuilder.table(reader, "audit")  # a reader picks the serving build
        reader.rollback()

        def the_other_follower_finishes_first(position: int, head: int) -> None:
            other.catch_up(["audit"])

        rebuilder.rebuild("audit", progress=the_other_follower_finishes_first)
        rows = reader.execute(select(table).order_by(table.c.position))
        assert [tuple(row) for row in rows] == before
