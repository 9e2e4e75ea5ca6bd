"""Shards: a PostgreSQL store whose agents are spread over several events tables, each
with its own table lock, with views that follow every shard (``init --shards S``)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner, Result
from eventsourcing.persistence import IntegrityError
from test_view_process_kill import VIEW_NAMES, rows_of, write_log

from agentlog.adapters.postgres_saves import PostgresSaves
from agentlog.adapters.shards import ShardedRecorder, events_table
from agentlog.adapters.storage import open_log
from agentlog.adapters.views import ListenWaiter, engine_for, open_store
from agentlog.cli import main
from agentlog.domain import Agent, AgentLog, UnknownAgentError
from agentlog.domain.errors import StorageURLError
from agentlog.domain.shards import shard_of
from agentlog.domain.store_errors import ShardCountMismatchError
from agentlog.projections import DEFAULT_VIEWS, Projections

from conftest import store_url

SHARDS = 4
SCRIPT = [
    {
        "text": "Computing.",
        "tool_calls": [{"call_id": "c1", "tool": "calculator", "args": {"expression": "6*7"}}],
    },
    {"text": "Done: 42.", "done": True},
]


def run(cli: CliRunner, *args: str) -> Result:
    result = cli.invoke(main, list(args))
    assert result.exit_code == 0, (args, result.output)
    return result


def libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def table_names(url: str) -> set[str]:
    with psycopg.connect(libpq(url)) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return {name for (name,) in rows}


def agents_in(url: str, shard: int) -> set[str]:
    with psycopg.connect(libpq(url)) as conn:
        rows = conn.execute(f"SELECT DISTINCT originator_id FROM {events_table('agentlog', shard)}")
        return {str(agent) for (agent,) in rows}


@pytest.fixture
def cli(postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("AGENTLOG_DB", postgres_url)
    monkeypatch.setenv("AGENTLOG_SANDBOX", str(tmp_path / "sandbox"))
    (tmp_path / "script.json").write_text(json.dumps(SCRIPT))
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    assert "(4 shards)" in run(runner, "init", "--shards", str(SHARDS)).output
    return runner


def one_agent_per_shard(cli: CliRunner) -> dict[int, str]:
    """New agents (scripted, with a goal) until every shard holds one; one per shard."""
    found: dict[int, str] = {}
    for _ in range(80):
        new = run(cli, "new", "--name", "a", "--goal", "g", "--model", "scripted:script.json")
        agent = new.output.strip()
        found.setdefault(shard_of(agent, SHARDS), agent)
        if len(found) == SHARDS:
            return found
    pytest.fail("80 new agents never reached every shard")


@pytest.fixture
def log(postgres_url: str) -> Iterator[AgentLog]:
    app = open_log(postgres_url, shards=SHARDS)
    yield app
    app.close()


def agent_per_shard(app: AgentLog) -> dict[int, Agent]:
    """Unsaved agents, one in each shard."""
    found: dict[int, Agent] = {}
    while len(found) < SHARDS:
        agent = Agent.create("a")
        found.setdefault(shard_of(agent.id, SHARDS), agent)
    return found


def test_each_agent_is_stored_in_its_own_shards_table(cli: CliRunner, postgres_url: str) -> None:
    agents = one_agent_per_shard(cli)
    for shard in range(SHARDS):
        stored = agents_in(postgres_url, shard)
        assert agents[shard] in stored
        assert {shard_of(agent, SHARDS) for agent in stored} == {shard}
    assert events_table("agentlog", 1) in table_names(postgres_url)


def test_commands_that_take_an_agent_work_in_every_shard(
    cli: CliRunner, postgres_url: str, tmp_path: Path
) -> None:
    agents = one_agent_per_shard(cli)
    run(cli, "worker", "--exit-when-idle", "--quiet")
    listed = json.loads(run(cli, "ls", "--json").output)
    assert {row["id"] for row in listed} >= set(agents.values())
    for shard, agent in agents.items():
        assert agent in run(cli, "show", agent[:13]).output, shard
        assert "TaskCompleted" in run(cli, "log", agent).output
        run(cli, "verify", agent)
        calls = json.loads(run(cli, "audit", "--agent", agent, "--json").output)
        assert [c["tool"] for c in calls] == ["calculator"]
        assert "Done: 42." in run(cli, "export", agent, "--format", "openai").output
    parent = agents[0]
    while True:  # a child lands in its own id's shard, usually another than its parent's
        child = run(cli, "fork", parent).output.strip()
        if shard_of(child, SHARDS) != 0:
            break
    assert child in agents_in(postgres_url, shard_of(child, SHARDS))
    assert parent in run(cli, "log", child, "--lineage").output
    run(cli, "verify", "--all")  # exit code 0: every chain holds


def test_import_writes_each_agent_into_its_shard(
    cli: CliRunner, postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    agents = one_agent_per_shard(cli)
    exported = tmp_path / "all.jsonl"
    run(cli, "export", "--all", "-o", str(exported))
    target = store_url("postgres", tmp_path)
    monkeypatch.setenv("AGENTLOG_DB", target)
    run(cli, "init", "--shards", str(SHARDS))
    run(cli, "import", str(exported))
    for shard, agent in agents.items():
        assert agents_in(target, shard) == agents_in(postgres_url, shard), agent
    again = tmp_path / "again.jsonl"
    run(cli, "export", "--all", "-o", str(again))
    assert sorted(again.read_text().splitlines()) == sorted(exported.read_text().splitlines())


def test_workers_finish_every_shards_agents_and_views_equal_a_rebuild(cli: CliRunner) -> None:
    agents = one_agent_per_shard(cli)
    run(cli, "worker", "--processes", "2", "--concurrency", "4", "--exit-when-idle", "--quiet")
    states = json.loads(run(cli, "ls", "--json").output)
    assert {row["status"] for row in states} == {"completed"}
    assert {row["id"] for row in states} >= set(agents.values())
    audit = run(cli, "audit", "--json").output
    # Views see positions among all shards: local * S + shard, never shared by two shards.
    calls = json.loads(audit)
    assert {c["position"] % SHARDS for c in calls} == set(range(SHARDS))
    assert all(c["position"] % SHARDS == shard_of(c["agent_id"], SHARDS) for c in calls)
    status = json.loads(run(cli, "projections", "status", "--json").output)
    assert all(len(view["shards"]) == SHARDS and view["lag"] == 0 for view in status)
    served = {view["view"]: [s["position"] for s in view["shards"]] for view in status}
    run(cli, "projections", "rebuild", "--all")
    assert json.loads(run(cli, "ls", "--json").output) == states
    assert run(cli, "audit", "--json").output == audit
    rebuilt = json.loads(run(cli, "projections", "status", "--json").output)
    assert {view["view"]: [s["position"] for s in view["shards"]] for view in rebuilt} == served


def test_status_shows_each_shards_position_and_only_the_written_shard_moves(
    cli: CliRunner,
) -> None:
    agents = one_agent_per_shard(cli)

    def positions() -> list[int]:
        (state,) = [
            view
            for view in json.loads(run(cli, "projections", "status", "--json").output)
            if view["view"] == "state"
        ]
        return [shard["position"] for shard in state["shards"]]

    before = positions()
    assert len(before) == SHARDS
    assert all(before)
    assert "0:" in run(cli, "projections", "status").output
    run(cli, "send", agents[2], "hello")
    after = positions()
    assert [a > b for a, b in zip(after, before, strict=True)] == [False, False, True, False]


def test_read_commands_catch_views_up_with_events_of_any_shard(
    cli: CliRunner, postgres_url: str
) -> None:
    app = open_log(postgres_url)  # no views: a writer that leaves them behind
    agent = next(a for s, a in agent_per_shard(app).items() if s != 0)
    app.save(agent)
    app.close()
    listed = json.loads(run(cli, "ls", "--json").output)
    assert [row["id"] for row in listed] == [str(agent.id)]


def test_followers_racing_over_shards_leave_views_equal_to_a_rebuild(
    log: AgentLog, postgres_url: str
) -> None:
    write_log(log, agents=8, events_each=40)
    first = Projections(log, engine_for(postgres_url), DEFAULT_VIEWS, batch_size=7)
    other = Projections(log, engine_for(postgres_url), DEFAULT_VIEWS, batch_size=5)
    racers = [threading.Thread(target=views.catch_up) for views in (first, other)]
    for racer in racers:
        racer.start()
    write_log(log, agents=4, events_each=30, seed=11)  # while they follow
    for racer in racers:
        racer.join()
    first.catch_up()
    report = first.status()
    assert all(len(s.shards) == SHARDS and s.lag == 0 for s in report)
    rows = rows_of(first)
    first.rebuild_many(VIEW_NAMES)
    assert rows_of(first) == rows
    for views in (first, other):
        views.engine.dispose()


def test_a_store_opens_with_its_own_number_of_shards_only(
    cli: CliRunner, postgres_url: str
) -> None:
    result = cli.invoke(main, ["init", "--shards", "2"])
    assert result.exit_code == 1
    assert result.output.startswith("Error: ")
    assert result.output.count("\n") == 1
    assert "has 4 shard(s)" in result.output
    with pytest.raises(ShardCountMismatchError):
        open_log(postgres_url, shards=1)
    app = open_log(postgres_url)  # no number given: the store's own
    assert len(app.recorder.shards) == SHARDS  # type: ignore[attr-defined]
    app.close()
    with psycopg.connect(libpq(postgres_url)) as conn:  # what an agentlog before shards reads
        (engine,) = conn.execute("SELECT engine FROM agentlog_store").fetchone() or ("",)
    assert engine == "native+shards"  # an older agentlog refuses it as another engine's


def test_sqlite_refuses_shards_with_a_one_line_error(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTLOG_DB", sqlite_url)
    result = CliRunner().invoke(main, ["init", "--shards", "2"])
    assert result.exit_code == 1
    assert "shards need PostgreSQL" in result.output
    assert result.output.count("\n") == 1
    assert not Path(sqlite_url.split(":///", 1)[1]).exists()
    with pytest.raises(StorageURLError, match="shards need PostgreSQL"):
        open_log("memory://", shards=2)


def test_a_store_without_shards_is_as_it_always_was(postgres_url: str) -> None:
    store = open_store(postgres_url)
    store.log.create_agent("a", goal="g")
    assert type(store.log.recorder) is PostgresSaves  # the library's, saving in one statement
    assert store.views.status()[0].shards == ()
    store.close()
    tables = table_names(postgres_url)
    assert "agentlog_events" in tables
    assert not [t for t in tables if t.startswith("agentlog_s") and t.endswith("_events")]
    assert "agentlog_view_positions" not in tables
    with psycopg.connect(libpq(postgres_url)) as conn:
        columns = conn.execute("SELECT * FROM agentlog_store LIMIT 0").description or []
    assert [c.name for c in columns] == ["application", "engine", "layout", "agentlog_version"]
    open_log(postgres_url, shards=1).close()
    with pytest.raises(ShardCountMismatchError):
        open_log(postgres_url, shards=SHARDS)


def _in_thread(action: Callable[[], None]) -> threading.Event:
    done = threading.Event()

    def target() -> None:
        action()
        done.set()

    threading.Thread(target=target, daemon=True).start()
    return done


def test_a_held_shard_lock_delays_saves_of_that_shard_only(
    log: AgentLog, postgres_url: str
) -> None:
    agents = agent_per_shard(log)
    log.save(*agents.values())
    with psycopg.connect(libpq(postgres_url)) as holder:
        holder.execute(f"LOCK TABLE {events_table('agentlog', 1)} IN EXCLUSIVE MODE")
        other = _in_thread(lambda: log.send(agents[2].id, "hi"))
        same = _in_thread(lambda: log.send(agents[1].id, "hi"))
        assert other.wait(10), "a save in another shard waited on shard 1's lock"
        assert not same.wait(0.5), "a save in shard 1 did not wait on shard 1's lock"
        holder.rollback()
    assert same.wait(10)
    assert log.get(agents[1].id).version == log.get(agents[2].id).version == 2


def test_with_group_commit_a_held_shard_lock_delays_saves_of_that_shard_only(
    postgres_url: str,
) -> None:
    app = open_log(postgres_url, shards=SHARDS, group_commit=True)
    agents = agent_per_shard(app)
    app.save(*agents.values())
    with psycopg.connect(libpq(postgres_url)) as holder:
        holder.execute(f"LOCK TABLE {events_table('agentlog', 1)} IN EXCLUSIVE MODE")
        same = _in_thread(lambda: app.send(agents[1].id, "hi"))  # leads shard 1's batch
        assert not same.wait(0.5), "a save in shard 1 did not wait on shard 1's lock"
        others = [_in_thread(partial(app.send, agents[s].id, "hi")) for s in (0, 2, 3)]
        assert all(done.wait(10) for done in others), "a save waited on another shard's batch"
        holder.rollback()
    assert same.wait(10)
    assert {app.get(agent.id).version for agent in agents.values()} == {2}
    app.close()


def test_a_save_of_agents_in_several_shards_is_all_or_nothing(log: AgentLog) -> None:
    agents = agent_per_shard(log)
    log.save(agents[3])
    stale = log.get(agents[3].id)
    log.send(agents[3].id, "first")
    stale.receive_user_message("second", actor="user")
    with pytest.raises(IntegrityError):
        log.save(agents[0], agents[1], stale)  # shards 0, 1, 3: shard 3's conflict
    for shard in (0, 1):
        with pytest.raises(UnknownAgentError):
            log.get(agents[shard].id)
    assert log.get(agents[3].id).version == 2


def test_group_commit_over_shards_stores_each_save_in_its_shard(postgres_url: str) -> None:
    app = open_log(postgres_url, shards=SHARDS, group_commit=True)
    agents = [a for _ in range(3) for a in agent_per_shard(app).values()]
    threads = [threading.Thread(target=app.save, args=(agent,)) for agent in agents]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(app.agent_ids()) == sorted(a.id for a in agents)
    for agent in agents:
        assert str(agent.id) in agents_in(postgres_url, shard_of(agent.id, SHARDS))
    app.close()


def test_reading_the_whole_log_pages_through_every_shard_once(
    log: AgentLog, postgres_url: str
) -> None:
    agents = agent_per_shard(log)
    log.save(*agents.values())
    with psycopg.connect(libpq(postgres_url)) as conn:  # ids have gaps (rolled-back inserts)
        table = events_table("agentlog", 2)
        conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'notification_id'), 50)")
    for _ in range(7):  # shards of very different lengths and positions
        log.send(agents[2].id, "more")
    for _ in range(3):
        log.send(agents[1].id, "more")
    assert sorted(log.agent_ids(page=2)) == sorted(a.id for a in agents.values())
    recorder = log.recorder
    assert isinstance(recorder, ShardedRecorder)
    seen, start = [], 1
    while page := recorder.select_notifications(start, 3):
        seen += [n.id for n in page]
        start = page[-1].id + 1
    assert seen == sorted(set(seen))
    assert len(seen) == 4 + 7 + 3
    assert recorder.max_notification_id() == seen[-1]


def test_the_waiter_wakes_on_any_shards_events(postgres_url: str) -> None:
    store = open_store(postgres_url, shards=SHARDS)
    agents = agent_per_shard(store.log)
    wait = store.waiter(20.0)
    assert isinstance(wait, ListenWaiter)
    writer = threading.Timer(0.3, lambda: store.log.save(agents[3]))
    writer.start()
    started = time.monotonic()
    try:
        wait()
        assert time.monotonic() - started < 10
    finally:
        writer.join()
        wait.conn.close()
        store.close()
