"""`agentlog step` and `agentlog run` hold the agent's lease as a worker's turn does
(refused while a live worker holds it, given back however they end), and stale leases
are swept: only rows expired for longer than a grace period, never a live one.

Real stores (SQLite files, PostgreSQL), the real CLI (click's runner, and processes for
Ctrl-C and a real `agentlog worker`).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from cli_checks import checked, invoke
from click.testing import CliRunner
from sqlalchemy import event, inspect, select, update

from agentlog.adapters.lease_keeper import LeaseKeeper
from agentlog.adapters.leases import LEASES, VIEWS_LEASE, Leases
from agentlog.adapters.tools import ToolRegistry, builtin_tools
from agentlog.adapters.views import Store, open_store
from agentlog.adapters.worker import Worker
from agentlog.domain import AgentConfig
from agentlog.domain.lease_errors import AgentLeasedError, LeaseLostError
from agentlog.domain.runtime import Step

from conftest import store_url

CALCULATE = {"call_id": "", "tool": "calculator", "args": {"expression": "1+1"}}
DONE = {"text": "done", "done": True}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh store on each backend."""
    return store_url(request.param, tmp_path)


@pytest.fixture
def store(url: str) -> Iterator[Store]:
    opened = open_store(url, embedded=False, catch_up=False)
    yield opened
    opened.close()


@pytest.fixture
def cli(url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("AGENTLOG_DB", url)
    monkeypatch.setenv("AGENTLOG_SANDBOX", str(tmp_path / "sandbox"))
    return CliRunner()


def agent(store: Store, tmp_path: Path, script: list[dict[str, Any]], latency: float = 0) -> UUID:
    """An agent with a task, whose model is ``script`` (answers after ``latency`` s)."""
    path = tmp_path / f"script-{time.monotonic_ns()}.json"
    path.write_text(json.dumps(script))
    config = AgentConfig(model=f"scripted:{path}?latency={latency}")
    agent_id = store.log.create_agent("a", config)
    store.log.start_task(agent_id, "g")
    return agent_id


def calculations(n: int) -> list[dict[str, Any]]:
    """``n`` turns that each run a pure call, then done."""
    turns = [{"text": f"t{i}", "tool_calls": [{**CALCULATE, "call_id": f"c{i}"}]} for i in range(n)]
    return [*turns, DONE]


def holders(store: Store) -> dict[UUID, str]:
    """Every agent's lease row: agent -> owner (not the views' lease; none if there is
    no table yet)."""
    engine = store.views.engine
    if not inspect(engine).has_table(LEASES.name):
        return {}
    with engine.connect() as conn:
        rows = conn.execute(select(LEASES.c.agent_id, LEASES.c.owner)).all()
    return {UUID(r.agent_id): r.owner for r in rows if UUID(r.agent_id) != VIEWS_LEASE}


def age(store: Store, agent_id: UUID, seconds: float) -> None:
    """Make the agent's lease one that expired ``seconds`` ago (it was taken just now)."""
    with store.views.engine.begin() as conn:
        aged = LEASES.c.taken_at - seconds
        rows = update(LEASES).where(LEASES.c.agent_id == str(agent_id))
        conn.execute(rows.values(expires_at=aged))


def wait_for(what: str, check: Callable[[], object], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


_STARTED: list[subprocess.Popen[str]] = []


@pytest.fixture(autouse=True)
def _no_process_outlives_its_test() -> Iterator[None]:
    yield
    while _STARTED:
        process = _STARTED.pop()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate(timeout=10)  # also closes its pipes


def agentlog(url: str, tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    """The real CLI, as a process in its own group (as a shell job)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "agentlog.cli", "--db", url, "--sandbox", str(tmp_path), *args],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    _STARTED.append(process)
    return process


def owned_by(process: subprocess.Popen[str]) -> str:
    return f"{socket.gethostname()}:{process.pid}#"


# step and run hold the lease


def test_run_and_step_are_refused_while_another_worker_holds_the_agent(
    store: Store, cli: CliRunner, tmp_path: Path
) -> None:
    agent_id = agent(store, tmp_path, [DONE])
    other = Leases(store.views.engine)  # another worker's (this process, another owner)
    assert other.take(agent_id, 2) is not None
    version = store.log.get(agent_id).version
    for command in ("run", "step"):
        result = invoke(cli, command, str(agent_id)[:8])
        refused = f"Error: agent {agent_id} is being advanced by worker {other.owner}/2 (its "
        checked(result, 1, refused)
        assert result.stderr.endswith("; try again later, or stop that worker\n")
        assert len(result.stderr.splitlines()) == 1
    assert store.log.get(agent_id).version == version  # nothing was done
    assert holders(store) == {agent_id: other.owner}


def test_run_is_refused_while_a_real_worker_advances_the_agent(
    url: str, store: Store, cli: CliRunner, tmp_path: Path
) -> None:
    agent_id = agent(store, tmp_path, [DONE], latency=60)  # the worker's step lasts a minute
    worker = agentlog(url, tmp_path, "worker", "--poll", "0.05")
    wait_for("the worker's lease", lambda: holders(store).get(agent_id))
    holder = holders(store)[agent_id]
    assert holder.startswith(owned_by(worker))
    result = invoke(cli, "run", str(agent_id))
    checked(result, 1, f"Error: agent {agent_id} is being advanced by worker {holder}/0 (its ")
    assert holders(store) == {agent_id: holder}  # still the worker's


def test_run_holds_the_lease_while_it_runs_and_gives_it_back(
    store: Store, cli: CliRunner, tmp_path: Path
) -> None:
    agent_id = agent(store, tmp_path, calculations(3), latency=0.2)
    seen: set[str] = set()
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            seen.update(owner for held, owner in holders(store).items() if held == agent_id)
            time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        result = checked(invoke(cli, "run", str(agent_id)), 0)
    finally:
        done.set()
        watcher.join()
    assert [line.split()[2] for line in result.stdout.splitlines()[:7]] == ["model", "tool"] * 3 + [
        "model"
    ]
    assert [owner.split("#")[0] for owner in seen] == [f"{socket.gethostname()}:{os.getpid()}"]
    assert holders(store) == {}


@pytest.mark.parametrize(
    ("model", "error"),
    [
        ("scripted:no-such-script.json", "Error: model 'scripted:no-such-script.json'"),
        ("failing", "Error: the task failed"),  # every answer is an error: ModelFailed x 3
    ],
)
def test_run_gives_the_lease_back_when_its_model_fails(
    store: Store, cli: CliRunner, tmp_path: Path, model: str, error: str
) -> None:
    if model == "failing":
        agent_id = agent(store, tmp_path, [])  # past the end of its script: each turn fails
    else:
        agent_id = store.log.create_agent("a", AgentConfig(model=model))
        store.log.start_task(agent_id, "g")
    checked(invoke(cli, "run", str(agent_id)), 1, error)
    assert holders(store) == {}
    other = Leases(store.views.engine)
    assert other.take(agent_id, 0) is not None  # free at once, not after it expires


def test_ctrl_c_during_run_gives_the_lease_back(url: str, store: Store, tmp_path: Path) -> None:
    agent_id = agent(store, tmp_path, [DONE], latency=60)
    run = agentlog(url, tmp_path, "run", str(agent_id))
    wait_for("the run's lease", lambda: holders(store).get(agent_id))
    assert holders(store)[agent_id].startswith(owned_by(run))
    time.sleep(0.3)  # inside its model call
    run.send_signal(signal.SIGINT)
    out, err = run.communicate(timeout=30)
    assert run.returncode == 130, err
    assert "Traceback" not in out + err
    assert holders(store) == {}


def test_a_run_that_loses_its_lease_stops_after_the_step_under_way(
    store: Store, tmp_path: Path
) -> None:
    agent_id = agent(store, tmp_path, calculations(20), latency=0.1)
    worker = Worker(store, builtin_tools(tmp_path), lease_seconds=1.0)  # renewed every 0.33 s
    other = Leases(store.views.engine)
    steps: list[Step] = []

    def take_it_over() -> None:  # as if its renewals never reached the database, and then
        wait_for("two steps", lambda: len(steps) >= 2)  # another worker took the agent over
        with store.views.engine.begin() as conn:
            conn.execute(update(LEASES).values(owner=other.owner, slot=0))

    thief = threading.Thread(target=take_it_over)
    thief.start()
    with pytest.raises(LeaseLostError) as lost:
        worker.run(agent_id, 100, steps.append, lease=True)
    thief.join()
    assert lost.value.steps == len(steps) < 41  # the 20 turns and their calls were not all run
    assert holders(store) == {agent_id: other.owner}  # its release took nothing from the thief
    with pytest.raises(AgentLeasedError):
        worker.step(agent_id, lease=True)


# sweeping


def test_a_sweep_deletes_only_leases_expired_longer_than_the_grace(store: Store) -> None:
    engine = store.views.engine
    held, sweeper = Leases(engine), Leases(engine)
    live, recent, old, older = (UUID(int=n) for n in range(1, 5))
    lease = held.take(live, 0)
    assert lease is not None
    for agent_id in (recent, old, older):
        assert held.take(agent_id, 1) is not None
    age(store, recent, 10)
    age(store, old, 400)
    age(store, older, 4000)
    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement.split(maxsplit=1)[0].upper())

    event.listen(engine, "before_cursor_execute", record)
    try:
        assert sweeper.sweep(300) == 2
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert statements == ["DELETE"]  # one statement
    assert set(holders(store)) == {live, recent}
    assert sweeper.sweep(0) == 1
    assert set(holders(store)) == {live}  # never a live lease, even with no grace
    assert sweeper.sweep(0) == 0
    assert held.renew(lease)


def test_a_worker_sweeps_when_it_starts_and_every_few_minutes(store: Store) -> None:
    engine = store.views.engine
    others = Leases(engine)
    live, old = UUID(int=1), UUID(int=2)
    assert others.take(live, 0) is not None
    assert others.take(old, 0) is not None
    age(store, old, 400)
    Worker(store, ToolRegistry()).work(poll=0.05, exit_when_idle=True, on_step=lambda s: None)
    assert set(holders(store)) == {live}
    with LeaseKeeper(Leases(engine), every=0.05, sweep_every=0.2, sweep_grace=60) as keeper:
        wait_for("the first sweep", lambda: keeper.swept_at is not None)
        assert others.take(old, 0) is not None
        age(store, old, 61)
        wait_for("the next sweep", lambda: set(holders(store)) == {live}, timeout=5)
    assert others.take(old, 0) is not None
    age(store, old, 400)
    with LeaseKeeper(Leases(engine), every=0.05, sweep_every=None):
        time.sleep(0.3)
    assert set(holders(store)) == {live, old}  # a keeper told not to sweep never does


def test_workers_sweep_says_how_many_it_deleted(store: Store, cli: CliRunner) -> None:
    swept = invoke(cli, "workers", "--sweep")
    checked(swept, 0, "swept 0 lease(s) expired more than 300s ago")
    others = Leases(store.views.engine)
    live, recent, old = UUID(int=1), UUID(int=2), UUID(int=3)
    for agent_id in (live, recent, old):
        assert others.take(agent_id, 0) is not None
    age(store, recent, 30)
    age(store, old, 400)
    swept = invoke(cli, "workers", "--sweep")
    checked(swept, 0, "swept 1 lease(s) expired more than 300s ago")
    assert {line.split()[0] for line in swept.stdout.splitlines()[1:]} == {str(live), str(recent)}
    swept = invoke(cli, "workers", "--sweep", "--grace", "10", "--json")
    checked(swept, 0, "swept 1 lease(s) expired more than 10s ago")
    assert [row["agent_id"] for row in json.loads(swept.stdout)] == [str(live)]
    assert set(holders(store)) == {live}
    checked(invoke(cli, "workers", "--grace", "10"), 2, "Usage:")  # --grace goes with --sweep
