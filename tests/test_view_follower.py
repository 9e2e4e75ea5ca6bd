"""One worker of a store keeps its views caught up (it holds the views' lease); when it
is killed another takes over at once; with ``--views leave`` no worker moves them.

Real ``agentlog worker`` processes on real SQLite files and a real PostgreSQL server,
killed with SIGKILL; the views are then compared, row for row, with a rebuild.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from uuid import UUID

import pytest
from sqlalchemy import select
from test_view_process_kill import assert_equal_to_a_rebuild, positions

from agentlog.adapters.leases import LEASES, VIEWS_LEASE, create_table
from agentlog.adapters.tools import ToolRegistry
from agentlog.adapters.views import Store, open_store
from agentlog.adapters.worker import Worker
from agentlog.domain import AgentConfig, Status

from conftest import store_url

AGENTLOG = str(Path(sys.executable).with_name("agentlog"))
TURNS = 12


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh store on each backend."""
    return store_url(request.param, tmp_path)


@pytest.fixture
def store(url: str) -> Iterator[Store]:
    """The store the test reads (views not caught up by opening it)."""
    opened = open_store(url, embedded=False, catch_up=False)
    create_table(opened.views.engine)  # as the first worker will
    yield opened
    opened.close()


def agents(store: Store, tmp_path: Path, n: int, latency: float) -> list[UUID]:
    """``n`` running agents whose scripted model calls the calculator each turn."""
    script = tmp_path / "script.json"
    turns: list[dict[str, object]] = [
        {"tool_calls": [{"call_id": f"c{t}", "tool": "calculator", "args": {"expression": "1+1"}}]}
        for t in range(TURNS)
    ]
    script.write_text(json.dumps([*turns, {"text": "done", "done": True}]))
    config = AgentConfig(model=f"scripted:{script}?latency={latency}", max_steps=1000)
    made = [store.log.create_agent(f"a{i}", config) for i in range(n)]
    for agent_id in made:
        store.log.start_task(agent_id, "count")
    return made


def worker(url: str, tmp_path: Path, *options: str) -> subprocess.Popen[str]:
    """A real ``agentlog worker`` process (its stderr in a file of ``tmp_path``)."""
    command = [AGENTLOG, "--db", url, "--sandbox", str(tmp_path / "sandbox"), "worker"]
    with (tmp_path / f"worker-{time.monotonic_ns()}.err").open("w") as err:
        return subprocess.Popen(
            [*command, "--quiet", "--poll", "0.05", *options],
            stdout=subprocess.DEVNULL,
            stderr=err,
            text=True,
        )


def views_holder(store: Store) -> str | None:
    """The owner (host:pid#n) of the views' lease, if a worker holds it."""
    with store.views.engine.connect() as conn:
        query = select(LEASES.c.owner).where(LEASES.c.agent_id == str(VIEWS_LEASE))
        return conn.execute(query).scalar()


def pid_of(owner: str) -> int:
    return int(owner.partition("#")[0].rpartition(":")[2])


def wait_for(what: str, check: Callable[[], object], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def all_done(store: Store, made: list[UUID]) -> bool:
    return all(store.log.get(a).status is Status.COMPLETED for a in made)


def head(store: Store) -> int:
    return store.views.app.recorder.max_notification_id() or 0


def stop(process: subprocess.Popen[str]) -> None:
    """SIGTERM a worker; it exits as a stopped worker does."""
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 128 + signal.SIGTERM


def test_one_worker_follows_the_views_and_another_takes_over_when_it_is_killed(
    store: Store, url: str, tmp_path: Path
) -> None:
    made = agents(store, tmp_path, 8, latency=0.05)
    first = worker(url, tmp_path, "-k", "4")
    second = worker(url, tmp_path, "-k", "4")
    try:
        wait_for("a views follower", lambda: views_holder(store) is not None)
        holder = views_holder(store)
        assert holder is not None
        killed, survivor = (first, second) if pid_of(holder) == first.pid else (second, first)
        assert pid_of(holder) == killed.pid  # the holder is one of the two workers
        shown = subprocess.run(
            [AGENTLOG, "--db", url, "workers", "--json"], check=True, capture_output=True, text=True
        )
        (row,) = [r for r in json.loads(shown.stdout) if r["agent_id"] == "views"]
        assert row["holder"] == f"{holder}/-1"
        wait_for("the views to move", lambda: min(positions(store.views).values()) > 0)
        os.kill(killed.pid, signal.SIGKILL)
        killed.wait(10)
        # On its host, a dead holder's lease is taken over at the next try, not at expiry.
        wait_for("the survivor to follow", lambda: views_holder(store) != holder, timeout=15)
        taken = views_holder(store)
        assert taken is not None
        assert pid_of(taken) == survivor.pid
        wait_for("every agent to finish", lambda: all_done(store, made))
        # The survivor alone catches them up now: to the head, while it runs.
        wait_for(
            "the views at the head", lambda: set(positions(store.views).values()) == {head(store)}
        )
        assert survivor.poll() is None
        stop(survivor)
        assert views_holder(store) is None  # given back when it stopped
    finally:
        for process in (first, second):
            if process.poll() is None:
                process.kill()
                process.wait()
    assert_equal_to_a_rebuild(store.views, url)


def test_with_views_left_to_a_follower_no_worker_moves_them(
    store: Store, url: str, tmp_path: Path
) -> None:
    made = agents(store, tmp_path, 3, latency=0.0)
    follower = [AGENTLOG, "--db", url, "projections", "run", "--once"]
    subprocess.run(follower, check=True, capture_output=True)  # the runnable view has them
    before = positions(store.views)
    leaving = worker(url, tmp_path, "-k", "2", "--views", "leave", "--exit-when-idle")
    try:
        assert leaving.wait(timeout=120) == 0
    finally:
        if leaving.poll() is None:  # it never went idle: do not leave it running
            leaving.kill()
            leaving.wait()
    assert all_done(store, made)
    assert positions(store.views) == before  # the worker caught nothing up
    assert max(before.values()) < head(store)
    assert views_holder(store) is None
    subprocess.run(follower, check=True, capture_output=True)
    assert_equal_to_a_rebuild(store.views, url)


def test_a_worker_told_to_stop_ends_the_views_catch_up_after_its_batch(
    tmp_path: Path,
) -> None:
    store = open_store(store_url("sqlite", tmp_path), embedded=False, catch_up=False)
    try:
        config = AgentConfig(model="scripted:none.json")
        for i in range(600):  # not started: never runnable, nothing for a turn to do
            store.log.create_agent(f"idle{i}", config)
        store.views.batch_size = 2  # a catch-up of hundreds of transactions
        stop = threading.Event()
        working = threading.Thread(
            target=Worker(store, ToolRegistry()).work,
            kwargs={"poll": 0.05, "exit_when_idle": False, "on_step": print, "stop": stop},
        )
        working.start()
        wait_for("the views to move", lambda: min(positions(store.views).values()) > 0)
        stop.set()
        working.join(5)
        assert not working.is_alive()  # it did not wait for the views' tail
        assert min(positions(store.views).values()) < head(store)
    finally:
        store.close()
