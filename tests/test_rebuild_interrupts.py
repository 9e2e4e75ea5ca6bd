"""Stopping ``agentlog projections rebuild`` (SIGINT: its builds are abandoned; SIGKILL:
status says the build stalled), and an older agentlog beside a newer one during a rolling
upgrade (it never replaces or retires the newer one's builds).
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import ClassVar

import pytest
from sqlalchemy import inspect, select
from test_interrupts import _agentlog, _wait_for
from test_view_process_kill import write_log

from agentlog.adapters.storage import open_log
from agentlog.adapters.views import engine_for
from agentlog.projections import DEFAULT_VIEWS, Projections, ViewTooNewError, catalog
from agentlog.projections.state import AgentStates


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store whose rebuild takes a while (some 10,000 events), written once."""
    folder = tmp_path_factory.mktemp("template")
    url = f"sqlite:///{folder / 'agentlog.db'}"
    app = open_log(url)
    write_log(app, agents=100, events_each=100)
    Projections(app, engine_for(url), DEFAULT_VIEWS).engine.dispose()
    app.close()
    return folder


@pytest.fixture
def big_log(template: Path, tmp_path: Path) -> str:
    """A copy of the template store, for one test to change."""
    for path in template.glob("agentlog.db*"):
        shutil.copy(path, tmp_path / path.name)
    return f"sqlite:///{tmp_path / 'agentlog.db'}"


def _catalog(url: str, view: str) -> list[tuple[str, int, str | None]]:
    """The view's builds: status, position, owner, oldest first."""
    engine = engine_for(url)
    with engine.connect() as conn:
        query = select(catalog.builds).where(catalog.builds.c.view == view)
        rows = [(r.status, r.position, r.owner) for r in conn.execute(query)]
    engine.dispose()
    return rows


def _status(url: str, tmp_path: Path) -> dict[str, dict[str, object]]:
    done = subprocess.run(
        [sys.executable, "-m", "agentlog.cli", "--db", url, "projections", "status", "--json"],
        cwd=tmp_path, capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    return {row["view"]: row for row in json.loads(done.stdout)}


@pytest.mark.parametrize("how", ["SIGINT", "SIGKILL"])
def test_an_interrupted_rebuild_leaves_no_build_that_looks_alive(
    big_log: str, tmp_path: Path, how: str
) -> None:
    rebuild = _agentlog(big_log, tmp_path, "projections", "rebuild", "state")
    _wait_for("the rebuild to get going", lambda: any(
        s == catalog.BUILDING for s, _, _ in _catalog(big_log, "state")), 60)  # fmt: skip
    rebuild.send_signal(signal.Signals[how])
    _, err = rebuild.communicate(timeout=30)
    (new,) = [b for b in _catalog(big_log, "state") if b[2] is not None]
    status = _status(big_log, tmp_path)["state"]
    if how == "SIGINT":
        assert rebuild.returncode == 130, err
        assert "rebuild interrupted: abandoned state" in err
        assert "Traceback" not in err
        assert new[0] == catalog.ABANDONED
        assert status["rebuild"] == "abandoned"
        assert not [t for t in _tables(big_log) if t.startswith("agentlog_state") and
                    t.endswith(f"_b{len(_catalog(big_log, 'state'))}")]  # fmt: skip
    else:
        assert new[0] == catalog.BUILDING  # killed: nothing could be marked
        assert new[2] == f"{socket.gethostname()}:{rebuild.pid}"
        assert status["rebuild"] == "stalled"
    serving = [b for b in _catalog(big_log, "state") if b[0] == catalog.ACTIVE]
    assert serving == [(catalog.ACTIVE, 0, None)]  # the serving build serves on, untouched
    again = _agentlog(big_log, tmp_path, "projections", "rebuild", "state")
    again.communicate(timeout=120)
    assert again.returncode == 0
    assert _status(big_log, tmp_path)["state"]["rebuild"] is None


def _tables(url: str) -> list[str]:
    engine = engine_for(url)
    with engine.connect() as conn:
        names = inspect(conn).get_table_names()
    engine.dispose()
    return names


class NewerStates(AgentStates):
    """The state view as a newer agentlog has it (one version up)."""

    version: ClassVar[int] = AgentStates.version + 1


NEWER = [NewerStates if cls is AgentStates else cls for cls in DEFAULT_VIEWS]


def _state_versions(views: Projections) -> tuple[int | None, int | None]:
    """The versions of the state view's serving build and of the one being built."""
    (state,) = [s for s in views.status() if s.name == "state"]
    active, building = state.active, state.building
    return (
        None if active is None else active.version,
        None if building is None else building.version,
    )


def test_an_older_agentlog_never_replaces_a_newer_ones_views(sqlite_url: str) -> None:
    app = open_log(sqlite_url)
    app.start_task(app.create_agent("scout"), "find owls")
    old = Projections(app, engine_for(sqlite_url), DEFAULT_VIEWS)
    old.catch_up()
    older, newer = AgentStates.version, NewerStates.version
    new = Projections(app, engine_for(sqlite_url), NEWER)  # the upgrade starts a build
    assert _state_versions(old) == (older, newer)
    Projections(app, engine_for(sqlite_url), DEFAULT_VIEWS)  # an old process starts again
    old.catch_up()  # and follows what it knows
    assert _state_versions(old) == (older, newer)  # the newer build is left alone
    new.catch_up()  # the newer build swaps in
    Projections(app, engine_for(sqlite_url), DEFAULT_VIEWS)  # the old code opens again
    old.catch_up()
    assert _state_versions(old) == (newer, None)  # no older build to race it
    with pytest.raises(ViewTooNewError, match="upgrade agentlog"):
        old.rebuild("state")
    assert _state_versions(old) == (newer, None)
    old.rebuild_many(["state"], downgrade=True)  # going back on purpose
    assert _state_versions(old) == (older, None)
    app.close()
