"""A store holding aggregates of a user's own classes, through the CLI and the runtime.

The CLI runs in a fresh process (``clean_cli``): a test process has imported the
user's modules already, and then every topic resolves whether ``--app`` is given or not.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar
from uuid import UUID, uuid4

import pytest
from click.testing import CliRunner
from eventsourcing.persistence import StoredEvent
from eventsourcing.utils import get_topic, resolve_topic
from helpdesk_app import Helpdesk, Notes, Scribe, Ticket
from sqlalchemy import select

from agentlog.adapters.scripted import ScriptedModel
from agentlog.adapters.storage import engine_for, open_log
from agentlog.cli import main
from agentlog.cli.app_loading import AppLoadError, load_apps
from agentlog.cli.settings import Settings
from agentlog.domain import Agent, AgentConfig, AgentLog, Policy, Status, ToolCallRequest
from agentlog.domain.ports import Decision
from agentlog.domain.runtime import Runtime
from agentlog.projections import DEFAULT_VIEWS, Projections, queries

from conftest import store_url
from counting_tools import Ledger, counting_tools

TESTS = Path(__file__).resolve().parent
EXAMPLES = TESTS.parent / "examples"
if str(EXAMPLES) not in sys.path:
    sys.path.insert(0, str(EXAMPLES))

from support_agent import open_desk, work_ticket  # noqa: E402

APPS = ["--app", "support_agent:SupportDesk", "--app", "helpdesk_app"]
RUNNER = """
import json, sys
from click.testing import CliRunner
from agentlog.cli import main
from agentlog.cli.app_loading import AppLoadError, load_apps
from agentlog.cli.settings import Settings
out = []
for call in json.loads(sys.argv[1]):
    r = CliRunner().invoke(main, call["args"], env=call.get("env"))
    crashed = r.exception is not None and not isinstance(r.exception, SystemExit)
    out.append({"code": r.exit_code, "out": r.stdout, "err": r.stderr, "crashed": crashed})
print(json.dumps(out))
"""


@dataclass(frozen=True)
class Outcome:
    """What one CLI command did."""

    code: int
    out: str
    err: str

    @property
    def first_err(self) -> str:
        return (self.err.splitlines() or [""])[0]

    def json(self) -> Any:
        return json.loads(self.out)


def clean_cli(*calls: list[str], env: dict[str, str] | None = None) -> list[Outcome]:
    """Run CLI commands, in order, in one fresh process that has imported nothing of the
    user's (its folder is ``tests/``, where ``helpdesk_app`` lives, as a user's would)."""
    payload = json.dumps([{"args": list(c), "env": env} for c in calls])
    done = subprocess.run(
        [sys.executable, "-c", RUNNER, payload],
        capture_output=True,
        text=True,
        check=True,
        cwd=TESTS,
        env={"PYTHONPATH": str(EXAMPLES), "PATH": "/usr/bin:/bin"},
    )
    outcomes = []
    for row in json.loads(done.stdout):
        assert not row["crashed"], row
        assert "Traceback" not in row["out"] + row["err"], row
        outcomes.append(Outcome(row["code"], row["out"], row["err"]))
    return outcomes


@dataclass(frozen=True)
class Mixed:
    """A store with a plain agent, a SupportAgent, a Scribe and a Ticket."""

    url: str
    plain: UUID
    support: UUID
    scribe: UUID
    ticket: UUID
    unknown_without_app = 10 + 3 + 2  # the support agent's, the scribe's, the ticket's


def mixed_store(tmp_path: Path) -> Mixed:
    url = f"sqlite:///{tmp_path / 'mixed.db'}"
    desk = open_desk(url, snapshot_interval=2)
    try:
        support = work_ticket(desk, "T-1")
        plain = desk.create_agent("plain")
        desk.start_task(plain, "be plain")
        scribe = Scribe("scribe", AgentConfig())
        scribe.start_task("write")
        scribe.take_note("remember the milk")
        ticket = Ticket("printer on fire")
        ticket.close()
        desk.save(scribe, ticket)
    finally:
        desk.close()
    return Mixed(url, plain, support, scribe.id, ticket.id)


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> Mixed:
    return mixed_store(tmp_path_factory.mktemp("mixed"))


def test_without_app_views_skip_and_count_unknown_aggregates_and_serve_the_agents(
    mixed: Mixed,
) -> None:
    db = ["--db", mixed.url]
    ls, audit, status, rebuild, again, plain, table = clean_cli(
        [*db, "ls", "--json"],
        [*db, "audit", "--json"],
        [*db, "projections", "status", "--json"],
        [*db, "projections", "rebuild", "--all"],
        [*db, "projections", "status", "--json"],
        [*db, "show", str(mixed.plain)],
        [*db, "projections", "status"],
    )
    assert table.code == 0
    assert table.first_err.startswith("note: events of unknown topics (such as 'helpdesk:")
    assert table.first_err.endswith("--app module:Class, then rebuild the views")
    assert table.out.split()[4] == "SKIPPED"
    for outcome in (ls, audit, status, rebuild, again, plain):
        assert (outcome.code, outcome.first_err) == (0, "")
    assert [a["id"] for a in ls.json()] == [str(mixed.plain)]
    assert audit.json() == []  # the plain agent made no call; the support agent's are unread
    for report in (status, again):  # incremental and rebuilt count the same
        for view in report.json():
            assert (view["lag"], view["error"]) == (0, None), view
            assert view["skipped"] == mixed.unknown_without_app, view
            assert view["unknown_topic"].startswith("helpdesk:"), view
    assert "be plain" in plain.out


@pytest.mark.parametrize("command", ["log", "show"])
@pytest.mark.parametrize("which", ["support", "ticket", "scribe"])
def test_without_app_reading_a_users_aggregate_says_to_pass_app(
    mixed: Mixed, command: str, which: str
) -> None:
    ref = str(getattr(mixed, which))
    (outcome,) = clean_cli(["--db", mixed.url, command, ref])
    assert outcome.code == 1
    assert outcome.first_err.startswith(f"Error: agent {ref} version ")
    assert "unknown topic" in outcome.first_err
    assert outcome.first_err.endswith("(agentlog --app module:Class)")


def test_without_app_show_at_a_version_past_a_snapshot_says_to_pass_app(mixed: Mixed) -> None:
    (outcome,) = clean_cli(["--db", mixed.url, "show", str(mixed.support), "--at", "5"])
    assert outcome.code == 1
    assert outcome.first_err.startswith(f"Error: agent {mixed.support} version ")
    assert "'support:SupportAgent@1'" in outcome.first_err  # the snapshot's aggregate
    assert "unknown topic" in outcome.first_err


def test_with_app_every_view_reads_them_and_the_apps_own_view_follows(tmp_path: Path) -> None:
    mixed = mixed_store(tmp_path)
    db = ["--db", mixed.url]
    ls, audit, rebuild, status = clean_cli(
        [*db, "ls", "--json"],
        [*db, "audit", "--agent", str(mixed.support), "--json"],
        [*db, "projections", "rebuild", "--all"],
        [*db, "projections", "status", "--json"],
        env={"AGENTLOG_APP": " ".join(APPS[1::2])},
    )
    for outcome in (ls, audit, rebuild, status):
        assert (outcome.code, outcome.first_err) == (0, "")
    listed = {a["id"]: a["name"] for a in ls.json()}
    assert listed == {
        str(mixed.support): "support:T-1",
        str(mixed.plain): "plain",
        **{str(mixed.scribe): "scribe"},
    }
    calls = [(row["tool"], row["decision"], row["outcome"]) for row in audit.json()]
    assert calls == [("lookup_order", "auto", "succeeded")]  # the subclass's own events
    assert rebuild.out.strip().endswith("rebuilt: state, audit, transcript, runnable, notes")
    skipped = {view["view"]: view["skipped"] for view in status.json()}
    # The ticket is no agent: the agent-row views keep no row for it, and say so.
    assert skipped == {"state": 2, "audit": 0, "transcript": 0, "runnable": 2, "notes": 0}
    log = open_log(mixed.url)
    views = Projections(log, engine_for(mixed.url), (*DEFAULT_VIEWS, Notes))
    with views.engine.connect() as conn:
        notes = conn.execute(select(views.table(conn, "notes").c.text)).scalars().all()
    assert notes == ["remember the milk"]
    views.engine.dispose()
    log.close()


def test_with_app_show_at_prints_a_non_agent_aggregate_as_it_was(tmp_path: Path) -> None:
    mixed = mixed_store(tmp_path)
    ref = str(mixed.ticket)
    then, now, table, support, log = clean_cli(
        [*APPS, "--db", mixed.url, "show", ref, "--at", "1", "--json"],
        [*APPS, "--db", mixed.url, "show", ref, "--json"],
        [*APPS, "--db", mixed.url, "show", ref, "--at", "1"],
        [*APPS, "--db", mixed.url, "show", str(mixed.support), "--at", "5", "--json"],
        [*APPS, "--db", mixed.url, "log", ref],
    )
    for outcome in (then, now, table, support, log):
        assert (outcome.code, outcome.first_err) == (0, "")
    assert then.json() | {"head_hash": "-"} == {
        "id": ref,
        "version": 1,
        "type": "helpdesk:Ticket@1",
        "subject": "printer on fire",
        "open": True,
        "head_hash": "-",
    }
    assert (now.json()["version"], now.json()["open"]) == (2, False)
    assert "helpdesk:Ticket@1" in table.out
    assert '"printer on fire"' in table.out
    assert (support.json()["version"], support.json()["ticket"]) == (5, "T-1")
    assert [line.split()[3] for line in log.out.splitlines()] == ["Created", "Closed"]


@pytest.mark.parametrize(
    ("apps", "first_line"),
    [
        (["nosuch_module"], "Error: --app 'nosuch_module': no module named 'nosuch_module'"),
        (
            ["helpdesk_app:Nope"],
            "Error: --app 'helpdesk_app:Nope': helpdesk_app has no attribute 'Nope'",
        ),
        (
            ["helpdesk_app:TicketState"],
            "Error: --app 'helpdesk_app:TicketState': TicketState "
            "is not an AgentLog or Aggregate subclass",
        ),
        (
            ["broken_app"],
            "Error: --app 'broken_app': importing broken_app failed: RuntimeError: no config",
        ),
        (
            ["needs_dep"],
            "Error: --app 'needs_dep': importing needs_dep failed: "
            "ModuleNotFoundError: No module named 'not_installed_anywhere'",
        ),
        ([":Helpdesk"], "Error: --app ':Helpdesk': write module or module:Class"),
        (
            ["helpdesk_app:Helpdesk", "support_agent:SupportDesk"],
            "Error: --app "
            "'support_agent:SupportDesk': a second application class (already Helpdesk)",
        ),
    ],
)
def test_an_app_that_cannot_be_loaded_is_one_error_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, apps: list[str], first_line: str
) -> None:
    (tmp_path / "broken_app.py").write_text("raise RuntimeError('no config')\n")
    (tmp_path / "needs_dep.py").write_text("import not_installed_anywhere\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", ".")])
    args = [a for app in apps for a in ("--app", app)]
    result = CliRunner().invoke(main, [*args, "--db", "memory://", "ls"])
    assert (result.exit_code, result.stderr.splitlines()[0]) == (1, first_line)
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output


@pytest.fixture
def in_tests_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run from tests/ as a user runs from their project; sys.path is restored after."""
    monkeypatch.chdir(TESTS)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", ".")])


@pytest.mark.usefixtures("in_tests_folder")
def test_the_app_class_is_the_application_and_the_modules_views_are_followed(
    sqlite_url: str,
) -> None:
    app = load_apps(["helpdesk_app:Helpdesk", "support_views"])
    assert app.log_class is Helpdesk
    assert [v.name for v in app.views] == ["notes", "escalations"]
    with Settings(sqlite_url, None, app=app).store(create=True) as store:
        assert type(store.log) is Helpdesk
        assert list(store.views.views) == [
            "state",
            "audit",
            "transcript",
            "runnable",
            "notes",
            "escalations",
        ]


@pytest.mark.usefixtures("in_tests_folder")
def test_a_modules_views_list_decides_which_of_its_views_are_followed(tmp_path: Path) -> None:
    (tmp_path / "listed_views.py").write_text(
        "from helpdesk_app import Notes\nfrom support_views import Escalations\n"
        "VIEWS = (Escalations,)\n"
    )
    (tmp_path / "clashing_views.py").write_text(
        "from agentlog.projections import AgentStates\nclass Mine(AgentStates):\n    pass\n"
    )
    sys.path.insert(0, str(tmp_path))
    assert [v.name for v in load_apps(["listed_views"]).views] == ["escalations"]
    with pytest.raises(AppLoadError, match="a second view named 'state'"):
        load_apps(["clashing_views"])


def test_a_minimal_agent_subclass_runs_saves_reloads_snapshots_and_shows_in_views(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'scribe.db'}"
    log = open_log(url, snapshot_interval=3, log_class=Helpdesk)
    assert isinstance(log, Helpdesk)
    agent_id = log.hire_scribe("scribe", AgentConfig(tool_policies={"pure": Policy.ALLOW}))
    log.start_task(agent_id, "note, then look something up")
    scribe = log.get(agent_id)
    assert isinstance(scribe, Scribe)
    scribe.take_note("first")
    log.save(scribe)
    call = ToolCallRequest(call_id="c1", tool="pure", args={"label": "c1"})
    script = [Decision(text="looking", tool_calls=(call,)), Decision(text="done", done=True)]
    tools = counting_tools(Ledger(tmp_path / "ledger"), delay=0.0)
    Runtime(log, ScriptedModel(script), tools, worker_id="w").run(agent_id, 10)

    stored = list(log.recorder.select_events(agent_id))
    assert [s.topic for s in stored] == [
        f"helpdesk:Scribe.{name}@1"
        for name in (
            "Created",
            "TaskStarted",
            "NoteTaken",
            "ModelResponded",
            "ToolCalled",
            "ToolStarted",
            "ToolSucceeded",
            "ModelResponded",
            "TaskCompleted",
        )
    ]
    assert log.snapshots is not None
    snapshots = list(log.snapshots.get(agent_id))
    assert snapshots
    assert all(s.topic == "helpdesk:Scribe@1" for s in snapshots)  # type: ignore[attr-defined]
    log.close()

    reopened = open_log(url, log_class=Helpdesk)
    loaded = reopened.get(agent_id)  # snapshot + tail
    replayed: Any = None
    for event in reopened.events_of(agent_id):  # every event, no snapshot
        replayed = event.mutate(replayed)
    assert isinstance(loaded, Scribe)
    assert isinstance(replayed, Scribe)
    assert loaded.state() == replayed.state()
    assert (loaded.status, loaded.notes, loaded.version) == (Status.COMPLETED, 1, 9)

    views = Projections(reopened, engine_for(url), (*DEFAULT_VIEWS, Notes))
    views.catch_up()
    with views.engine.connect() as conn:
        shown = queries.agent_from_state(conn, views.table(conn, "state"), agent_id)
        audit = queries.audit(conn, views.table(conn, "audit"), queries.AuditFilter())
        notes = conn.execute(select(views.table(conn, "notes").c.text)).scalars().all()
    assert isinstance(shown, Scribe)
    assert shown.state() == loaded.state()
    assert [(r["agent_id"], r["tool"], r["outcome"]) for r in audit] == [
        (str(agent_id), "pure", "succeeded")
    ]
    assert notes == ["first"]
    assert all(s.skipped == 0 for s in views.status())
    views.engine.dispose()
    reopened.close()


def test_inherited_events_take_the_subclass_topic_and_explicit_ones_still_win() -> None:
    class Pinned(Agent):
        TOPIC: ClassVar[str] = "pinned:Pinned@2"

        class Event(Agent.Event): ...

        class TaskStarted(Agent.TaskStarted, Event):
            TOPIC: ClassVar[str] = "pinned:started-the-old-way@1"

    assert get_topic(Pinned.TaskStarted) == "pinned:started-the-old-way@1"
    assert get_topic(Pinned.TaskCompleted) == "pinned:Pinned.TaskCompleted@2"
    assert get_topic(Pinned.Created) == "pinned:Pinned.Created@2"
    assert issubclass(Pinned.TaskCompleted, Agent.TaskCompleted)
    # Logs written before the aggregate pinned its topic name events by module path.
    old = f"{__name__}:{Pinned.TaskCompleted.__qualname__}"
    assert resolve_topic(old) is Pinned.TaskCompleted
    assert resolve_topic("pinned:Pinned.TaskCompleted@2") is Pinned.TaskCompleted


def test_an_aggregate_without_a_topic_keeps_the_librarys_module_path_topics() -> None:
    class Unpinned(Agent):
        pass

    qualname = Unpinned.__qualname__
    assert get_topic(Unpinned.TaskStarted) == f"{__name__}:{qualname}.TaskStarted"


def test_a_users_application_class_keeps_the_store_name() -> None:
    class Renamed(AgentLog):
        name = "elsewhere"

    assert Helpdesk.name == AgentLog.name == "agentlog"
    assert Renamed.name == "elsewhere"


@pytest.mark.parametrize(
    "backend",
    ["sqlite", "sqlite-sqlalchemy", pytest.param("postgres", marks=pytest.mark.postgres)],
)
def test_skipped_events_are_counted_once_with_the_position_they_move_past(
    backend: str, tmp_path: Path
) -> None:
    url = store_url(backend, tmp_path)
    log = open_log(url)
    views = Projections(log, engine_for(url), DEFAULT_VIEWS, batch_size=2)
    first = log.create_agent("before")
    stranger = uuid4()
    log.recorder.insert_events(
        [StoredEvent(stranger, v, f"elsewhere:Thing.Happened@{v}", b"{}") for v in (1, 2, 3)]
    )
    views.catch_up()  # batches of two: the skips straddle a batch, the position moves
    views.catch_up()  # nothing new: nothing counted twice
    last = log.create_agent("after")
    views.catch_up()
    report = {s.name: (s.skipped, s.unknown_topic, s.lag) for s in views.status()}
    assert report == dict.fromkeys(views.views, (3, "elsewhere:Thing.Happened@3", 0))
    with views.engine.connect() as conn:
        listed = [r["agent_id"] for r in queries.states(conn, views.table(conn, "state"), None)]
    assert listed == [str(first), str(last)]
    views.engine.dispose()
    log.close()
