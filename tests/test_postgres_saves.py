"""PostgreSQL saves in one statement (``adapters/postgres_saves.py``) keep what the
library's six statements gave: the table lock held to the commit, a notification per
save, atomic batches, version conflicts as ``IntegrityError``; stores stay readable and
writable by the library's own recorder, and a store without the function saves the
library's way. A real PostgreSQL server."""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any
from uuid import UUID

import psycopg
import pytest
from eventsourcing.persistence import IntegrityError, OperationalError, StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder

from agentlog.adapters.postgres_saves import PostgresSaves, insert_function
from agentlog.adapters.storage import open_log
from agentlog.domain import AgentLog
from agentlog.projections.outages import is_outage

pytestmark = pytest.mark.postgres
TABLE = "agentlog_events"


@pytest.fixture
def log(postgres_url: str) -> Iterator[AgentLog]:
    """A log on a fresh PostgreSQL database."""
    app = open_log(postgres_url)
    yield app
    app.close()


def saves(log: AgentLog) -> PostgresSaves:
    recorder = log.recorder
    assert isinstance(recorder, PostgresSaves)
    return recorder


def libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def events(agent: UUID, versions: range, size: int = 700) -> list[StoredEvent]:
    return [StoredEvent(agent, v, f"t{v}", os.urandom(size)) for v in versions]


def stored(url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(libpq(url)) as conn:
        query = (
            f"SELECT notification_id, originator_id, originator_version, topic, state FROM {TABLE}"
        )
        return list(conn.execute(query + " ORDER BY notification_id").fetchall())


def test_a_save_stores_every_event_in_order_with_its_ids(log: AgentLog, postgres_url: str) -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    batch = events(a, range(1, 4)) + events(b, range(1, 3)) + events(a, range(4, 5), size=0)
    ids = saves(log).insert_events(batch)
    rows = stored(postgres_url)
    assert ids == [row[0] for row in rows]
    assert [(r[1], r[2], r[3], bytes(r[4])) for r in rows] == [
        (e.originator_id, e.originator_version, e.topic, e.state) for e in batch
    ]


def test_a_version_conflict_stores_nothing_of_the_save(log: AgentLog, postgres_url: str) -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    saves(log).insert_events(events(a, range(1, 3)))
    before = stored(postgres_url)
    with pytest.raises(IntegrityError):
        saves(log).insert_events(events(b, range(1, 4)) + events(a, range(2, 3)))
    assert stored(postgres_url) == before
    assert saves(log).insert_events(events(b, range(1, 2)))  # the connection is usable


def test_a_save_waits_for_the_events_tables_lock(log: AgentLog, postgres_url: str) -> None:
    """Taken before any notification id is given out, so ids commit in their order: a
    save waits for a transaction that writes the table (its ROW EXCLUSIVE lock, which
    a plain insert would not wait for) to end."""
    with psycopg.connect(libpq(postgres_url)) as holder:
        holder.execute(f"LOCK TABLE {TABLE} IN ROW EXCLUSIVE MODE")
        done: list[object] = []
        saving = threading.Thread(
            target=lambda: done.append(saves(log).insert_events(events(uuid.uuid4(), range(1, 2))))
        )
        saving.start()
        assert _waiting_for_lock(postgres_url)
        assert not done
        holder.commit()
    saving.join(timeout=30)
    assert done
    assert len(stored(postgres_url)) == 1


def _waiting_for_lock(url: str, seconds: float = 20.0) -> bool:
    """Whether a backend waits for a lock on the events table within ``seconds``."""
    query = (
        "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation"
        f" WHERE NOT l.granted AND c.relname = '{TABLE}'"
    )
    deadline = time.monotonic() + seconds
    with psycopg.connect(libpq(url), autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(query).fetchone()
            if row and row[0]:
                return True
            time.sleep(0.02)
    return False


def test_a_save_notifies_listeners(log: AgentLog, postgres_url: str) -> None:
    with psycopg.connect(libpq(postgres_url), autocommit=True) as listener:
        listener.execute(f"LISTEN {saves(log).channel_name}")
        saves(log).insert_events(events(uuid.uuid4(), range(1, 2)))
        heard = list(listener.notifies(timeout=10, stop_after=1))
    assert [n.channel for n in heard] == [saves(log).channel_name]


def test_a_save_notifies_after_its_commit_not_inside_its_transaction(
    log: AgentLog, postgres_url: str
) -> None:
    """PostgreSQL holds one cluster-wide lock from a notifying transaction's commit until
    that commit is flushed: a NOTIFY inside the save would make the saves of different
    shards wait for each other's flush. The insert function does not notify; the save
    does, after its commit, and listeners still hear of every save."""
    function = insert_function(saves(log).events_table_name)
    with psycopg.connect(libpq(postgres_url), autocommit=True) as conn:
        query = "SELECT pg_get_functiondef(to_regproc(%s))"
        (body,) = conn.execute(query, (function,)).fetchone() or ("",)
        assert "LOCK TABLE" in body
        assert "NOTIFY" not in body.upper()
        conn.execute(f"LISTEN {saves(log).channel_name}")
        agent = uuid.uuid4()
        for version in (1, 2):
            saves(log).insert_events(events(agent, range(version, version + 1)))
            (heard,) = conn.notifies(timeout=10, stop_after=1)
            assert heard.channel == saves(log).channel_name
            stored = f"SELECT max(originator_version) FROM {TABLE} WHERE originator_id = %s"
            assert conn.execute(stored, (agent,)).fetchone() == (version,)


def test_the_librarys_recorder_reads_and_writes_the_same_store(
    log: AgentLog, postgres_url: str
) -> None:
    library = PostgresApplicationRecorder(saves(log).datastore, events_table_name=TABLE)
    a = uuid.uuid4()
    saves(log).insert_events(events(a, range(1, 3)))
    library.insert_events(events(a, range(3, 5)))
    saves(log).insert_events(events(a, range(5, 6)))
    assert saves(log).select_events(a) == library.select_events(a)
    assert [n.originator_version for n in library.select_notifications(1, 10)] == [1, 2, 3, 4, 5]


def test_reads_of_every_shape_equal_the_librarys(log: AgentLog) -> None:
    library = PostgresApplicationRecorder(saves(log).datastore, events_table_name=TABLE)
    a = uuid.uuid4()
    saves(log).insert_events(events(a, range(1, 8)))
    shapes = itertools.product((None, 2), (None, 6), (False, True), (None, 3))
    for gt, lte, desc, limit in shapes:
        kwargs: dict[str, Any] = {"gt": gt, "lte": lte, "desc": desc, "limit": limit}
        assert saves(log).select_events(a, **kwargs) == library.select_events(a, **kwargs)


def test_pages_of_the_log_of_every_shape_equal_the_librarys(log: AgentLog) -> None:
    library = PostgresApplicationRecorder(saves(log).datastore, events_table_name=TABLE)
    a, b = uuid.uuid4(), uuid.uuid4()
    saves(log).insert_events(events(a, range(1, 5)))
    saves(log).insert_events([StoredEvent(b, 1, "other.topic", b"x")])
    saves(log).insert_events(events(a, range(5, 8)))
    shapes = itertools.product((None, 1, 3), (False, True), (None, 6), ((), ("other.topic",)))
    for start, inclusive, stop, topics in shapes:
        for limit in (1, 4, 100):
            args: tuple[Any, ...] = (start, limit, stop, topics)
            ours = saves(log).select_notifications(*args, inclusive_of_start=inclusive)
            theirs = library.select_notifications(*args, inclusive_of_start=inclusive)
            assert ours == theirs, (start, inclusive, stop, topics, limit)
    assert len(saves(log).select_notifications(None, 100)) == 8


def test_saves_and_reads_give_their_connections_back(log: AgentLog) -> None:
    recorder = saves(log)
    pool = recorder.datastore.pool
    a = uuid.uuid4()
    for version in range(1, pool.max_size * 2 + 2):
        recorder.insert_events(events(a, range(version, version + 1), size=10))
        assert len(recorder.select_events(a)) == version
        assert len(recorder.select_notifications(None, 1000)) == version
    with pytest.raises(IntegrityError):  # a failed statement gives its connection back too
        recorder.insert_events(events(a, range(1, 2)))
    stats = pool.get_stats()
    assert stats["pool_available"] == stats["pool_size"]


def test_a_store_without_the_function_saves_the_librarys_way(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    open_log(postgres_url).close()
    signature = f"{insert_function(TABLE)}(uuid[], bigint[], text[], bytea[], text)"
    with psycopg.connect(libpq(postgres_url)) as conn:
        conn.execute(f"DROP FUNCTION {signature}")
    monkeypatch.setenv("CREATE_TABLE", "n")  # as a role that may not create it opens it
    log = open_log(postgres_url)
    try:
        a = uuid.uuid4()
        assert saves(log).insert_events(events(a, range(1, 3)))
        assert not saves(log)._has_function()
        assert [e.originator_version for e in saves(log).select_events(a)] == [1, 2]
    finally:
        log.close()


def test_a_save_on_a_lost_connection_says_so_at_once(log: AgentLog, postgres_url: str) -> None:
    """The database out of reach reaches the caller (a worker says so and waits it out),
    not retried in silence; the next save, on a fresh connection, goes through."""
    recorder = saves(log)
    recorder.insert_events(events(uuid.uuid4(), range(1, 2)))  # a pooled connection
    with psycopg.connect(libpq(postgres_url), autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    agent = uuid.uuid4()
    with pytest.raises(OperationalError) as raised:
        recorder.insert_events(events(agent, range(1, 2)))
    assert is_outage(raised.value)
    for _ in range(recorder.datastore.pool.max_size + 1):  # dead pooled connections go
        with contextlib.suppress(OperationalError):
            recorder.insert_events(events(agent, range(1, 2)))
            break
    assert [e.originator_version for e in recorder.select_events(agent)] == [1]
