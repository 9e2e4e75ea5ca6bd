"""Saves and reads on SQLite with less Python per call.

eventsourcing's SQLite recorder runs every save and every read through two nested
context managers (the datastore's transaction and its connection), and the connection
pool's semaphore, conditions and bookkeeping on the way in and out, then wraps the
``sqlite3`` cursor and reads rows by column name. On a worker's step (one read of an
agent's new events, one save) that was about a quarter of the step's CPU outside SQLite.

:class:`SQLiteSaves` is the library's recorder (same tables, rows, statements and
notification ids) doing ``insert_events`` and ``select_events`` directly on ``sqlite3``
connections made as the library's pool makes them (same file, URI, busy timeout,
WAL, autocommit), but keeping their compiled statements (the library's keep one):

- a save takes the pool's own writer lock (so it still excludes the library's writers
  in this process, snapshots included, and waits for it no longer than the pool would),
  then ``BEGIN`` (deferred, as the library's), one ``INSERT`` per event (its rowid is its
  notification id), ``COMMIT``; anything failing rolls it all back and raises the
  library's exception for it (a version conflict: ``IntegrityError``, nothing stored);
- a read (``select_events``, ``select_notifications``) is one ``SELECT`` (rendered once
  per shape) on a connection of its own, its rows as tuples; agent ids are made into
  UUID objects once per id (a follower reads each agent's id thousands of times).

Read connections are bounded as the library's pool bounds its own: at most
``pool_size`` are kept open between reads, and at most ``pool_size + max_overflow``
are open at once; a reader beyond that waits for one (up to ``pool_timeout``, then
``ConnectionUnavailableError``), and a connection opened past ``pool_size`` is closed
when its read is done.

Durability is SQLite's default, as before (the library sets no ``synchronous``).
Everything else (notifications, tracking, tables, the pool) is the library's. A store
in memory (``mode=memory``, where readers and writers must exclude each other) and a
save with tracking go the library's way.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from queue import Empty, SimpleQueue
from typing import Any
from uuid import UUID

from eventsourcing.persistence import (
    ConnectionPoolClosedError,
    ConnectionUnavailableError,
    DatabaseError,
    DataError,
    IntegrityError,
    InterfaceError,
    InternalError,
    Notification,
    NotSupportedError,
    OperationalError,
    PersistenceError,
    ProgrammingError,
    StoredEvent,
)
from eventsourcing.sqlite import (
    SQLITE3_DEFAULT_LOCK_TIMEOUT,
    SQLiteApplicationRecorder,
    SQLiteDatastore,
)

from agentlog.domain.recordings import notification, stored_event

__all__ = ["TOPIC", "SQLiteSaves"]
TOPIC = "agentlog.adapters.sqlite_saves:SQLiteSaves"
"""What ``APPLICATION_RECORDER_TOPIC`` names to make eventsourcing's factory use it."""

_ERRORS: tuple[tuple[type[sqlite3.Error], type[PersistenceError]], ...] = (
    (sqlite3.InterfaceError, InterfaceError),
    (sqlite3.DataError, DataError),
    (sqlite3.OperationalError, OperationalError),
    (sqlite3.IntegrityError, IntegrityError),
    (sqlite3.InternalError, InternalError),
    (sqlite3.ProgrammingError, ProgrammingError),
    (sqlite3.NotSupportedError, NotSupportedError),
    (sqlite3.DatabaseError, DatabaseError),
)
"""How the library turns ``sqlite3`` errors into its own (first match wins)."""
STATEMENTS_KEPT = 128
"""Compiled statements each of this recorder's connections keeps (``sqlite3``'s default)."""
IDS_KEPT = 100_000
"""Agent ids kept as UUID objects, made once per id (the cache is emptied when full)."""


class SQLiteSaves(SQLiteApplicationRecorder):
    """eventsourcing's SQLite application recorder, with lean saves and reads."""

    def __init__(self, datastore: SQLiteDatastore, events_table_name: str = "stored_events"):
        super().__init__(datastore, events_table_name)
        pool = datastore.pool
        self._lean = not pool.is_sqlite_memory_mode and hasattr(pool, "_writer_lock")
        self._writer: sqlite3.Connection | None = None
        self._readers: list[sqlite3.Connection] = []  # idle, at most pool_size
        self._keep_readers = max(1, pool.pool_size)
        self._reading = ReadSlots(max(1, pool.pool_size + pool.max_overflow))
        self._selects: dict[tuple[bool, bool, bool, bool], str] = {}
        self._notification_selects: dict[tuple[bool, bool, bool, int], str] = {}
        self._ids: dict[str, UUID] = {}
        self._generation = 0  # moved on by close: connections of before are not kept
        self._uuids = datastore.originator_id_type == "uuid"
        close_pool = datastore.close

        def close() -> None:  # the store closing closes this recorder's connections too
            self.close()
            close_pool()

        datastore.close = close  # type: ignore[method-assign]

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        """Store the events in one transaction; their notification ids, in order."""
        if not stored_events or not self._lean or any(v is not None for v in kwargs.values()):
            return super().insert_events(stored_events, **kwargs)  # tracking: the library's
        pool = self.datastore.pool
        if pool._closed:
            raise ConnectionPoolClosedError
        lock = pool._writer_lock
        if not lock.acquire(timeout=pool.pool_timeout):
            raise ConnectionUnavailableError("Timed out waiting for return of writer")
        try:
            conn = self._writer or self._connect(writer=True)
            statement = self.insert_events_statement
            ids: list[int] = []
            try:
                conn.execute("BEGIN")
                try:
                    for e in stored_events:
                        oid = e.originator_id
                        ids.append(
                            conn.execute(
                                statement,
                                (
                                    oid.hex if isinstance(oid, UUID) else oid,
                                    e.originator_version,
                                    e.topic,
                                    e.state,
                                ),
                            ).lastrowid
                            or 0
                        )
                    conn.commit()
                except BaseException:
                    conn.rollback()
                    raise
            except sqlite3.Error as error:
                raise _converted(error) from error
            return ids
        finally:
            lock.release()

    def select_events(
        self,
        originator_id: UUID | str,
        *,
        gt: int | None = None,
        lte: int | None = None,
        desc: bool = False,
        limit: int | None = None,
    ) -> Sequence[StoredEvent]:
        """The library's query (same rows, same order), rendered once per shape."""
        if not self._lean:
            return super().select_events(originator_id, gt=gt, lte=lte, desc=desc, limit=limit)
        shape = (gt is not None, lte is not None, desc, limit is not None)
        statement = self._selects.get(shape)
        if statement is None:
            statement = self._selects[shape] = self._select(*shape)
        key = originator_id.hex if isinstance(originator_id, UUID) else originator_id
        params = [v for v in (key, gt, lte, limit) if v is not None]
        rows = self._read_own(statement, params)
        if self._uuids:  # every row is this one aggregate's: its id made once
            oid = originator_id if isinstance(originator_id, UUID) else UUID(originator_id)
            return [_row(oid, r) for r in rows]
        return [_row(r[0], r) for r in rows]

    def select_notifications(
        self,
        start: int | None,
        limit: int,
        stop: int | None = None,
        topics: Sequence[str] = (),
        *,
        inclusive_of_start: bool = True,
    ) -> Sequence[Notification]:
        """The library's query (same rows, same order), rendered once per shape; each
        agent id made into a ``UUID`` once."""
        if not self._lean:
            return super().select_notifications(
                start, limit, stop, topics, inclusive_of_start=inclusive_of_start
            )
        shape = (start is not None, inclusive_of_start, stop is not None, len(topics))
        statement = self._notification_selects.get(shape)
        if statement is None:
            statement = self._notification_selects[shape] = self._select_notifications(*shape)
        params: list[Any] = [v for v in (start, stop) if v is not None]
        params += topics
        params.append(limit)
        rows = self._read(statement, params)
        if not self._uuids:
            return [Notification(r[1], r[2], r[3], r[4], r[0]) for r in rows]
        ids = self._ids
        if len(ids) >= IDS_KEPT:
            ids.clear()
        notifications: list[Notification] = []
        add = notifications.append
        for r in rows:
            oid = ids.get(key := r[1])
            if oid is None:
                oid = ids[key] = UUID(key)
            fields = {"originator_id": oid, "originator_version": r[2], "topic": r[3]}
            fields["state"], fields["id"] = r[4], r[0]
            add(notification(fields))  # without the frozen __init__ (one per event)
        return notifications

    def _select_notifications(self, start: bool, inclusive: bool, stop: bool, topics: int) -> str:
        where = [
            *(["rowid>=?" if inclusive else "rowid>?"] if start else []),
            *(["rowid<=?"] if stop else []),
            *([f"topic IN ({','.join('?' * topics)})"] if topics else []),
        ]
        return (
            "SELECT rowid, originator_id, originator_version, topic, state "
            f"FROM {self.events_table_name} "
            + (f"WHERE {' AND '.join(where)} " if where else "")
            + "ORDER BY rowid LIMIT ?"
        )

    def _read_own(self, statement: str, params: Sequence[Any]) -> list[Any]:
        """The statement's rows, read on this recorder's writer connection when no save
        holds it (it waits for none), else on a read connection (:meth:`_read`).

        SQLite empties a connection's page cache when another connection changed the
        file: a read connection reads the pages of an agent's newest events back after
        every save of this process, the writer's has them (it wrote them). Measured after
        a one-event save: ~25% less CPU per read of an agent's last rows."""
        writer = self._writer
        if writer is not None:
            pool = self.datastore.pool
            lock = pool._writer_lock
            if lock.acquire(False):
                try:
                    if writer is self._writer and not pool._closed:
                        try:
                            return writer.execute(statement, params).fetchall()
                        except sqlite3.Error as error:
                            raise _converted(error) from error
                finally:
                    lock.release()
        return self._read(statement, params)

    def _read(self, statement: str, params: Sequence[Any]) -> list[Any]:
        """The statement's rows, read on a connection of this recorder's own: an idle
        one, or a new one while fewer than the cap are open (else wait for one)."""
        pool = self.datastore.pool
        if pool._closed:
            raise ConnectionPoolClosedError
        slots = self._reading
        try:
            slots.get(True, pool.pool_timeout)
        except Empty:
            raise ConnectionUnavailableError("Timed out waiting for a read connection") from None
        generation = self._generation
        try:
            try:
                conn = self._readers.pop()
            except IndexError:
                conn = self._connect(writer=False)
            try:
                rows = conn.execute(statement, params).fetchall()
            except sqlite3.Error as error:
                conn.close()  # in an unknown state: not given out again
                raise _converted(error) from error
            if len(self._readers) < self._keep_readers and generation == self._generation:
                self._readers.append(conn)
            else:
                conn.close()  # past the connections kept: a reader's own, for this read
            return rows
        finally:
            slots.put(None)

    def _select(self, gt: bool, lte: bool, desc: bool, limit: bool) -> str:
        statement = self.select_events_statement
        if gt:
            statement += "AND originator_version>? "
        if lte:
            statement += "AND originator_version<=? "
        statement += (
            "ORDER BY originator_version DESC " if desc else "ORDER BY originator_version ASC "
        )
        if limit:
            statement += "LIMIT ? "
        return statement

    def _connect(self, *, writer: bool) -> sqlite3.Connection:
        """A connection made as the library's pool makes its own (file, URI, busy
        timeout, WAL, autocommit), with rows as tuples and a statement cache: the
        library's ``cached_statements=True`` is a cache of *one* statement, so a save
        (``BEGIN``, ``INSERT``) or reads of two shapes compiled each statement again."""
        pool = self.datastore.pool
        if pool.closed:
            raise InterfaceError("the store is closed")
        if not pool.is_journal_mode_wal:  # the pool's first connection turns WAL on
            pool._create_connection()._sqlite_conn.close()
        try:
            conn = sqlite3.connect(
                database=pool.db_name,
                uri=True,
                check_same_thread=False,
                isolation_level=None,  # autocommit, as the library's
                cached_statements=STATEMENTS_KEPT,
                timeout=pool.lock_timeout or SQLITE3_DEFAULT_LOCK_TIMEOUT,
            )
        except (sqlite3.Error, TypeError) as e:
            raise InterfaceError(e) from e
        if writer:
            self._writer = conn
        return conn

    def connections(self) -> list[sqlite3.Connection]:
        """This recorder's own open connections (the writer's, then idle readers')."""
        return [*([self._writer] if self._writer else []), *self._readers]

    def close(self) -> None:
        """Close this recorder's own connections (the pool's are the datastore's)."""
        self._generation += 1
        readers, self._readers = self._readers, []
        writer, self._writer = self._writer, None
        for conn in [*readers, *([writer] if writer else [])]:
            conn.close()


class ReadSlots(SimpleQueue[None]):
    """At most ``n`` reads at once: a counting semaphore whose take and give back are
    one C call each (``threading.BoundedSemaphore`` runs a Python condition both ways,
    ~3 µs a read). A read takes a slot (``get``, waiting up to the pool's timeout) and
    puts it back (``put(None)``); ``acquire``/``release`` say the same in a lock's words."""

    def __init__(self, n: int) -> None:
        super().__init__()
        for _ in range(n):
            self.put(None)

    def acquire(self, timeout: float | None = None) -> bool:
        """Take a slot, waiting up to ``timeout`` seconds (None: as long as it takes)."""
        try:
            self.get(True, timeout)
        except Empty:
            return False
        return True

    def release(self) -> None:
        """Give a slot back."""
        self.put(None)


def _row(originator_id: UUID | str, row: Any) -> StoredEvent:
    """The stored event of a row (id, version, topic, state), with this id."""
    return stored_event(
        {
            "originator_id": originator_id,
            "originator_version": row[1],
            "topic": row[2],
            "state": row[3],
        }
    )


def _converted(error: sqlite3.Error) -> PersistenceError:
    for raw, ours in _ERRORS:
        if isinstance(error, raw):
            return ours(error)
    return PersistenceError(error)
