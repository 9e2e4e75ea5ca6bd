"""The CLI reads the views: ``ls``, ``show``, ``audit``, and runs them: ``projections
status|rebuild|run``. Errors exit 1 with one ``Error: ...`` line, wrong usage exits 2."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import update

from agentlog.adapters.storage import open_log
from agentlog.adapters.views import Store, open_store
from agentlog.cli import main
from agentlog.domain import AgentConfig, EffectClass, Policy, ToolCallRequest
from agentlog.projections import DEFAULT_VIEWS

from conftest import store_url

ASK = AgentConfig(model="m1", default_policy=Policy.ASK)


@pytest.fixture
def cli(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("AGENTLOG_DB", sqlite_url)
    runner = CliRunner()
    assert runner.invoke(main, ["init"]).exit_code == 0  # read commands need a store
    return runner


@pytest.fixture
def store(sqlite_url: str) -> Iterator[Store]:
    """The same store, opened by the test itself (views embedded)."""
    opened = open_store(sqlite_url)
    yield opened
    opened.close()


def run(cli: CliRunner, *args: str) -> Result:
    return cli.invoke(main, list(args))


def ok_json(cli: CliRunner, *args: str) -> Any:
    """Run a command that must succeed; its output parsed as JSON."""
    result = run(cli, *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def error_line(result: Result) -> str:
    """The single ``Error: ...`` line of a command that exited 1."""
    assert result.exit_code == 1, result.output
    assert result.output.count("\n") == 1, result.output
    assert result.output.startswith("Error: ")
    return result.output.strip()


def waiting_agent(store: Store, name: str = "asker") -> UUID:
    """A running agent with call c1 waiting for a person's permission."""
    agent_id = store.log.create_agent(name, ASK)
    store.log.start_task(agent_id, "find owls")
    search = ToolCallRequest(call_id="c1", tool="search", args={"q": "owls"})
    store.log.call_tool(agent_id, search, EffectClass.PURE, None)
    agent = store.log.get(agent_id)
    agent.request_permission("c1")
    store.log.save(agent)
    return agent_id


def lagging_log(url: str) -> UUID:
    """Write an agent with no view following (as another process without views would)."""
    log = open_log(url)
    agent_id = log.create_agent("quiet")
    log.start_task(agent_id, "lag behind")
    log.close()
    return agent_id


# -- ls ------------------------------------------------------------------------------------


def test_ls_json_lists_every_agent_oldest_first_from_the_state_view(
    cli: CliRunner, store: Store
) -> None:
    idle = store.log.create_agent("idle", ASK)
    waiting = waiting_agent(store)
    listed = ok_json(cli, "ls", "--json")
    assert [(a["id"], a["name"], a["status"]) for a in listed] == [
        (str(idle), "idle", "idle"),
        (str(waiting), "asker", "waiting"),
    ]
    assert listed[1]["pending_approvals"] == ["c1"]
    assert (listed[1]["version"], listed[1]["goal"], listed[1]["model"]) == (4, "find owls", "m1")
    assert "state" not in listed[0]


def test_ls_status_shows_only_agents_in_that_phase(cli: CliRunner, store: Store) -> None:
    running = store.log.create_agent("runner", ASK)
    store.log.start_task(running, "run")
    waiting = waiting_agent(store)
    done = store.log.create_agent("done", ASK)
    store.log.start_task(done, "finish")
    store.log.complete(done, "ok")
    for status, expected in (("waiting", waiting), ("running", running), ("completed", done)):
        assert [a["id"] for a in ok_json(cli, "ls", "--status", status, "--json")] == [
            str(expected)
        ]
    assert ok_json(cli, "ls", "--status", "blocked", "--json") == []
    table = run(cli, "ls", "--status", "waiting").output
    assert str(waiting) in table
    assert str(running) not in table


def test_ls_of_an_empty_store_prints_nothing(cli: CliRunner) -> None:
    assert (run(cli, "ls").exit_code, run(cli, "ls").output) == (0, "")
    assert ok_json(cli, "ls", "--json") == []


def test_ls_sees_events_written_by_a_process_without_views(cli: CliRunner, sqlite_url: str) -> None:
    assert run(cli, "init").exit_code == 0
    agent_id = lagging_log(sqlite_url)
    assert [a["id"] for a in ok_json(cli, "ls", "--status", "running", "--json")] == [str(agent_id)]


def test_ls_with_an_unknown_status_is_a_usage_error(cli: CliRunner) -> None:
    result = run(cli, "ls", "--status", "sleeping")
    assert result.exit_code == 2
    assert "Traceback" not in result.output


# -- show ----------------------------------------------------------------------------------


def test_show_reads_the_state_view_and_show_at_replays_the_log(
    cli: CliRunner, store: Store
) -> None:
    agent_id = waiting_agent(store)
    with store.views.engine.begin() as conn:  # make the view say something the log does not
        table = store.views.table(conn, "state")
        row = conn.execute(table.select()).one()
        state = json.loads(row.state) | {"name": "as the view has it"}
        conn.execute(update(table).values(state=json.dumps(state)))
    shown = ok_json(cli, "show", str(agent_id)[:8], "--json")
    assert (shown["name"], shown["status"], shown["version"]) == (
        "as the view has it",
        "waiting",  # what `ls` says too: one status
        4,
    )
    assert shown["calls"]["c1"]["stage"] == "awaiting_permission"
    replayed = ok_json(cli, "show", str(agent_id), "--at", "4", "--json")
    assert replayed["name"] == "asker"
    assert "as the view has it" in run(cli, "show", str(agent_id)).output


def test_show_of_an_unknown_agent_is_an_error(cli: CliRunner, store: Store) -> None:
    waiting_agent(store)
    line = error_line(run(cli, "show", "00000000-0000-0000-0000-000000000000"))
    assert line == "Error: no agent 00000000-0000-0000-0000-000000000000"
    assert run(cli, "show").exit_code == 2


@pytest.fixture
def audited(store: Store) -> tuple[UUID, UUID]:
    """Two agents: one whose search call ana granted and that ran; one whose rm bob denied."""
    searcher = waiting_agent(store, "searcher")
    store.log.grant(searcher, "c1", approver="ana")
    agent = store.log.get(searcher)
    agent.start_tool("c1", worker_id="w1")
    agent.succeed("c1", ["owl"])
    store.log.save(agent)
    remover = store.log.create_agent("remover", ASK)
    store.log.start_task(remover, "clean up")
    store.log.call_tool(remover, ToolCallRequest(call_id="c1", tool="rm"), EffectClass.PURE, None)
    store.log.deny(remover, "c1", approver="bob", reason="no")
    return searcher, remover


# -- projections status / rebuild / run ----------------------------------------------------


def status(cli: CliRunner) -> dict[str, dict[str, Any]]:
    return {row["view"]: row for row in ok_json(cli, "projections", "status", "--json")}


def test_projections_status_reports_position_lag_and_version_of_each_view(
    cli: CliRunner, sqlite_url: str
) -> None:
    assert run(cli, "init").exit_code == 0
    lagging_log(sqlite_url)
    report = status(cli)  # status itself does not catch up
    versions = {cls.name: cls.version for cls in DEFAULT_VIEWS}
    assert sorted(report) == sorted(versions)
    for name, row in report.items():
        assert (row["version"], row["serving_version"]) == (versions[name], versions[name])
        assert (row["position"], row["head"], row["lag"]) == (0, 2, 2)
        assert (row["rebuilding_at"], row["error"]) == (None, None)
    table = run(cli, "projections", "status").output
    header = ["VIEW", "VERSION", "POSITION", "LAG", "SKIPPED", "REBUILDING", "ERROR"]
    assert table.split()[:7] == header
    assert "state" in table


def test_projections_run_once_catches_up_the_named_views_or_all(
    cli: CliRunner, sqlite_url: str
) -> None:
    assert run(cli, "init").exit_code == 0
    lagging_log(sqlite_url)
    assert run(cli, "projections", "run", "state", "audit", "--once").exit_code == 0
    assert {name: r["lag"] for name, r in status(cli).items()} == {
        "state": 0,
        "audit": 0,
        "transcript": 2,
        "runnable": 2,
    }
    result = run(cli, "projections", "run", "--once")
    assert (result.exit_code, result.output) == (0, "")
    assert {r["lag"] for r in status(cli).values()} == {0}


def test_projections_rebuild_swaps_in_new_builds_with_the_same_rows(
    cli: CliRunner, audited: tuple[UUID, UUID]
) -> None:
    before = (ok_json(cli, "ls", "--json"), ok_json(cli, "audit", "--json"))
    result = run(cli, "projections", "rebuild", "state", "audit")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == "rebuilt: state, audit"
    assert (ok_json(cli, "ls", "--json"), ok_json(cli, "audit", "--json")) == before
    everything = run(cli, "projections", "rebuild", "--all")
    assert everything.exit_code == 0, everything.output
    assert everything.output.splitlines()[-1] == "rebuilt: state, audit, transcript, runnable"
    assert (ok_json(cli, "ls", "--json"), ok_json(cli, "audit", "--json")) == before
    assert {(r["position"], r["lag"], r["error"]) for r in status(cli).values()} == {(11, 0, None)}


@pytest.mark.parametrize(
    "args", [(), ("state", "--all"), ("--all", "--nope")], ids=["nothing", "both", "unknown"]
)
def test_projections_rebuild_needs_view_names_or_all(cli: CliRunner, args: tuple[str, ...]) -> None:
    result = run(cli, "projections", "rebuild", *args)
    assert result.exit_code == 2
    assert "Traceback" not in result.output


def test_unknown_view_names_are_errors_before_any_work(cli: CliRunner) -> None:
    expected = "Error: no view named 'nope'; views: audit, runnable, state, transcript"
    assert error_line(run(cli, "projections", "rebuild", "state", "nope")) == expected
    assert error_line(run(cli, "projections", "run", "nope", "--once")) == expected
    assert {r["position"] for r in status(cli).values()} == {0}


@pytest.mark.parametrize("args", [("--poll", "0"), ("--poll", "soon"), ("--twice",)])
def test_projections_run_usage_errors_exit_2(cli: CliRunner, args: tuple[str, ...]) -> None:
    assert run(cli, "projections", "run", *args).exit_code == 2


def test_projections_without_a_subcommand_shows_its_help(cli: CliRunner) -> None:
    result = run(cli, "projections", "--help")
    assert result.exit_code == 0
    assert all(word in result.output for word in ("status", "rebuild", "run"))


# -- projections run as a process ----------------------------------------------------------


@pytest.mark.parametrize(
    ("backend", "poll"),
    [("sqlite", "0.05"), pytest.param("postgres", "30", marks=pytest.mark.postgres)],
    ids=["sqlite-polling", "postgres-listen-notify"],
)
def test_projections_run_follows_new_events_as_they_are_saved(
    backend: str, poll: str, tmp_path: Path
) -> None:
    """On PostgreSQL the poll is 30 s: only LISTEN/NOTIFY can wake the follower in time."""
    url = store_url(backend, tmp_path)
    store = open_store(url, embedded=False)
    command = [sys.executable, "-m", "agentlog.cli", "--db", url, "projections", "run"]
    with subprocess.Popen(
        [*command, "--poll", poll], stderr=subprocess.PIPE, text=True
    ) as follower:
        try:
            for n in range(3):
                time.sleep(0.5)
                agent_id = store.log.create_agent(f"agent-{n}")
                store.log.start_task(agent_id, "follow me")
                head = store.log.recorder.max_notification_id()
                deadline = time.monotonic() + 10
                while any(s.active and s.active.position != head for s in store.views.status()):
                    assert follower.poll() is None, follower.communicate()
                    assert time.monotonic() < deadline, store.views.status()
                    time.sleep(0.02)
        finally:
            follower.send_signal(signal.SIGTERM)
    store.close()


# -- JSON for machines ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "backend",
    [
        "sqlite",
        pytest.param("postgres", marks=pytest.mark.postgres),
    ],
)
def test_json_times_carry_their_utc_offset_on_every_backend(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTLOG_DB", store_url(backend, tmp_path))
    cli = CliRunner()
    assert run(cli, "new", "--name", "scout", "--goal", "owls").exit_code == 0
    times = [r["time"] for r in ok_json(cli, "audit", "--json")]
    times += [
        a[key] for a in ok_json(cli, "ls", "--json") for key in ("created_at", "last_event_at")
    ]
    assert all(t.endswith("+00:00") for t in times), times
