"""SQLite saves and reads with less Python (``adapters/sqlite_saves.py``) keep what the
library's recorder gave: every event of a save in order with its notification id, a
version conflict as ``IntegrityError`` storing nothing, the writer lock and the busy
timeout, connections set up as the library's; stores stay readable and writable by the
library's own recorder, and every read equals the library's. Real SQLite files."""

from __future__ import annotations

import itertools
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from eventsourcing.persistence import (
    ConnectionPoolClosedError,
    IntegrityError,
    OperationalError,
    StoredEvent,
)
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteDatastore

from agentlog.adapters.group_commit import unwrapped
from agentlog.adapters.sqlite_saves import SQLiteSaves
from agentlog.adapters.storage import open_log
from agentlog.domain import AgentLog
from agentlog.projections.outages import is_outage


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "agentlog.db"


@pytest.fixture
def log(path: Path) -> Iterator[AgentLog]:
    """A log on a fresh SQLite file."""
    app = open_log(f"sqlite:///{path}")
    yield app
    app.close()


def saves(log: AgentLog) -> SQLiteSaves:
    recorder = unwrapped(log.recorder)
    assert isinstance(recorder, SQLiteSaves)
    return recorder


def events(agent: UUID, versions: range, size: int = 300) -> list[StoredEvent]:
    return [StoredEvent(agent, v, f"t{v}", os.urandom(size)) for v in versions]


def stored(path: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as db:
        query = "SELECT rowid, originator_id, originator_version, topic, state FROM stored_events"
        return db.execute(query + " ORDER BY rowid").fetchall()


def test_a_save_stores_every_event_in_order_with_its_ids(log: AgentLog, path: Path) -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    saves(log).insert_events(events(a, range(1, 2)))
    batch = events(a, range(2, 4)) + events(b, range(1, 3)) + events(a, range(4, 5), size=0)
    ids = saves(log).insert_events(batch)
    rows = stored(path)[1:]
    assert ids == [row[0] for row in rows] == [2, 3, 4, 5, 6]
    assert [(UUID(r[1]), r[2], r[3], r[4]) for r in rows] == [
        (e.originator_id, e.originator_version, e.topic, e.state) for e in batch
    ]


def test_a_version_conflict_stores_nothing_of_the_save(log: AgentLog, path: Path) -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    saves(log).insert_events(events(a, range(1, 3)))
    before = stored(path)
    with pytest.raises(IntegrityError):
        saves(log).insert_events(events(b, range(1, 4)) + events(a, range(2, 3)))
    assert stored(path) == before
    assert saves(log).insert_events(events(b, range(1, 2))) == [3]  # usable, no gap


def test_reads_of_every_shape_equal_the_librarys(log: AgentLog) -> None:
    library = SQLiteApplicationRecorder(saves(log).datastore)
    a = uuid.uuid4()
    saves(log).insert_events(events(a, range(1, 8)))
    saves(log).insert_events(events(uuid.uuid4(), range(1, 3)))
    shapes = itertools.product((None, 2), (None, 6), (False, True), (None, 3))
    for gt, lte, desc, limit in shapes:
        kwargs: dict[str, Any] = {"gt": gt, "lte": lte, "desc": desc, "limit": limit}
        ours = saves(log).select_events(a, **kwargs)
        assert ours == library.select_events(a, **kwargs), kwargs
        assert all(type(e.originator_id) is UUID for e in ours)
    assert saves(log).select_events(str(a)) == library.select_events(str(a))
    assert saves(log).select_events(uuid.uuid4()) == []


def test_the_librarys_recorder_reads_and_writes_the_same_file(log: AgentLog, path: Path) -> None:
    """Another process's recorder is the library's own (an older agentlog, say)."""
    library = SQLiteApplicationRecorder(SQLiteDatastore(str(path)))
    a = uuid.uuid4()
    assert saves(log).insert_events(events(a, range(1, 3))) == [1, 2]
    assert library.insert_events(events(a, range(3, 5))) == [3, 4]
    assert saves(log).insert_events(events(a, range(5, 6))) == [5]
    assert saves(log).select_events(a) == library.select_events(a)
    with pytest.raises(IntegrityError):
        library.insert_events(events(a, range(5, 6)))
    assert [n.originator_version for n in library.select_notifications(1, 10)] == [1, 2, 3, 4, 5]
    library.datastore.close()


def test_a_save_waits_for_the_writer_of_this_process(log: AgentLog) -> None:
    """The library's pool lets one writer at a time in a process: its writers (snapshots)
    and these saves take turns."""
    pool = saves(log).datastore.pool
    held = pool.get_connection(is_writer=True)
    done: list[object] = []
    saving = threading.Thread(
        target=lambda: done.append(saves(log).insert_events(events(uuid.uuid4(), range(1, 2))))
    )
    saving.start()
    time.sleep(0.3)
    assert not done
    pool.put_connection(held)
    saving.join(timeout=10)
    assert done == [[1]]


def test_a_save_waits_for_another_writer_then_times_out(log: AgentLog, path: Path) -> None:
    """The busy timeout: a save waits for a write lock held elsewhere (another process),
    and fails as an outage (the worker waits it out) once the lock is held past it."""
    saves(log).insert_events(events(uuid.uuid4(), range(1, 2)))  # its connection made
    for conn in saves(log).connections():
        conn.execute("PRAGMA busy_timeout = 1500")
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    done: list[object] = []
    saving = threading.Thread(
        target=lambda: done.append(saves(log).insert_events(events(uuid.uuid4(), range(1, 2))))
    )
    saving.start()
    time.sleep(0.3)
    assert not done
    other.execute("COMMIT")
    saving.join(timeout=10)
    assert done == [[2]]
    other.execute("BEGIN IMMEDIATE")
    started = time.monotonic()
    with pytest.raises(OperationalError) as caught:
        saves(log).insert_events(events(uuid.uuid4(), range(1, 2)))
    assert time.monotonic() - started >= 1.0
    assert is_outage(caught.value)
    other.execute("ROLLBACK")
    assert saves(log).insert_events(events(uuid.uuid4(), range(1, 2))) == [3]


def test_connections_are_set_up_as_the_librarys(log: AgentLog) -> None:
    """Same durability (journal mode, synchronous) and busy timeout as the pool's own."""
    recorder = saves(log)
    recorder.insert_events(events(uuid.uuid4(), range(1, 2)))
    recorder.select_events(uuid.uuid4())
    pool = recorder.datastore.pool
    library = pool.get_connection()
    try:
        pragmas = ("journal_mode", "synchronous", "busy_timeout")
        theirs = [library._sqlite_conn.execute(f"PRAGMA {p}").fetchone()[0] for p in pragmas]
        assert theirs[0] == "wal"
        assert len(recorder.connections()) == 2
        for conn in recorder.connections():
            assert [conn.execute(f"PRAGMA {p}").fetchone()[0] for p in pragmas] == theirs
            assert conn.isolation_level is None  # autocommit: BEGIN/COMMIT are ours
    finally:
        pool.put_connection(library)


def test_closing_the_log_closes_its_connections(path: Path) -> None:
    app = open_log(f"sqlite:///{path}")
    recorder = saves(app)
    a = uuid.uuid4()
    recorder.insert_events(events(a, range(1, 2)))
    recorder.select_events(a)
    own = recorder.connections()
    app.close()
    assert recorder.connections() == []
    for conn in own:
        with pytest.raises(sqlite3.ProgrammingError):
            conn.execute("SELECT 1")
    with pytest.raises(ConnectionPoolClosedError):
        recorder.insert_events(events(a, range(2, 3)))
    with pytest.raises(ConnectionPoolClosedError):
        recorder.select_events(a)


def test_group_commit_batches_through_it(path: Path) -> None:
    app = open_log(f"sqlite:///{path}", group_commit=True)
    try:
        recorder = saves(app)
        agents = [uuid.uuid4() for _ in range(8)]
        ids: list[list[int]] = []

        def save(agent: UUID) -> None:
            for v in range(1, 6):
                ids.append(list(app.recorder.insert_events(events(agent, range(v, v + 1))) or []))

        threads = [threading.Thread(target=save, args=(a,)) for a in agents]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(i for some in ids for i in some) == list(range(1, 41))
        assert all(len(recorder.select_events(a)) == 5 for a in agents)
    finally:
        app.close()


def test_another_log_on_the_file_reads_through_it(log: AgentLog, path: Path) -> None:
    a = uuid.uuid4()
    saves(log).insert_events(events(a, range(1, 4)))
    reader = open_log(f"sqlite:///{path}", create=False)
    try:
        assert saves(reader).select_events(a, gt=1) == saves(log).select_events(a, gt=1)
    finally:
        reader.close()


def test_an_agents_saves_and_loads_go_the_lean_way(
    log: AgentLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The application passes ``tracking=None`` along with the events: still lean."""

    def refused(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the library's way")

    monkeypatch.setattr(SQLiteApplicationRecorder, "insert_events", refused)
    monkeypatch.setattr(SQLiteApplicationRecorder, "select_events", refused)
    agent = log.get(log.create_agent("lean", goal="g"))
    agent.receive_user_message("hello")
    log.save(agent)
    assert log.get(agent.id).version == agent.version
