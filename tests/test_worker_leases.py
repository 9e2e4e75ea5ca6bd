"""Leases: one worker advances an agent at a time; a dead worker's agents are taken over
(at once when its process is known gone, else when its lease expires); and a lease lost
while its holder still runs a side effect never makes that effect happen twice.

Real stores, real worker processes (``worker_child.py --views``) killed with SIGKILL,
and the counting tools, which count what really ran outside the store.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from cli_checks import invoke, ok
from click.testing import CliRunner
from sqlalchemy import select, update

from agentlog.adapters.group_commit import unwrapped
from agentlog.adapters.lease_writes import writes_for
from agentlog.adapters.leases import LEASES, VIEWS_LEASE, Leases
from agentlog.adapters.tools import ToolRegistry
from agentlog.adapters.views import Store, open_store
from agentlog.adapters.worker import Worker
from agentlog.domain import Agent, AgentConfig, Status, ToolCallRequest
from agentlog.domain.claims import never_gone
from agentlog.domain.ports import Decision
from agentlog.domain.runtime import Step, StepKind

from conftest import store_url
from counting_tools import Ledger, assert_linear_history, counting_tools
from turn_log import check_turns
from worker_child import Workers


def _turn(text: str, *calls: tuple[str, str]) -> Decision:
    requests = (ToolCallRequest(call_id=c, tool=t, args={"label": c}) for c, t in calls)
    return Decision(text=text, tool_calls=tuple(requests))


SCRIPT = [
    _turn("look", ("p1", "slow_pure")),
    _turn("post", ("s1", "slow_side_effecting"), ("i1", "idempotent")),
    _turn("post again", ("s2", "side_effecting")),
    Decision(text="done", done=True),
]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh store on each backend."""
    return store_url(request.param, tmp_path)


@pytest.fixture
def store(url: str) -> Iterator[Store]:
    """The store the test reads (and its in-process workers use)."""
    opened = open_store(url, embedded=False, catch_up=False)
    yield opened
    opened.close()


def agents_for(store: Store, workers: Workers, n: int, **config: float) -> list[UUID]:
    """``n`` agents with a task, running the workers' script."""
    made_config = AgentConfig(model=f"scripted:{workers.script}", **config)
    made = [store.log.create_agent(f"a{i}", made_config) for i in range(n)]
    for agent_id in made:
        store.log.start_task(agent_id, "post twice")
    return made


def leases(store: Store) -> dict[UUID, tuple[str, float]]:
    """Every agent's lease row: agent -> (owner, expires_at) (not the views' lease)."""
    with store.views.engine.connect() as conn:
        rows = conn.execute(select(LEASES.c.agent_id, LEASES.c.owner, LEASES.c.expires_at))
        found = {UUID(r.agent_id): (r.owner, r.expires_at) for r in rows}
    found.pop(VIEWS_LEASE, None)
    return found


def wait_for(what: str, check: object, timeout: float = 20.0) -> None:
    """Poll ``check()`` until true."""
    assert callable(check)
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def assert_done_once(store: Store, ledger: Ledger, made: list[UUID]) -> None:
    """Every agent completed with a gapless chain; each side effect happened once."""
    for agent_id in made:
        agent = store.log.get(agent_id)
        assert agent.status is Status.COMPLETED, agent.last_error
        assert assert_linear_history(store.log.events_of(agent_id)) == agent.version
    for tool in ("slow_side_effecting", "side_effecting"):
        effects = ledger.effects(tool)
        assert len(effects) == len(made), tool
        assert set(effects.values()) == {1}, (tool, effects)


def test_a_lease_has_one_holder_until_it_expires_by_the_database_clock(store: Store) -> None:
    engine, agent_id = store.views.engine, UUID(int=7)
    first, second = Leases(engine, seconds=0.5), Leases(engine, seconds=0.5)
    held = first.take(agent_id, 0)
    assert held is not None
    assert second.take(agent_id, 0) is None  # live, and not its own
    assert first.take(agent_id, 1) is not None  # its own process's (a stale turn)
    time.sleep(0.6)
    taken = second.take(agent_id, 3)
    assert taken is not None  # expired: taken over
    assert not first.renew(held)
    assert held.lost.is_set()
    assert not held.held
    first.release(held)  # gives nothing back: the lease is no longer its own
    assert leases(store)[agent_id][0] == second.owner
    assert second.renew(taken)
    second.release(taken)
    assert leases(store) == {}


def test_a_lease_given_back_is_released_with_the_next_take_or_a_flush(store: Store) -> None:
    mine, other = Leases(store.views.engine), Leases(store.views.engine)
    first, second, third = UUID(int=1), UUID(int=2), UUID(int=3)
    lease = mine.take(first, 0)
    assert lease is not None
    mine.give_back(lease)
    assert set(leases(store)) == {first}  # not yet: it goes with the next take
    assert other.take(first, 0) is None
    assert mine.take(second, 0) is not None
    assert set(leases(store)) == {second}  # released in the same transaction
    assert other.take(first, 0) is not None
    again = mine.take(third, 1)
    assert again is not None
    mine.give_back(again)
    mine.flush()
    assert set(leases(store)) == {first, second}


def test_two_worker_processes_never_run_turns_of_one_agent_at_once(
    url: str, store: Store, tmp_path: Path
) -> None:
    turns = tmp_path / "turns.log"
    options = ["--views", "--concurrency", "4", "--turns", str(turns), "--worker-id", "host:pid"]
    workers = Workers(url, tmp_path, SCRIPT, [*options, "--delay", "0.05", "--poll", "0.01"])
    made = agents_for(store, workers, 6, tool_timeout=30.0)  # fewer than their slots:
    try:  # without leases, both would take every agent at once
        both = [workers.spawn(made), workers.spawn(made)]
        for worker in both:
            workers.wait_ready(worker)
        for worker in both:
            workers.go(worker)
        for worker in both:
            workers.finish(worker)
    finally:
        workers.close()
    tally = check_turns(turns)
    pids = {line.split()[2] for line in turns.read_text().splitlines()}
    print(f"{tally['turns']} turns by {len(pids)} processes")
    assert len(pids) == 2  # both worked
    assert_done_once(store, workers.ledger, made)
    assert workers.errors() == []
    assert leases(store) == {}


def _kill_mid_turn(workers: Workers, store: Store, made: list[UUID]) -> tuple[str, float]:
    """Start a worker, SIGKILL it while its slow side-effecting call runs; its lease."""
    worker = workers.spawn(made)
    workers.go(worker)
    wait_for("the side effect to start", lambda: workers.ledger.runs("slow_side_effecting"))
    (held,) = leases(store).values()
    assert held[0].startswith(f"{socket.gethostname()}:{worker.pid}#")
    assert workers.kill(worker)
    return held


def test_a_killed_workers_lease_is_taken_over_at_once_on_its_host(
    sqlite_url: str, tmp_path: Path
) -> None:
    options = ["--views", "--concurrency", "2", "--worker-id", "host:pid", "--delay", "1.0"]
    workers = Workers(sqlite_url, tmp_path, SCRIPT, options)
    store = open_store(sqlite_url, embedded=False, catch_up=False)
    try:
        made = agents_for(store, workers, 1, tool_timeout=60.0)
        _, expires_at = _kill_mid_turn(workers, store, made)
        left = expires_at - time.time()
        assert left > 20  # the dead worker's lease has long to run
        started = time.monotonic()
        tools = ToolRegistry(counting_tools(workers.ledger, delay=0.0))
        Worker(store, tools).work(poll=0.05, exit_when_idle=True, on_step=lambda s: None)
        took = time.monotonic() - started
        print(f"taken over and finished in {took:.2f}s; the lease had {left:.0f}s left")
        assert took < 10
        assert_done_once(store, workers.ledger, made)
    finally:
        workers.close()
        store.close()


def test_a_lease_nobody_can_tell_dead_is_taken_over_once_it_expires(
    sqlite_url: str, tmp_path: Path
) -> None:
    options = ["--views", "--lease", "1.5", "--worker-id", "host:pid", "--delay", "1.0"]
    workers = Workers(sqlite_url, tmp_path, SCRIPT, options)
    store = open_store(sqlite_url, embedded=False, catch_up=False)
    try:
        made = agents_for(store, workers, 1, tool_timeout=0.5)
        _, expires_at = _kill_mid_turn(workers, store, made)
        versions = store.log.get(made[0]).version
        tools = ToolRegistry(counting_tools(workers.ledger, delay=0.0))
        steps: list[Step] = []
        # This worker cannot tell that the dead one is gone (as on another host).
        Worker(store, tools, gone=never_gone).work(
            poll=0.05, exit_when_idle=True, on_step=steps.append
        )
        (agent_id,) = made
        after = list(store.log.events_of(agent_id))[versions:]
        first = after[0].timestamp
        print(f"first event {first.timestamp() - expires_at:+.2f}s after the lease expired")
        assert first >= datetime.fromtimestamp(expires_at, UTC)
        assert_done_once(store, workers.ledger, made)
    finally:
        workers.close()
        store.close()


def test_a_lease_lost_under_a_running_side_effect_never_runs_it_twice(
    url: str, tmp_path: Path
) -> None:
    ledger, workers = Ledger(tmp_path / "ledger"), Workers(url, tmp_path, SCRIPT[1:])
    stores = [open_store(url, embedded=False, catch_up=False) for _ in range(3)]
    first_store, second_store, store = stores
    tools = ToolRegistry(counting_tools(ledger, delay=0.6))
    made = agents_for(store, workers, 1, tool_timeout=60.0)
    second_steps: list[Step] = []
    first = Worker(first_store, tools, "first")
    second = Worker(second_store, tools, "second")
    run_first = threading.Thread(
        target=first.work, kwargs={"poll": 0.05, "exit_when_idle": True, "on_step": _quiet}
    )
    try:
        run_first.start()
        wait_for("the side effect to start", lambda: ledger.runs("slow_side_effecting"))
        with store.views.engine.begin() as conn:  # as if its renewals never reached the database
            agents = LEASES.c.agent_id != str(VIEWS_LEASE)
            assert conn.execute(update(LEASES).where(agents).values(expires_at=0)).rowcount == 1
        second.work(poll=0.05, exit_when_idle=True, on_step=second_steps.append)
        run_first.join(30)
        assert not run_first.is_alive()
        assert_done_once(store, ledger, made)
        busy = [s for s in second_steps if s.kind is StepKind.BUSY]
        assert busy, "the second worker never held the agent while the first ran its call"
        assert "running elsewhere" in busy[0].detail
        events = list(store.log.events_of(made[0]))
        starts = [e for e in events if isinstance(e, Agent.ToolStarted) and e.call_id == "s1"]
        assert [e.worker_id for e in starts] == ["first"]  # never started again
    finally:
        first.stop.set()
        run_first.join(30)
        for opened in stores:
            opened.close()


def _quiet(step: Step) -> None:
    del step


def test_workers_command_shows_who_holds_which_agent(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTLOG_DB", sqlite_url)
    cli = CliRunner()
    store = open_store(sqlite_url)
    assert invoke(cli, "workers").stderr == "no agent is held by a worker\n"
    held = Leases(store.views.engine, owner=f"{socket.gethostname()}:{os.getpid()}#1")
    held.take(UUID(int=1), 3)
    dead = Leases(store.views.engine, owner=f"{socket.gethostname()}:{_dead_pid()}#1")
    dead.take(UUID(int=2), 0)
    store.close()
    lines = ok(cli, "workers").splitlines()
    assert lines[0].split() == ["AGENT", "HOLDER", "SINCE", "EXPIRES", "IN", "STATE"]
    by_agent = {line.split()[0]: line.split() for line in lines[1:]}
    assert by_agent[str(UUID(int=1))][1] == f"{held.owner}/3"
    assert by_agent[str(UUID(int=1))][-1] == "held"
    assert by_agent[str(UUID(int=2))][-1] == "gone"


def _dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          check=True, capture_output=True, text=True)  # fmt: skip
    return int(done.stdout)


def test_a_workers_lease_statements_are_compiled_once(store: Store) -> None:
    """Taking, failing to take and releasing leases compiles nothing after the first time
    (SQLAlchemy caches no dialect's INSERT ... ON CONFLICT)."""
    engine = store.views.engine
    writes = writes_for(engine, unwrapped(store.log.recorder))
    mine, theirs = Leases(engine, writes=writes), Leases(engine, writes=writes)
    compiled: list[str] = []
    for worker_leases in (mine, theirs):
        for name in ("take", "holder", "release"):
            prepared = getattr(worker_leases._statements, name)
            original = prepared.statement.compile
            prepared.statement.compile = partial(_counted, compiled, name, original)
    agents = [UUID(int=n) for n in range(1, 6)]
    for agent_id in agents:
        lease = mine.take(agent_id, 0)
        assert lease is not None
        assert theirs.take(agent_id, 1) is None  # held: the holder is read
        mine.give_back(lease)
    mine.flush()
    assert leases(store) == {}
    assert sorted(compiled) == ["holder", "release", "take", "take"]  # once per owner


def _counted(compiled: list[str], name: str, original: Any, *args: Any, **kwargs: Any) -> Any:
    compiled.append(name)
    return original(*args, **kwargs)
