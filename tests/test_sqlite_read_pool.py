"""SQLite reads of notifications and the recorder's own read connections
(``adapters/sqlite_saves.py``): every shape of ``select_notifications`` equals the
library's; read connections are bounded like the library's pool (at most ``pool_size``
kept between reads, at most ``pool_size + max_overflow`` open at once, a reader beyond
that waits, then times out). Real SQLite files and real threads."""

from __future__ import annotations

import dataclasses
import itertools
import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from eventsourcing.persistence import ConnectionUnavailableError, StoredEvent
from eventsourcing.sqlite import SQLiteApplicationRecorder

from agentlog.adapters.group_commit import unwrapped
from agentlog.adapters.sqlite_saves import SQLiteSaves
from agentlog.adapters.storage import open_log
from agentlog.domain import AgentLog


@pytest.fixture
def log(tmp_path: Path) -> Iterator[AgentLog]:
    app = open_log(f"sqlite:///{tmp_path / 'agentlog.db'}")
    yield app
    app.close()


def saves(log: AgentLog) -> SQLiteSaves:
    recorder = unwrapped(log.recorder)
    assert isinstance(recorder, SQLiteSaves)
    return recorder


def events(agent: UUID, versions: range, topic: str = "t") -> list[StoredEvent]:
    return [StoredEvent(agent, v, f"{topic}{v % 3}", os.urandom(40)) for v in versions]


def test_notifications_of_every_shape_equal_the_librarys(log: AgentLog) -> None:
    recorder = saves(log)
    library = SQLiteApplicationRecorder(recorder.datastore)
    a, b = uuid.uuid4(), uuid.uuid4()
    recorder.insert_events(events(a, range(1, 6)))
    recorder.insert_events(events(b, range(1, 5)))
    recorder.insert_events(events(a, range(6, 9)))
    shapes = itertools.product(
        (None, 1, 4), (2, 100), (None, 9), ((), ("t1",), ("t0", "t2")), (False, True)
    )
    for start, limit, stop, topics, inclusive in shapes:
        kwargs: dict[str, Any] = {"stop": stop, "topics": topics, "inclusive_of_start": inclusive}
        ours = recorder.select_notifications(start, limit, **kwargs)
        assert ours == library.select_notifications(start, limit, **kwargs), (start, limit, kwargs)
        assert all(type(n.originator_id) is UUID for n in ours)
        theirs = library.select_notifications(start, limit, **kwargs)
        assert [hash(n) for n in ours] == [hash(n) for n in theirs]
        assert [repr(n) for n in ours] == [repr(n) for n in theirs]
    with pytest.raises(dataclasses.FrozenInstanceError):
        recorder.select_notifications(1, 1)[0].id = 5  # type: ignore[misc]
    everything = recorder.select_notifications(1, 100)
    assert [n.id for n in everything] == list(range(1, 13))
    assert [(n.originator_id, n.originator_version) for n in everything[5:9]] == [
        (b, v) for v in range(1, 5)
    ]


def test_an_agents_id_is_made_once(log: AgentLog) -> None:
    """The same agent's notifications share one UUID object (made once per id)."""
    recorder = saves(log)
    a = uuid.uuid4()
    recorder.insert_events(events(a, range(1, 4)))
    first = recorder.select_notifications(1, 10)
    again = recorder.select_notifications(2, 10)
    assert len({id(n.originator_id) for n in [*first, *again]}) == 1
    assert first[0].originator_id == a


def test_reads_keep_at_most_the_pool_size_of_connections(log: AgentLog) -> None:
    """Many readers at once may open up to the cap; afterwards only ``pool_size`` stay."""
    recorder = saves(log)
    pool = recorder.datastore.pool
    recorder.insert_events(events(uuid.uuid4(), range(1, 3)))
    cap = pool.pool_size + pool.max_overflow
    recorder.close()  # no idle connection left: each reader opens its own
    inside = threading.Barrier(cap + 1)
    release = threading.Event()
    seen: list[int] = []
    real_connect = recorder._connect

    def slow_connect(*, writer: bool) -> Any:
        conn = real_connect(writer=writer)
        if not writer:
            inside.wait(timeout=30)  # every reader holds a connection at once
            release.wait(timeout=30)
        return conn

    recorder._connect = slow_connect  # type: ignore[method-assign]
    readers = [
        threading.Thread(target=lambda: seen.append(len(recorder.select_notifications(1, 10))))
        for _ in range(cap)
    ]
    for t in readers:
        t.start()
    inside.wait(timeout=30)
    release.set()
    for t in readers:
        t.join(timeout=30)
    recorder._connect = real_connect  # type: ignore[method-assign]
    assert seen == [2] * cap
    assert len(recorder.connections()) == pool.pool_size  # the others were closed
    assert all(conn.execute("SELECT 1").fetchone() == (1,) for conn in recorder.connections())


def test_a_reader_past_the_cap_waits_then_times_out(log: AgentLog) -> None:
    """With every read connection in use, one more reader waits for one to come back,
    and fails (``ConnectionUnavailableError``) once the pool's timeout has passed. (An
    agent's events are read on the writer's connection when no save holds it: here one
    does, so they wait for a read connection like any read.)"""
    recorder = saves(log)
    pool = recorder.datastore.pool
    a = uuid.uuid4()
    recorder.insert_events(events(a, range(1, 3)))
    cap = pool.pool_size + pool.max_overflow
    for _ in range(cap):  # every read slot taken, as by readers in the middle of a read
        assert recorder._reading.acquire(timeout=1)
    pool.pool_timeout = 0.2
    with pytest.raises(ConnectionUnavailableError):
        recorder.select_notifications(1, 10)
    with pool._writer_lock:  # a save under way
        with pytest.raises(ConnectionUnavailableError):
            recorder.select_events(a)
        done: list[int] = []
        waiting = threading.Thread(target=lambda: done.append(len(recorder.select_events(a))))
        pool.pool_timeout = 30
        waiting.start()
        recorder._reading.release()  # one reader is done: the waiting one goes on
        waiting.join(timeout=30)
    assert done == [2]
    for _ in range(cap - 1):
        recorder._reading.release()


def test_an_agents_events_are_read_on_the_writers_connection_unless_a_save_holds_it(
    log: AgentLog,
) -> None:
    """The writer's connection has the pages this process just wrote in its cache (a
    read connection's cache is emptied by every save): an agent's events are read there
    when no save holds it, and on a read connection, without waiting, when one does."""
    recorder = saves(log)
    a = uuid.uuid4()
    stored = events(a, range(1, 6))
    recorder.insert_events(stored[:3])
    recorder.close()  # no connection left: the next save opens the writer's again
    recorder.insert_events(stored[3:])
    assert recorder.select_events(a, gt=2) == stored[2:]
    assert recorder._readers == []  # no read connection was opened
    with recorder.datastore.pool._writer_lock:  # a save under way: the read goes on beside it
        assert recorder.select_events(a, gt=2) == stored[2:]
    assert len(recorder._readers) == 1
    assert recorder.select_events(a, desc=True, limit=2) == stored[:2:-1][:2]


def test_a_connection_that_failed_is_not_kept(log: AgentLog) -> None:
    recorder = saves(log)
    recorder.insert_events(events(uuid.uuid4(), range(1, 3)))
    recorder.select_notifications(1, 10)
    (reader,) = recorder._readers
    reader.close()  # a broken connection: the read fails and the connection goes
    with pytest.raises(Exception):  # noqa: B017, PT011 - the library's error for it
        recorder.select_notifications(1, 10)
    assert reader not in recorder.connections()
    assert len(recorder.select_notifications(1, 10)) == 2


def test_a_read_finishing_after_close_does_not_keep_its_connection(log: AgentLog) -> None:
    """Closing the recorder while a read runs: the read's connection is closed after it."""
    recorder = saves(log)
    recorder.insert_events(events(uuid.uuid4(), range(1, 3)))
    recorder.close()  # no idle connection: the read opens one
    real_connect = recorder._connect

    def connect_then_close(*, writer: bool) -> Any:
        conn = real_connect(writer=writer)
        recorder.close()  # meanwhile, the store closes this recorder's connections
        return conn

    recorder._connect = connect_then_close  # type: ignore[method-assign]
    assert len(recorder.select_notifications(1, 10)) == 2
    recorder._connect = real_connect  # type: ignore[method-assign]
    assert recorder.connections() == []
