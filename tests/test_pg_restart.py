"""PostgreSQL restarted under a working ``agentlog worker`` and ``agentlog projections
run``: both say so in one line, wait, carry on when it is back, and lose nothing: every
agent finishes, no event is lost or doubled, and the views equal a rebuild.

The server is one of the test's own (``pg_server.own_cluster``), stopped with
``pg_ctl stop -m fast`` (open transactions rolled back, connections dropped) while the
worker is mid-way through the agents' work, and started again on the same port.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from uuid import UUID

import psycopg
import pytest
from eventsourcing.persistence import OperationalError as EventsourcingOperationalError
from sqlalchemy.exc import DBAPIError
from test_view_process_kill import assert_equal_to_a_rebuild

from agentlog.adapters.views import Store, open_store
from agentlog.domain import AgentConfig, Status
from agentlog.projections.outages import is_outage

from counting_tools import assert_linear_history
from pg_server import Cluster, own_cluster

AGENTS, TURNS = 8, 25
DOWN_FOR = 5.0  # seconds the server stays stopped (the library itself retries for ~2 s)


@pytest.fixture(scope="module")
def cluster() -> Cluster:
    """A server of this module's own: restarting it disturbs no other test."""
    own = own_cluster()
    if own is None:
        pytest.skip("no PostgreSQL server binaries")
    return own


@pytest.fixture
def store(cluster: Cluster) -> Iterator[Store]:
    """The store on the test's server, with agents that take a while to finish."""
    opened = open_store(cluster.url)
    yield opened
    opened.close()


def _script(folder: Path) -> Path:
    call = {"call_id": "c", "tool": "calculator", "args": {"expression": "6 * 7"}}
    turns = [{"text": f"turn {n}", "tool_calls": [call]} for n in range(TURNS)]
    path = folder / "script.json"
    path.write_text(json.dumps([*turns, {"text": "done", "done": True}]))
    return path


def _agentlog(url: str, folder: Path, *args: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "agentlog.cli", "--db", url, *args]
    # The library waits this long for a connection before it gives up (default 30 s):
    # shorter, an outage is noticed (and said) sooner.
    env = os.environ | {"POSTGRES_CONNECT_TIMEOUT": "1"}
    return subprocess.Popen(
        command, cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


def _wait_for(what: str, check: Callable[[], object], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _listening(cluster: Cluster) -> bool:
    """Whether ``projections run`` is up: its LISTEN session is open."""
    url = cluster.url.replace("+psycopg", "")
    with psycopg.connect(url) as conn:
        query = "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'LISTEN %'"
        (count,) = conn.execute(query).fetchone() or (0,)
    return bool(count)


def _versions(store: Store, agents: list[UUID]) -> int:
    return sum(store.log.get(a).version for a in agents)


def _statuses(store: Store, agents: list[UUID]) -> list[Status]:
    return [store.log.get(a).status for a in agents]


@pytest.mark.postgres
def test_worker_and_follower_carry_on_after_a_restart_and_views_equal_a_rebuild(
    cluster: Cluster, store: Store, tmp_path: Path
) -> None:
    config = AgentConfig(model=f"scripted:{_script(tmp_path)}", max_steps=TURNS + 5)
    agents = [store.log.create_agent(f"a{n}", config) for n in range(AGENTS)]
    for agent_id in agents:
        store.log.start_task(agent_id, "add up")
    follower = _agentlog(cluster.url, tmp_path, "projections", "run", "--poll", "0.1")
    worker = _agentlog(cluster.url, tmp_path, "worker", "--poll", "0.1")
    try:
        _wait_for("the follower to listen", lambda: _listening(cluster))
        versions = partial(_versions, store, agents)
        start = versions()
        _wait_for("the worker to get going", lambda: versions() > start + 20)
        store.views.engine.dispose()  # the test's own connections go down with the server
        cluster.stop("fast")
        time.sleep(DOWN_FOR)
        cluster.start()
        before = versions()
        assert not all(s is Status.COMPLETED for s in _statuses(store, agents)), "too late"
        _wait_for("every agent to finish", lambda: all(
            s is Status.COMPLETED for s in _statuses(store, agents)))  # fmt: skip
        assert versions() > before  # the worker carried on after the restart
        head = store.log.recorder.max_notification_id()
        _wait_for("the views to catch up", lambda: all(
            s.lag == 0 for s in store.views.status()) and head)  # fmt: skip
    finally:
        for process in (worker, follower):
            process.send_signal(signal.SIGINT)
        outputs = {p: p.communicate(timeout=20) for p in (worker, follower)}
    for process, (_, err) in outputs.items():
        assert process.returncode == 130, err
        assert "Traceback" not in err
        assert err.count("database unavailable") == 1, err  # one line per outage
        assert err.count("database back") == 1, err
    for agent_id in agents:
        assert assert_linear_history(store.log.events_of(agent_id)) > 2 * TURNS
    assert_equal_to_a_rebuild(store.views, cluster.url)


def test_only_errors_that_say_the_database_is_out_of_reach_are_outages() -> None:
    lost = psycopg.OperationalError("server closed the connection unexpectedly")
    wrapped = EventsourcingOperationalError(str(lost))
    wrapped.__cause__ = lost
    assert is_outage(wrapped)  # as the library raises it
    assert is_outage(psycopg.errors.AdminShutdown("terminating connection"))
    assert is_outage(DBAPIError("SELECT 1", {}, sqlite3.OperationalError("database is locked")))
    # Bugs, not outages: they must stop a view (or a worker), not be retried forever.
    assert not is_outage(DBAPIError("SELECT a", {}, sqlite3.OperationalError("no such column")))
    assert not is_outage(psycopg.errors.UndefinedColumn("column a does not exist"))
    assert not is_outage(ValueError("nothing to do with the database"))
