"""Group commit: saves made at once by several threads share transactions, and each
save keeps what it had alone (atomic, ordered, durable on return, failing only for
its own reasons). Real SQLite files and a real PostgreSQL server."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
import pytest
from eventsourcing.persistence import IntegrityError, OperationalError, Recording, StoredEvent
from group_commit_child import PARTS

from agentlog.adapters.group_commit import GroupCommit, unwrapped
from agentlog.adapters.storage import open_log, sqlite_path
from agentlog.adapters.verify import verify_agent
from agentlog.domain import Agent, AgentLog

from conftest import store_url

THREADS, SAVES = 12, 8
LOCK_TIMEOUT_S = 0.4
BACKENDS = ["sqlite", "sqlite-sqlalchemy", "postgres", "postgres-sqlalchemy"]


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh store on each real backend in turn."""
    return store_url(request.param, tmp_path)


@pytest.fixture
def log(url: str) -> Iterator[AgentLog]:
    """A group-committing log on a fresh store."""
    app = open_log(url, group_commit=True)
    yield app
    app.close()


def agents(log: AgentLog, n: int) -> list[Agent]:
    """``n`` new agents, loaded (each thread then saves its own without reading)."""
    return [log.get(log.create_agent(f"a{i}", goal="g")) for i in range(n)]


def save_messages(log: AgentLog, agent: Agent, tag: str, n: int = 2) -> list[Recording[UUID]]:
    """Record ``n`` messages on the agent and save them together."""
    for part in range(n):
        agent.receive_user_message(f"{tag} part {part}")
    return log.save(agent)


def save_rounds(log: AgentLog, agent: Agent) -> None:
    """``SAVES`` saves of two messages each."""
    for k in range(SAVES):
        save_messages(log, agent, f"s{k}")


def id_and_version(recording: Recording[UUID]) -> tuple[UUID, int]:
    """The agent and version of a saved event."""
    event = recording.domain_event
    return event.originator_id, event.originator_version


def together(actions: list[Callable[[], Any]]) -> list[Any]:
    """Run each action in its own thread, all released at once; their results or errors."""
    results: list[Any] = [None] * len(actions)
    start = threading.Barrier(len(actions))

    def run(i: int) -> None:
        start.wait()
        try:
            results[i] = actions[i]()
        except Exception as e:
            results[i] = e

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(actions))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return results


def test_concurrent_saves_all_land_in_order_and_verify(log: AgentLog, url: str) -> None:
    crew = agents(log, THREADS)

    def saves(agent: Agent) -> list[list[tuple[int, UUID, int]]]:
        done = []
        for k in range(SAVES):
            saved = save_messages(log, agent, f"s{k}")
            # returned = committed: another connection sees the save's last event
            assert log.recorder.select_events(agent.id, gt=agent.version - 1)
            done.append([(r.notification.id, *id_and_version(r)) for r in saved])
        return done

    results = together([partial(saves, a) for a in crew])
    assert not [r for r in results if isinstance(r, Exception)]
    stored = log.recorder.select_notifications(None, 100_000)
    ids = [n.id for n in stored]
    assert len(ids) == THREADS * (2 + 2 * SAVES)
    if url.startswith("sqlite"):
        assert ids == list(range(1, len(ids) + 1))  # gapless
    where = {n.id: (i, n.originator_id, n.originator_version) for i, n in enumerate(stored)}
    for agent, per_save in zip(crew, results, strict=True):
        assert not isinstance(per_save, Exception), per_save
        for save in per_save:  # each save got its own ids; its events lie side by side
            first = where[save[0][0]][0]
            assert [where[n] for n, _, _ in save] == [
                (first + i, oid, version) for i, (_, oid, version) in enumerate(save)
            ]
        assert log.get(agent.id).version == 2 + 2 * SAVES
        texts = [getattr(e, "text", None) for e in log.events_of(agent.id)][2:]
        assert texts == [f"s{k} part {p}" for k in range(SAVES) for p in range(2)]
        assert verify_agent(log, agent.id).ok


# --- real commit counts ---------------------------------------------------------------


@contextmanager
def sqlite_commits(log: AgentLog) -> Iterator[list[str]]:
    """Every COMMIT the log's SQLite connections issue meanwhile (the sqlite3 trace)."""
    seen: list[str] = []
    pool = unwrapped(log.recorder).datastore.pool  # type: ignore[attr-defined]

    def trace(statement: str) -> None:
        if statement.strip().upper() == "COMMIT":
            seen.append(statement)

    create = pool._create_connection

    def traced() -> Any:
        conn = create()
        conn._sqlite_conn.set_trace_callback(trace)
        return conn

    for conn in [*pool._pool, *pool._in_use.values()]:
        conn._sqlite_conn.set_trace_callback(trace)
    for own in getattr(unwrapped(log.recorder), "connections", list)():  # SQLiteSaves' own
        own.set_trace_callback(trace)
    pool._create_connection = traced
    try:
        yield seen
    finally:
        pool._create_connection = create


def postgres_transactions(url: str) -> int:
    """How many transactions inserted the events stored (distinct ``xmin`` of the rows)."""
    with psycopg.connect(url.replace("+psycopg", "").split("?")[0]) as conn:
        row = conn.execute("SELECT count(DISTINCT xmin::text) FROM agentlog_events").fetchone()
        assert row is not None
        return int(row[0])


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_saves_share_commits(backend: str, tmp_path: Path) -> None:
    url = store_url(backend, tmp_path)
    log = open_log(url, group_commit=True, snapshot_interval=0)
    try:
        crew = agents(log, THREADS)
        before = postgres_transactions(url) if backend == "postgres" else 0
        with sqlite_commits(log) if backend == "sqlite" else _nothing() as commits:
            together([partial(save_rounds, log, a) for a in crew])
        saves = THREADS * SAVES
        made = len(commits) if backend == "sqlite" else postgres_transactions(url) - before
        assert 0 < made < saves / 2, f"{made} commits for {saves} saves"
        assert all(log.get(a.id).version == 2 + 2 * SAVES for a in crew)
    finally:
        log.close()


@contextmanager
def _nothing() -> Iterator[list[str]]:
    yield []


# --- a failing member fails alone ------------------------------------------------------


@contextmanager
def writes_held(log: AgentLog, url: str) -> Iterator[None]:
    """Block every insert into the log (another connection holds the write lock)."""
    if url.startswith("sqlite"):
        conn = sqlite3.connect(sqlite_path(url), isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            conn.rollback()
            conn.close()
        return
    with psycopg.connect(url.replace("+psycopg", "").split("?")[0]) as pg, pg.transaction():
        pg.execute("LOCK TABLE agentlog_events IN EXCLUSIVE MODE")
        yield


def queued(log: AgentLog, n: int) -> None:
    """Wait until ``n`` saves wait in the group commit's queue (behind a blocked one)."""
    recorder = log.recorder
    assert isinstance(recorder, GroupCommit)
    deadline = time.monotonic() + 20
    while recorder.waiting < n:
        assert time.monotonic() < deadline, f"{recorder.waiting} of {n} saves queued"
        time.sleep(0.01)


def leading(log: AgentLog) -> None:
    """Wait until a save leads a commit."""
    recorder = log.recorder
    assert isinstance(recorder, GroupCommit)
    deadline = time.monotonic() + 20
    while not recorder.committing:
        assert time.monotonic() < deadline, "no save leads"
        time.sleep(0.01)


def batched(log: AgentLog, url: str, blocker: Agent, members: list[Callable[[], Any]]) -> list[Any]:
    """Run ``members`` as one batch: while a first save is held at the database, they
    all queue behind it; released, the next leader commits them together."""
    with writes_held(log, url):
        first = threading.Thread(target=save_messages, args=(log, blocker, "blocker"))
        first.start()
        leading(log)  # the blocker leads, and waits on the lock
        threads_out: list[Any] = [None] * len(members)

        def run(i: int) -> None:
            try:
                threads_out[i] = members[i]()
            except Exception as e:
                threads_out[i] = e

        threads = [threading.Thread(target=run, args=(i,)) for i in range(len(members))]
        for t in threads:
            t.start()
        queued(log, len(members))
    first.join(timeout=30)
    for t in threads:
        t.join(timeout=30)
    return threads_out


def test_conflicting_member_fails_alone(log: AgentLog, url: str) -> None:
    blocker, racer, *others = agents(log, 6)
    stale = log.get(racer.id)
    save_messages(log, racer, "won")  # ``stale`` now conflicts with the stored agent
    outcomes = batched(
        log,
        url,
        blocker,
        [lambda: save_messages(log, stale, "lost")]
        + [partial(save_messages, log, a, "ok") for a in others],
    )
    assert isinstance(outcomes[0], IntegrityError), outcomes[0]
    assert all(isinstance(o, list) and len(o) == 2 for o in outcomes[1:]), outcomes
    assert [log.get(a.id).version for a in others] == [4] * len(others)
    assert log.get(racer.id).version == 4
    texts = [getattr(e, "text", None) for e in log.events_of(racer.id)][2:]
    assert texts == ["won part 0", "won part 1"]


def test_invalid_member_does_not_lose_the_others(log: AgentLog, url: str) -> None:
    blocker, *others = agents(log, 5)
    bad = [StoredEvent(uuid.uuid4(), 1, "bad", object())]  # type: ignore[arg-type]
    alone: Exception | None = None
    try:
        unwrapped(log.recorder).insert_events(bad)  # type: ignore[attr-defined]
    except Exception as e:
        alone = e
    assert alone is not None
    outcomes = batched(
        log,
        url,
        blocker,
        [lambda: log.recorder.insert_events(bad)]
        + [partial(save_messages, log, a, "ok") for a in others],
    )
    assert type(outcomes[0]) is type(alone), outcomes[0]
    assert all(isinstance(o, list) and len(o) == 2 for o in outcomes[1:]), outcomes
    assert [log.get(a.id).version for a in others] == [4] * len(others)
    assert all(verify_agent(log, a.id).ok for a in others)


def failing(errors: list[Exception], log: AgentLog, agent: Agent) -> None:
    """Save, expecting an error (kept in ``errors``)."""
    try:
        save_messages(log, agent, "blocked")
    except Exception as e:
        errors.append(e)


def test_an_outage_fails_the_batch_at_once(tmp_path: Path) -> None:
    url = store_url("sqlite", tmp_path)
    log = open_log(url, group_commit=True)
    try:
        blocker, *others = agents(log, 9)
        pool = unwrapped(log.recorder).datastore.pool  # type: ignore[attr-defined]
        pool.lock_timeout = LOCK_TIMEOUT_S  # the database stays locked past this
        own: list[sqlite3.Connection] = getattr(unwrapped(log.recorder), "connections", list)()
        for raw in [*(conn._sqlite_conn for conn in pool._pool), *own]:
            raw.execute(f"PRAGMA busy_timeout = {int(LOCK_TIMEOUT_S * 1000)}")
        with writes_held(log, url):
            started = time.monotonic()
            blocked: list[Exception] = []
            first = threading.Thread(target=failing, args=(blocked, log, blocker))
            first.start()
            leading(log)
            outcomes = together([partial(save_messages, log, a, "x") for a in others])
            elapsed = time.monotonic() - started
            first.join()
        assert all(isinstance(o, OperationalError) for o in [*blocked, *outcomes]), outcomes
        # the blocker's wait, then the batch's; not one more wait per member
        assert elapsed < 4 * LOCK_TIMEOUT_S < len(others) * LOCK_TIMEOUT_S
        assert [log.get(a.id).version for a in others] == [2] * len(others)
    finally:
        log.close()


# --- crash -------------------------------------------------------------------------------

CHILD = Path(__file__).parent / "group_commit_child.py"
ROUNDS, CHILD_THREADS, CHILD_AGENTS = 5, 8, 16


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_every_returned_save_survives_kill_9(backend: str, tmp_path: Path) -> None:
    url = store_url(backend, tmp_path)
    ledger = tmp_path / "returned.txt"
    setup = open_log(url)
    crew = [setup.create_agent(f"a{i}", goal="g") for i in range(CHILD_AGENTS)]
    setup.close()
    rng = random.Random(11)
    for _ in range(ROUNDS):
        child = subprocess.Popen(
            [sys.executable, str(CHILD), url, str(ledger), str(CHILD_THREADS), *map(str, crew)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert child.stdout is not None
        assert child.stdout.readline() == "ready\n"
        time.sleep(rng.uniform(0.1, 0.8))
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        child.stdout.close()
    returned = returned_versions(ledger)
    assert sum(len(v) for v in returned.values()) > ROUNDS * CHILD_THREADS  # it saved a lot
    log = open_log(url)
    try:
        for agent_id in crew:
            texts = [getattr(e, "text", None) for e in log.events_of(agent_id)][2:]
            assert len(texts) % PARTS == 0, "a save was stored in part"
            expected = [
                f"save {n} part {p}" for n in range(len(texts) // PARTS) for p in range(PARTS)
            ]
            assert texts == expected
            assert max(returned.get(agent_id, [0])) <= 2 + len(texts), "a returned save was lost"
            assert verify_agent(log, agent_id).ok
    finally:
        log.close()


def returned_versions(ledger: Path) -> dict[UUID, list[int]]:
    """The versions the child's saves returned with, by agent."""
    found: dict[UUID, list[int]] = {}
    for line in ledger.read_text().splitlines():
        agent_id, version = line.split()
        found.setdefault(UUID(agent_id), []).append(int(version))
    return found
