"""PostgreSQL saves and reads through libpq's prepared-statement calls
(``adapters/pg_prepared.py``) give what psycopg's cursor gave: the library's rows and
types (``text`` ids too), its errors, and a store that keeps working when the server
loses our statements (``DEALLOCATE ALL``) or the connection under them (a terminated
backend): nothing lost, nothing stored twice. A real PostgreSQL server."""

from __future__ import annotations

import itertools
import signal
import subprocess
import sys
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
from test_postgres_saves import libpq, saves

from agentlog.adapters import pg_prepared
from agentlog.adapters.pg_prepared import Statement, execute
from agentlog.adapters.postgres_saves import PostgresSaves
from agentlog.adapters.storage import open_log
from agentlog.domain import AgentLog
from agentlog.projections.outages import is_outage

pytestmark = pytest.mark.postgres
TABLE = "agentlog_events"


@pytest.fixture
def one_connection(postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[AgentLog]:
    """A log on a fresh database whose pool holds one connection: every call uses it."""
    monkeypatch.setenv("POSTGRES_POOL_SIZE", "1")
    monkeypatch.setenv("POSTGRES_MAX_OVERFLOW", "0")
    app = open_log(postgres_url)
    yield app
    app.close()


def events(agent: UUID | str, versions: range, topic: str = "t") -> list[StoredEvent]:
    return [StoredEvent(agent, v, f"{topic}{v}", bytes([v]) * v) for v in versions]


def on_the_pooled_connection(log: AgentLog, sql: str) -> list[tuple[Any, ...]]:
    """Run ``sql`` on the pool's one connection (the session our statements live in)."""
    with saves(log).datastore.pool.connection() as conn:
        cursor = conn.execute(sql)
        return [tuple(row.values()) for row in cursor.fetchall()] if cursor.description else []


def ours(log: AgentLog) -> list[str]:
    rows = on_the_pooled_connection(log, "SELECT name FROM pg_prepared_statements ORDER BY 1")
    return [name for (name,) in rows if name.startswith("agentlog_")]


def test_statements_are_prepared_once_per_connection_under_names_of_their_own(
    one_connection: AgentLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = saves(one_connection)
    library = PostgresApplicationRecorder(recorder.datastore, events_table_name=TABLE)
    prepared: list[bytes] = []
    prepare = pg_prepared._prepare

    def counted(conn: Any, statement: Statement, names: set[bytes]) -> None:
        prepared.append(statement.name)
        prepare(conn, statement, names)

    monkeypatch.setattr(pg_prepared, "_prepare", counted)
    a = uuid.uuid4()
    for version in range(1, 6):
        recorder.insert_events(events(a, range(version, version + 1)))
        assert recorder.select_events(a) == library.select_events(a)  # psycopg's _pg3_* too
        assert len(recorder.select_notifications(1, 10)) == version
    assert len(prepared) <= 4  # at most the insert, its notify and one read of each shape
    names = on_the_pooled_connection(one_connection, "SELECT name FROM pg_prepared_statements")
    assert {name.decode() for name in prepared} <= {name for (name,) in names}
    assert any(name.startswith("_pg3_") for (name,) in names)


def test_statements_the_server_lost_are_prepared_again(one_connection: AgentLog) -> None:
    recorder = saves(one_connection)
    a = uuid.uuid4()
    recorder.insert_events(events(a, range(1, 3)))
    assert len(recorder.select_events(a)) == 2
    assert len(recorder.select_notifications(None, 10)) == 2
    for forget in ("DEALLOCATE ALL", "DISCARD ALL", "DEALLOCATE ALL"):
        on_the_pooled_connection(one_connection, forget)
        assert ours(one_connection) == []
        versions = len(recorder.select_events(a))
        assert recorder.insert_events(events(a, range(versions + 1, versions + 2)))
        on_the_pooled_connection(one_connection, forget)
        assert recorder.insert_events(events(a, range(versions + 2, versions + 3)))
        assert len(recorder.select_notifications(None, 10)) == versions + 2
    assert [e.originator_version for e in recorder.select_events(a)] == list(range(1, 9))


def test_a_terminated_backend_loses_and_duplicates_nothing(
    one_connection: AgentLog, postgres_url: str
) -> None:
    """The broken connection goes back to the pool as bad (the pool replaces it): reads
    are retried on the next one; a save says the database was out of reach, and the
    save made again is stored once."""
    recorder = saves(one_connection)
    pool = recorder.datastore.pool
    a = uuid.uuid4()
    recorder.insert_events(events(a, range(1, 3)))
    terminate_backends(postgres_url)
    assert [e.originator_version for e in recorder.select_events(a)] == [1, 2]
    assert pool.get_stats().get("returns_bad", 0) == 1
    terminate_backends(postgres_url)
    assert [n.originator_version for n in recorder.select_notifications(None, 10)] == [1, 2]
    terminate_backends(postgres_url)
    with pytest.raises(OperationalError):
        recorder.insert_events(events(a, range(3, 4)))
    assert recorder.insert_events(events(a, range(3, 4)))
    with pytest.raises(IntegrityError):
        recorder.insert_events(events(a, range(3, 4)))
    assert pool.get_stats().get("returns_bad", 0) == 3
    assert [e.originator_version for e in recorder.select_events(a)] == [1, 2, 3]


def test_a_backend_terminated_under_a_save_stores_nothing_and_is_not_reused(
    one_connection: AgentLog, postgres_url: str
) -> None:
    """Killed while it waits for the events table's lock: the save hears of the outage,
    the broken connection is dropped by the pool, and the save made again is stored."""
    recorder = saves(one_connection)
    pool = recorder.datastore.pool
    a = uuid.uuid4()
    recorder.insert_events(events(a, range(1, 2)))
    with psycopg.connect(libpq(postgres_url)) as holder:
        holder.execute(f"LOCK TABLE {TABLE} IN ROW EXCLUSIVE MODE")
        raised: list[BaseException] = []
        saving = threading.Thread(target=lambda: save_catching(recorder, a, raised))
        saving.start()
        pid = waiting_for_the_lock(holder)
        holder.execute("SELECT pg_terminate_backend(%s, 10000)", [pid])
        saving.join(timeout=30)
        holder.rollback()
    assert not saving.is_alive()
    assert [type(e) for e in raised] == [OperationalError]
    assert is_outage(raised[0])
    assert pool.get_stats().get("returns_bad", 0) == 1
    assert recorder.insert_events(events(a, range(2, 3)))
    assert [e.originator_version for e in recorder.select_events(a)] == [1, 2]


def save_catching(recorder: PostgresSaves, agent: UUID, raised: list[BaseException]) -> None:
    try:
        recorder.insert_events(events(agent, range(2, 3)))
    except BaseException as e:  # the test looks at it
        raised.append(e)


def waiting_for_the_lock(conn: psycopg.Connection[Any], seconds: float = 20.0) -> int:
    """The backend that waits for a lock on the events table (polled: no timing)."""
    query = (
        "SELECT l.pid FROM pg_locks l JOIN pg_class c ON c.oid = l.relation"
        f" WHERE NOT l.granted AND c.relname = '{TABLE}'"
    )
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with psycopg.connect(conn.info.dsn, autocommit=True) as watcher:
            row = watcher.execute(query).fetchone()
        if row:
            return int(row[0])
        time.sleep(0.02)
    raise AssertionError("no save waited for the lock")


def terminate_backends(url: str) -> None:
    with psycopg.connect(libpq(url), autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


def test_a_version_conflict_in_a_batch_stores_nothing_and_raises_integrity_error(
    one_connection: AgentLog,
) -> None:
    recorder = saves(one_connection)
    a, b = uuid.uuid4(), uuid.uuid4()
    recorder.insert_events(events(a, range(1, 3)))
    with pytest.raises(IntegrityError) as raised:
        recorder.insert_events(events(b, range(1, 3)) + events(a, range(2, 3)))
    assert isinstance(raised.value.__cause__, psycopg.errors.UniqueViolation)
    assert recorder.select_events(b) == []
    assert len(recorder.select_notifications(None, 10)) == 2


@pytest.mark.parametrize("id_type", ["uuid", "text"])
def test_reads_of_every_shape_equal_the_librarys_for_either_id_type(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch, id_type: str
) -> None:
    monkeypatch.setenv("ORIGINATOR_ID_TYPE", id_type)
    log = open_log(postgres_url)
    try:
        recorder = saves(log)
        library = PostgresApplicationRecorder(recorder.datastore, events_table_name=TABLE)
        a, b = uuid.uuid4(), uuid.uuid4()
        agent = a if id_type == "uuid" else str(a)
        recorder.insert_events(events(agent, range(1, 5)))
        library.insert_events(events(b if id_type == "uuid" else str(b), range(1, 2), "x"))
        recorder.insert_events(events(agent, range(5, 8), "ü😀"))
        for gt, lte, desc, limit in itertools.product(
            (None, 2), (None, 6), (False, True), (None, 3)
        ):
            kwargs: dict[str, Any] = {"gt": gt, "lte": lte, "desc": desc, "limit": limit}
            found = recorder.select_events(agent, **kwargs)
            assert_same(found, library.select_events(agent, **kwargs))
        for start, inclusive, stop, topics in itertools.product(
            (None, 1, 3), (False, True), (None, 6), ((), ("x1",), ("x1", "t2"))
        ):
            for limit in (1, 4, 100):
                args: tuple[Any, ...] = (start, limit, stop, topics)
                page = recorder.select_notifications(*args, inclusive_of_start=inclusive)
                assert_same(page, library.select_notifications(*args, inclusive_of_start=inclusive))
    finally:
        log.close()


def assert_same(ours: Any, theirs: Any) -> None:
    """Equal, and of the same types (a text id is no UUID, a state is bytes)."""
    assert ours == theirs
    as_types = [{k: type(v) for k, v in vars(x).items()} for x in (*ours, *theirs)]
    assert all(types == as_types[0] for types in as_types)


def test_text_goes_as_utf8_whatever_the_connections_encoding(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PGCLIENTENCODING", "LATIN1")  # libpq's default for new connections
    log = open_log(postgres_url)
    try:
        a = uuid.uuid4()
        saves(log).insert_events([StoredEvent(a, 1, "ünï 😀", b"")])
        assert [e.topic for e in saves(log).select_events(a)] == ["ünï 😀"]
    finally:
        log.close()
    monkeypatch.delenv("PGCLIENTENCODING")
    with psycopg.connect(libpq(postgres_url)) as conn:
        assert conn.execute(f"SELECT topic FROM {TABLE}").fetchall() == [("ünï 😀",)]


def test_a_failed_statement_raises_psycopgs_error(postgres_url: str) -> None:
    with psycopg.connect(libpq(postgres_url), autocommit=True) as conn:
        divide = Statement(b"SELECT 1 / $1", [20])
        assert execute(conn, divide, [(2).to_bytes(8, "big")]).ntuples == 1
        with pytest.raises(psycopg.errors.DivisionByZero):
            execute(conn, divide, [(0).to_bytes(8, "big")])
        missing = Statement(b"SELECT * FROM no_such_table WHERE x = $1", [20])
        with pytest.raises(psycopg.errors.UndefinedTable):
            execute(conn, missing, [(0).to_bytes(8, "big")])
        assert execute(conn, divide, [(1).to_bytes(8, "big")]).ntuples == 1
        terminate_backends(postgres_url)  # a connection lost under the call
        with pytest.raises(psycopg.OperationalError):
            execute(conn, divide, [(1).to_bytes(8, "big")])
        assert conn.pgconn.transaction_status == psycopg.pq.TransactionStatus.UNKNOWN


_SAVE_ON_GO = """
import signal, sys, uuid
signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with it ignored
from eventsourcing.persistence import StoredEvent
from agentlog.adapters.storage import open_log
log = open_log(sys.argv[1])
print("ready", flush=True)
sys.stdin.readline()
try:
    log.recorder.insert_events([StoredEvent(uuid.UUID(sys.argv[2]), 1, "t", b"x")])
except KeyboardInterrupt:
    print("interrupted", flush=True)
    sys.exit(130)
print("saved", flush=True)
"""


def test_ctrl_c_cancels_a_save_that_waits_for_the_table_lock(postgres_url: str) -> None:
    """A save waits for the events table's lock without a limit (by default): Ctrl-C
    ends it there, as with psycopg's cursor, instead of waiting until the lock is free;
    the statement is cancelled in the server, so nothing is stored."""
    agent = uuid.uuid4()
    child = subprocess.Popen(
        [sys.executable, "-c", _SAVE_ON_GO, postgres_url, str(agent)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdin is not None
    assert child.stdout is not None
    try:
        assert child.stdout.readline() == "ready\n"
        with psycopg.connect(libpq(postgres_url)) as holder:
            holder.execute(f"LOCK TABLE {TABLE} IN EXCLUSIVE MODE")  # until this ends
            child.stdin.write("go\n")
            child.stdin.flush()
            waiting = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            with psycopg.connect(libpq(postgres_url), autocommit=True) as watcher:
                deadline = time.monotonic() + 30
                while not watcher.execute(waiting).fetchone()[0]:  # type: ignore[index]
                    assert time.monotonic() < deadline, "the save never waited for the lock"
                    time.sleep(0.02)
            child.send_signal(signal.SIGINT)
            out, err = child.communicate(timeout=15)  # the lock is still held
        assert (child.returncode, out) == (130, "interrupted\n"), err
        with psycopg.connect(libpq(postgres_url)) as reader:
            stored = f"SELECT count(*) FROM {TABLE} WHERE originator_id = %s"
            assert reader.execute(stored, (agent,)).fetchone() == (0,)
    finally:
        child.kill()
        child.communicate()  # its pipes closed too
