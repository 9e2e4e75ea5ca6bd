"""A view whose handler fails stops at its position with a clear error; the agents' saves
and the other views go on; once the cause is fixed it resumes exactly where it stopped.

``Tripwire`` is a test-only view that records the position of every event and raises on
a user message saying "boom" while it is armed. For the CLI, which only knows the
default views, the audit view's handler is patched in-process instead.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import ClassVar
from uuid import UUID

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Column, Connection, Integer, MetaData, Table, insert, select
from sqlalchemy.exc import OperationalError

from agentlog.adapters.storage import open_log
from agentlog.adapters.views import engine_for, open_store
from agentlog.cli import main
from agentlog.domain import Agent, AgentLog
from agentlog.projections import (
    DEFAULT_VIEWS,
    AuditTrail,
    Build,
    Positioned,
    Projections,
    View,
    ViewFailedError,
    ViewStoppedError,
    catalog,
)
from agentlog.projections.audit_rows import COLUMNS


class Tripwire(View):
    """The position of every event; raises on a user message "boom" while armed."""

    name: ClassVar[str] = "tripwire"
    version: ClassVar[int] = 1
    armed: ClassVar[bool] = True

    def define(self, metadata: MetaData) -> None:
        """One row per event."""
        self.rows = Table(
            self.table_name(),
            metadata,
            Column("position", Integer, primary_key=True, autoincrement=False),
        )

    def process(self, conn: Connection, events: Sequence[Positioned]) -> None:
        """Insert row by row, so that a failure comes after part of the batch was written."""
        for position, event in events:
            if self.armed and isinstance(event, Agent.UserMessageReceived) and event.text == "boom":
                raise RuntimeError(f"cannot handle {event.text!r}")
            conn.execute(insert(self.rows).values(position=position))


@pytest.fixture
def log_and_views(sqlite_url: str) -> Iterator[tuple[AgentLog, Projections]]:
    """A log whose default views and tripwire catch up after every save, 3 events a batch."""
    app = open_log(sqlite_url)
    views = Projections(app, engine_for(sqlite_url), (*DEFAULT_VIEWS, Tripwire), batch_size=3)
    app.after_save.append(views.catch_up_quietly)
    yield app, views
    app.close()
    views.engine.dispose()


def head(app: AgentLog) -> int:
    """The id of the last notification in the log."""
    return app.recorder.max_notification_id() or 0


def positions(views: Projections) -> dict[str, int]:
    """Where each view's serving build stands."""
    return {s.name: s.active.position for s in views.status() if s.active is not None}


def tripwire_rows(views: Projections) -> list[int]:
    """The tripwire's rows, read around the stopped-view guard."""
    with views.engine.connect() as conn:
        build = next(s.active for s in views.status() if s.name == "tripwire")
        assert build is not None
        table = Table(Tripwire(build.build).table_name(), MetaData(), autoload_with=conn)
        return [row.position for row in conn.execute(select(table).order_by(table.c.position))]


def trip(app: AgentLog, *before: str) -> tuple[UUID, int]:
    """Save some messages and a "boom" in one save; return the agent and the log's head
    before that save (where the tripwire must stop)."""
    agent_id = app.create_agent("scout")
    app.start_task(agent_id, "find owls")
    stop_at = head(app)
    agent = app.get(agent_id)
    for text in (*before, "boom", "after"):
        agent.receive_user_message(text)
    app.save(agent)
    return agent_id, stop_at


def test_a_failing_view_never_blocks_the_agents_saves(
    log_and_views: tuple[AgentLog, Projections],
) -> None:
    app, _ = log_and_views
    agent_id, _ = trip(app)
    app.send(agent_id, "still listening?")
    agent = app.get(agent_id)
    assert agent.version == 5
    assert [e.originator_version for e in app.events_of(agent_id)] == [1, 2, 3, 4, 5]


def test_other_views_keep_going_when_one_view_fails(
    log_and_views: tuple[AgentLog, Projections],
) -> None:
    app, views = log_and_views
    agent_id, stop_at = trip(app)
    app.send(agent_id, "still listening?")
    where = positions(views)
    assert where == {"state": head(app), "audit": head(app), "transcript": head(app),
                     "runnable": head(app), "tripwire": stop_at}  # fmt: skip
    status = {s.name: s for s in views.status()}
    assert status["tripwire"].lag == head(app) - stop_at
    assert all(s.active and s.active.error is None for n, s in status.items() if n != "tripwire")


def test_a_failed_batch_leaves_no_row_behind(log_and_views: tuple[AgentLog, Projections]) -> None:
    app, views = log_and_views
    _, stop_at = trip(app, "one")  # "one" and "boom" share a batch of 3
    assert tripwire_rows(views) == list(range(1, stop_at + 1))


def test_the_failure_names_the_view_its_build_and_its_position(
    log_and_views: tuple[AgentLog, Projections],
) -> None:
    app, views = log_and_views
    _, stop_at = trip(app)
    with pytest.raises(ViewFailedError) as failed:
        views.catch_up()
    error = failed.value
    build = next(s.active for s in views.status() if s.name == "tripwire")
    assert build is not None
    assert (error.view, error.build, error.position) == ("tripwire", build.build, stop_at)
    assert isinstance(error.cause, RuntimeError)
    assert str(error) == (
        f"view tripwire (build {build.build}) stopped at position {stop_at}: "
        "RuntimeError: cannot handle 'boom'"
    )
    assert build.error == str(error)
    views.catch_up(["state", "audit"])  # the others can still be followed by name


def test_reading_a_stopped_view_is_an_error_not_stale_rows(
    log_and_views: tuple[AgentLog, Projections],
) -> None:
    app, views = log_and_views
    _, stop_at = trip(app)
    with views.engine.connect() as conn, pytest.raises(ViewStoppedError) as stopped:
        views.table(conn, "tripwire")
    assert (stopped.value.view, stopped.value.position) == ("tripwire", stop_at)
    message = str(stopped.value)
    assert message.startswith(f"view tripwire is stopped at position {stop_at} (")
    assert message.endswith("then `agentlog projections rebuild tripwire`")
    with views.engine.connect() as conn:
        views.table(conn, "state")  # the others still serve


def test_a_stopped_view_retries_from_the_same_position_after_every_save(
    log_and_views: tuple[AgentLog, Projections],
) -> None:
    app, views = log_and_views
    agent_id, stop_at = trip(app)
    for text in ("a", "b", "c"):
        app.send(agent_id, text)
        assert positions(views)["tripwire"] == stop_at
    assert tripwire_rows(views) == list(range(1, stop_at + 1))


def test_a_stopped_view_resumes_where_it_stopped_once_the_cause_is_fixed(
    log_and_views: tuple[AgentLog, Projections], monkeypatch: pytest.MonkeyPatch
) -> None:
    app, views = log_and_views
    agent_id, _ = trip(app, "one", "two")
    app.send(agent_id, "more")
    monkeypatch.setattr(Tripwire, "armed", False)
    views.catch_up()
    status = next(s for s in views.status() if s.name == "tripwire")
    assert status.active is not None
    assert (status.active.error, status.lag) == (None, 0)
    assert tripwire_rows(views) == list(range(1, head(app) + 1))  # each once, none missing


def test_embedded_views_log_a_failure_as_a_warning(
    log_and_views: tuple[AgentLog, Projections], caplog: pytest.LogCaptureFixture
) -> None:
    app, _ = log_and_views
    with caplog.at_level(logging.WARNING, logger="agentlog"):
        _, stop_at = trip(app)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings
    assert all(w.startswith("view tripwire (build ") for w in warnings)
    assert all(f"stopped at position {stop_at}: RuntimeError" in w for w in warnings)


def test_a_failing_rebuild_keeps_the_old_build_serving(
    log_and_views: tuple[AgentLog, Projections], monkeypatch: pytest.MonkeyPatch
) -> None:
    app, views = log_and_views
    monkeypatch.setattr(Tripwire, "armed", False)
    agent_id, _ = trip(app)
    old = tripwire_rows(views)
    monkeypatch.setattr(Tripwire, "armed", True)  # the new build's code has a bug
    with pytest.raises(ViewFailedError):
        views.rebuild("tripwire")
    app.send(agent_id, "more")
    status = next(s for s in views.status() if s.name == "tripwire")
    assert status.active is not None
    assert status.building is not None
    assert (status.active.error, status.lag) == (None, 0)  # still serving, still following
    assert status.building.error is not None
    assert tripwire_rows(views) == [*old, head(app)]


# -- the CLI -------------------------------------------------------------------------------


@pytest.fixture
def broken_audit(monkeypatch: pytest.MonkeyPatch) -> None:
    """The audit view's handler raises on a task whose goal is "boom" (in this process)."""
    process = AuditTrail.process

    def failing(self: AuditTrail, conn: Connection, events: Sequence[Positioned]) -> None:
        if any(getattr(event, "goal", None) == "boom" for _, event in events):
            raise RuntimeError("audit handler failed")
        process(self, conn, events)

    monkeypatch.setattr(AuditTrail, "process", failing)


@pytest.fixture
def cli(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("AGENTLOG_DB", sqlite_url)
    return CliRunner()


def run(cli: CliRunner, *args: str) -> Result:
    return cli.invoke(main, list(args))


@pytest.mark.usefixtures("broken_audit")
def test_cli_saves_and_other_views_work_while_the_audit_view_is_stopped(cli: CliRunner) -> None:
    created = run(cli, "new", "--name", "scout", "--goal", "boom")
    assert created.exit_code == 0, created.output
    agent_id = created.output.strip()
    listed = run(cli, "ls", "--json")
    assert listed.exit_code == 0, listed.output
    assert [a["id"] for a in json.loads(listed.output)] == [agent_id]
    assert run(cli, "show", agent_id).exit_code == 0


@pytest.mark.usefixtures("broken_audit")
def test_cli_reading_a_stopped_view_exits_1_with_one_line_naming_its_position(
    cli: CliRunner,
) -> None:
    assert run(cli, "new", "--name", "scout", "--goal", "boom").exit_code == 0
    result = run(cli, "audit")
    assert result.exit_code == 1
    # `new --goal` is one save: the batch with the goal is the first, so it stops at 0
    assert result.output.startswith("Error: view audit is stopped at position 0 (")
    assert result.output.count("\n") == 1
    assert "Traceback" not in result.output


@pytest.mark.usefixtures("broken_audit")
def test_cli_projections_status_shows_the_stopped_view_and_its_error(cli: CliRunner) -> None:
    assert run(cli, "new", "--name", "scout", "--goal", "boom").exit_code == 0
    result = run(cli, "projections", "status", "--json")
    assert result.exit_code == 0, result.output
    report = {row["view"]: row for row in json.loads(result.output)}
    assert report["audit"]["position"] == 0  # `new --goal`: one save, one batch
    assert report["audit"]["lag"] == 2
    assert report["audit"]["error"].startswith("view audit (build ")
    assert report["audit"]["error"].endswith(
        "stopped at position 0: RuntimeError: audit handler failed"
    )
    others = [report[name] for name in ("state", "transcript", "runnable")]
    assert [(r["position"], r["lag"], r["error"]) for r in others] == [(2, 0, None)] * 3


@pytest.mark.usefixtures("broken_audit")
def test_cli_projections_run_once_reports_the_failure_and_catches_up_the_others(
    cli: CliRunner, sqlite_url: str
) -> None:
    assert run(cli, "init").exit_code == 0
    log = open_log(sqlite_url)
    agent_id = log.create_agent("scout")  # written without views: they lag
    log.start_task(agent_id, "boom")
    log.close()
    result = run(cli, "projections", "run", "--once")
    assert result.exit_code == 1
    assert result.output.startswith("Error: view audit (build ")
    assert result.output.endswith("stopped at position 0: RuntimeError: audit handler failed\n")
    report = {r["view"]: r for r in json.loads(run(cli, "projections", "status", "--json").output)}
    assert {name: r["lag"] for name, r in report.items()} == {
        "state": 0,
        "audit": 2,
        "transcript": 0,
        "runnable": 0,
    }


@pytest.fixture
def duplicating_audit(monkeypatch: pytest.MonkeyPatch) -> None:
    """The audit view's flush writes a call's row twice: the database refuses the rows."""
    flush = AuditTrail.flush

    def twice(self: AuditTrail, conn: Connection) -> None:
        row = dict.fromkeys(COLUMNS) | {"agent_id": "a", "called_version": 1, "position": 1}
        row |= {"call_id": "c1", "tool": "t", "requested_by": "m", "outcome": "pending"}
        row |= {"called_at": datetime.now(UTC), "attempts": 0}
        self._insert(conn, [tuple(row.values())] * 2)
        flush(self, conn)

    monkeypatch.setattr(AuditTrail, "flush", twice)


@pytest.mark.usefixtures("duplicating_audit")
def test_cli_error_for_a_view_stopped_by_a_database_error_is_one_line(cli: CliRunner) -> None:
    assert run(cli, "new", "--name", "scout", "--goal", "owls").exit_code == 0
    result = run(cli, "audit")
    assert result.exit_code == 1
    assert result.output.startswith("Error: view audit is stopped at position 0 (")
    assert "IntegrityError" in result.output
    assert result.output.count("\n") == 1


FOLLOWER_WITH_BROKEN_AUDIT = """
import sys
from agentlog.cli import main
from agentlog.projections import AuditTrail

process = AuditTrail.process

def failing(self, conn, events):
    if any(getattr(event, "goal", None) == "boom" for _, event in events):
        raise RuntimeError("audit handler failed")
    process(self, conn, events)

AuditTrail.process = failing
main(["--db", sys.argv[1], "projections", "run", "--poll", "0.05"])
"""


def test_projections_run_keeps_following_the_other_views_when_one_fails(sqlite_url: str) -> None:
    store = open_store(sqlite_url, embedded=False)
    agent_id = store.log.create_agent("scout")
    store.log.start_task(agent_id, "boom")
    with subprocess.Popen(
        [sys.executable, "-c", FOLLOWER_WITH_BROKEN_AUDIT, sqlite_url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as follower:
        try:
            for text in ("are you there?", "still there?"):
                time.sleep(0.5)
                store.log.send(agent_id, text)
                deadline = time.monotonic() + 10
                while positions(store.views)["state"] < head(store.log):
                    assert follower.poll() is None, follower.communicate()
                    assert time.monotonic() < deadline
                    time.sleep(0.05)
        finally:
            follower.kill()
            _, errors = follower.communicate()
    assert positions(store.views)["audit"] == 0
    assert errors.count("Error: view audit (build ") == 1  # reported once, not every poll
    assert "stopped at position 0: RuntimeError: audit handler failed" in errors
    store.close()


def test_rebuild_replaces_a_view_stopped_by_bad_rows_in_its_own_tables(
    log_and_views: tuple[AgentLog, Projections], monkeypatch: pytest.MonkeyPatch
) -> None:
    app, views = log_and_views
    monkeypatch.setattr(Tripwire, "armed", False)
    agent_id = app.create_agent("scout")
    build = next(s.active for s in views.status() if s.name == "tripwire")
    assert build is not None
    with views.engine.begin() as conn:  # what a buggy earlier handler could have left
        table = Table(Tripwire(build.build).table_name(), MetaData(), autoload_with=conn)
        conn.execute(insert(table).values(position=head(app) + 1))
    app.start_task(agent_id, "find owls")
    with views.engine.connect() as conn, pytest.raises(ViewStoppedError):
        views.table(conn, "tripwire")
    views.rebuild("tripwire")
    status = next(s for s in views.status() if s.name == "tripwire")
    assert status.active is not None
    assert (status.active.error, status.lag, status.building) == (None, 0, None)
    assert tripwire_rows(views) == list(range(1, head(app) + 1))


def test_a_database_error_in_the_views_never_fails_a_save_that_succeeded(
    log_and_views: tuple[AgentLog, Projections], monkeypatch: pytest.MonkeyPatch
) -> None:
    app, views = log_and_views
    agent_id = app.create_agent("scout")
    builds_of_views = catalog.builds_of_views  # what a catch-up reads first
    hiccups = [OperationalError("SELECT ...", {}, Exception("database is locked"))]

    def flaky(conn: Connection, names: Sequence[str]) -> list[Build]:
        if hiccups:
            raise hiccups.pop()
        return builds_of_views(conn, names)

    monkeypatch.setattr(catalog, "builds_of_views", flaky)
    app.start_task(agent_id, "find owls")  # saved; then the views hit the hiccup
    assert app.get(agent_id).version == 2
    views.catch_up()  # and the next catch-up goes on as if nothing happened
    assert set(positions(views).values()) == {2}
