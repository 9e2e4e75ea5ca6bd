"""Lease transactions never deadlock each other on PostgreSQL, and one that loses a
deadlock anyway is tried again, not raised (a worker once died of a ``DeadlockDetected``).

Each transaction locks its rows in agent-id order. The crossing orders a worker could
produce are driven here for real: lease statements of separate processes (as the keeper
thread, the turn threads and other workers run them), lined up by a third connection
that holds one row (a gate) and by watching ``pg_stat_activity`` until each waits where
it must, never by sleeping. On the unordered statements each of these deadlocks at once.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any
from uuid import UUID

import psycopg
import pytest
from sqlalchemy import Connection, Engine, create_engine, select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from agentlog.adapters.lease_keeper import LeaseKeeper
from agentlog.adapters.leased_turn import LeasedTurn
from agentlog.adapters.leases import LEASES, Lease, Leases
from agentlog.adapters.retry_deadlocks import RETRIES
from agentlog.domain.runtime import Runtime, StepKind

pytestmark = pytest.mark.postgres

W1, W2 = "w1.invalid:1#1", "w2.invalid:2#1"
"""Lease owners on no host of ours: never taken for gone."""
X, G, Z, N = 1, 2, 3, 4
"""Agents (``UUID(int=...)``): G is the gate's; ids as text sort as the numbers do."""
WAIT = 60.0
"""Seconds a child or a wait may take before the test fails (never reached when right)."""

CHILD = """
import json, logging, sys
from uuid import UUID
from sqlalchemy import create_engine
from agentlog.adapters.leases import Lease, Leases
url, name, owner, op, given, target = json.loads(sys.argv[1])
logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
leases = Leases(create_engine(url, connect_args={"application_name": name}), owner=owner)
held = [Lease(UUID(int=agent), slot, float("inf")) for agent, slot in given]
try:
    if op == "take":
        for lease in held:
            leases.give_back(lease)
        result = leases.take(UUID(int=target[0]), target[1]) is not None
    else:
        result = sorted(lease.agent_id.int for lease in leases.renew_all(held))
    print(json.dumps({"result": result}))
except Exception as e:
    print(json.dumps({"error": type(getattr(e, "orig", None) or e).__name__}))
"""


@pytest.fixture
def url(postgres_url: str) -> str:
    """A fresh database whose sessions detect deadlocks after 0.1 s (not 1 s) and give up
    waiting for a lock after ``WAIT`` (a test that would hang fails instead)."""
    name = make_url(postgres_url).database
    engine = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.exec_driver_sql(f"ALTER DATABASE {name} SET deadlock_timeout = '100ms'")
        conn.exec_driver_sql(f"ALTER DATABASE {name} SET lock_timeout = '{int(WAIT)}s'")
    engine.dispose()
    return postgres_url


@pytest.fixture
def watch(url: str) -> Iterator[Connection]:
    """A connection that looks at the other sessions."""
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        yield conn
    engine.dispose()


def take_in_order(url: str, owner: str, agents: list[int]) -> None:
    """Leases of ``owner`` on these agents (slot = agent), rows made in this order."""
    leases = Leases(create_engine(url), owner=owner)
    for agent in agents:
        assert leases.take(UUID(int=agent), agent) is not None
    leases.engine.dispose()


def gate(url: str, agent: int) -> tuple[Engine, Connection]:
    """A transaction holding the lease row of ``agent`` (FOR UPDATE) until it ends."""
    engine = create_engine(url, connect_args={"application_name": "gate"})
    conn = engine.connect()
    conn.execute(select(LEASES).where(LEASES.c.agent_id == str(UUID(int=agent))).with_for_update())
    return engine, conn


def child(url: str, name: str, owner: str, op: str, given: list[int], target: int = 0) -> Any:
    """A process running one lease transaction: a take (``given`` given back first) or
    a renewal of ``given`` (slot = agent)."""
    args = [url, name, owner, op, [(a, a) for a in given], (target, target)]
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, json.dumps(args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_until_blocked(watch: Connection, name: str) -> None:
    """Until the session ``name`` waits for a lock (a row another transaction holds)."""
    query = text(
        "SELECT bool_or(wait_event_type = 'Lock') FROM pg_stat_activity"
        " WHERE application_name = :name"
    )
    deadline = time.monotonic() + WAIT
    while not watch.execute(query, {"name": name}).scalar():
        assert time.monotonic() < deadline, f"{name} never waited for a lock"
        time.sleep(0.01)  # polling an observable state, not waiting for one to happen


def outcome(process: Any) -> tuple[Any, str]:
    """What the child printed, and what it logged."""
    out, err = process.communicate(timeout=WAIT)
    assert process.returncode == 0, err
    return json.loads(out), err


def test_a_renewal_and_a_take_releasing_leases_never_deadlock(url: str, watch: Connection) -> None:
    """One worker: its keeper thread renews held leases while a turn thread's take
    releases leases given back (the keeper copied them before they were dropped). The
    renewal used to lock rows in the order a scan meets them (Z before X: Z's row came
    first), the take in the order the turns ended (X before Z)."""
    take_in_order(url, W1, [Z, X, G])
    engine, held = gate(url, G)
    try:
        take = child(url, "take", W1, "take", given=[X, G, Z], target=N)
        wait_until_blocked(watch, "take")  # X released, waits for G
        renewal = child(url, "renew", W1, "renew", given=[Z, X])
        wait_until_blocked(watch, "renew")  # waits for X (unordered: holding Z)
    finally:
        held.rollback()
        held.close()
        engine.dispose()
    (took, took_log), (renewed, renew_log) = outcome(take), outcome(renewal)
    assert took == {"result": True}
    assert renewed == {"result": [X, Z]}  # released meanwhile: reported lost
    assert "lost a race" not in took_log + renew_log  # no deadlock happened at all


def test_two_workers_releasing_and_taking_each_others_agents_never_deadlock(
    url: str, watch: Connection
) -> None:
    """Worker 1 gives back X and takes D; worker 2 gives back D and takes X (each read
    the other's agent free a moment before the other took it). Each take used to
    release first and take after: each held the row the other wanted."""
    d = Z
    take_in_order(url, W1, [X, G])
    take_in_order(url, W2, [d])
    engine, held = gate(url, G)
    try:
        first = child(url, "take-1", W1, "take", given=[X, G], target=d)
        wait_until_blocked(watch, "take-1")  # X released, waits for G
        second = child(url, "take-2", W2, "take", given=[d], target=X)
        wait_until_blocked(watch, "take-2")  # waits for X (unordered: holding D)
    finally:
        held.rollback()
        held.close()
        engine.dispose()
    (took_d, log_1), (took_x, log_2) = outcome(first), outcome(second)
    assert took_d == {"result": False}  # D was worker 2's, live
    assert took_x == {"result": True}  # X was released
    assert "lost a race" not in log_1 + log_2


def test_a_sweep_skips_a_stale_lease_another_transaction_holds(url: str) -> None:
    """A sweep waits for no row (so is in no deadlock): one being taken over is left."""
    take_in_order(url, W1, [X, G, Z])
    leases = Leases(create_engine(url), owner=W2)
    with leases.engine.begin() as conn:
        conn.execute(update(LEASES).values(expires_at=0.0))
    engine, held = gate(url, G)
    try:
        assert leases.sweep(older_than=300.0) == 2
    finally:
        held.rollback()
        held.close()
        engine.dispose()
    with leases.engine.connect() as conn:
        assert conn.execute(select(LEASES.c.agent_id)).scalars().all() == [str(UUID(int=G))]
    leases.engine.dispose()


def test_a_take_that_loses_a_deadlock_is_tried_again(
    url: str, watch: Connection, caplog: pytest.LogCaptureFixture
) -> None:
    """A real deadlock: the take releases X, G, Z in order; another transaction holds Z
    and asks for X. PostgreSQL fails the take (the last to wait), which retries and
    succeeds once the other is done; the worker sees a lease, not an error."""
    take_in_order(url, W1, [X, G, Z])
    engine, gated = gate(url, G)
    other = create_engine(url, connect_args={"application_name": "other"})
    crossing = other.connect()
    crossing.exec_driver_sql("SET deadlock_timeout = '1h'")  # the take detects it
    crossing.execute(select(LEASES).where(LEASES.c.agent_id == str(UUID(int=Z))).with_for_update())
    leases = Leases(create_engine(url, connect_args={"application_name": "take"}), owner=W1)
    for agent in (X, G, Z):
        leases.give_back(Lease(UUID(int=agent), agent, float("inf")))
    result: list[Lease | Exception | None] = []
    taking = threading.Thread(target=_take, args=(leases, result))
    caplog.set_level(logging.WARNING, logger="agentlog.adapters.retry_deadlocks")
    try:
        taking.start()
        wait_until_blocked(watch, "take")  # X released, waits for G
        asking = threading.Thread(target=_lock_then_commit, args=(crossing, X))
        asking.start()
        wait_until_blocked(watch, "other")  # holds Z, waits for X
        gated.rollback()  # the take goes on to Z: a deadlock, the take's to break
        asking.join(WAIT)
        taking.join(WAIT)
        with leases.engine.connect() as conn:
            left = conn.execute(select(LEASES.c.agent_id)).scalars().all()
    finally:
        gated.close()
        crossing.close()
        for each in (engine, other, leases.engine):
            each.dispose()
    assert len(result) == 1
    assert isinstance(result[0], Lease)
    assert [r.message for r in caplog.records if "lost a race" in r.message], "not retried"
    assert left == [str(UUID(int=N))]


def _take(leases: Leases, result: list[Lease | Exception | None]) -> None:
    try:
        result.append(leases.take(UUID(int=N), N))
    except Exception as e:  # the test's thread reports it
        result.append(e)


def _lock_then_commit(conn: Connection, agent: int) -> None:
    conn.execute(select(LEASES).where(LEASES.c.agent_id == str(UUID(int=agent))).with_for_update())
    conn.commit()


class _Losing(Leases):
    """Leases whose every take fails with ``error`` (as PostgreSQL reports it)."""

    def __init__(self, engine: Engine, error: Exception) -> None:
        super().__init__(engine, owner=W1)
        self.error, self.tries = error, 0

    def _take(self, agent_id: UUID, slot: int, given: list[Lease]) -> bool:
        self.tries += 1
        raise OperationalError("INSERT ...", None, self.error)


def test_a_take_that_loses_every_try_counts_as_busy_and_the_worker_goes_on(url: str) -> None:
    """After its retries, a take still losing races is an agent busy elsewhere (the next
    pass looks again), never an error that ends the worker; other errors still raise."""
    engine = create_engine(url)
    try:
        losing = _Losing(engine, psycopg.errors.DeadlockDetected("deadlock detected"))
        turn = LeasedTurn(LeaseKeeper(losing), _no_runtime, print, turn=1)
        (step,) = turn(UUID(int=X), 0)
        assert step.kind is StepKind.BUSY
        assert losing.tries == 1 + RETRIES
        broken = _Losing(engine, psycopg.errors.UndefinedTable("no such table"))
        with pytest.raises(OperationalError):
            LeasedTurn(LeaseKeeper(broken), _no_runtime, print, turn=1)(UUID(int=X), 0)
        assert broken.tries == 1
    finally:
        engine.dispose()


def _no_runtime(agent_id: UUID) -> Runtime:
    raise AssertionError("no turn runs without the agent's lease")
