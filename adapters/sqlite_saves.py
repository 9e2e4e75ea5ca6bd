"""Saves and reads on SQLite with less Python per call.

eventsourcing's SQLite recorder runs every save and every read through two nested
context managers (the datastore's transaction and its connection), and the connection
pool's semaphore, conditions and bookkeeping on the way in and out, then wraps the
``sqlite3`` cursor and reads rows by column name. On a worker's step (one read of an
agent's new events, one save) that was about a quarter of the step's CPU outside SQLite.

:class:`SQLiteSaves` is the library's recorder (same tables, rows, statements and
notification ids) doing ``insert_events`` and ``select_events`` directly on ``sqlite3``
connections made exactly as the library's pool makes them (same file, URI, busy
timeout, WAL, autocommit):

- a save takes the pool's own writer lock (so it still excludes the library's writers
  in this process, snapshots included, and waits for it no longer than the pool would),
  then ``BEGIN`` (deferred, as the library's), one ``INSERT`` per event (its rowid is its
  notification id), ``COMMIT``; anything failing rolls it all back and raises the
  library's exception for it (a version conflict: ``IntegrityError``, nothing stored);
- a read is one ``SELECT`` (rendered once per shape) on a connection taken from a free
  list, its rows as tuples.

Durability is SQLite's default, as before (the library sets no ``synchronous``).
Everything else (notifications, tracking, tables, the pool) is the library's. A store
in memory (``mode=memory``, where readers and writers must exclude each other) and a
save with tracking go the library's way.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
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
    NotSupportedError,
    OperationalError,
    PersistenceError,
    ProgrammingError,
    StoredEvent,
)
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteDatastore

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


class SQLiteSaves(SQLiteApplicationRecorder):
    """eventsourcing's SQLite application recorder, with lean saves and reads."""

    def __init__(self, datastore: SQLiteDatastore, events_table_name: str = "stored_events"):
        super().__init__(datastore, events_table_name)
        pool = datastore.pool
        self._lean = not pool.is_sqlite_memory_mode and hasattr(pool, "_writer_lock")
        self._writer: sqlite3.Connection | None = None
        self._readers: list[sqlite3.Connection] = []
        self._selects: dict[tuple[bool, bool, bool, bool], str] = {}
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
        if self.datastore.pool._closed:
            raise ConnectionPoolClosedError
        readers = self._readers
        try:
            conn = readers.pop()
        except IndexError:
            conn = self._connect(writer=False)
        try:
            rows = conn.execute(statement, params).fetchall()
        except sqlite3.Error as error:
            conn.close()  # in an unknown state: not given out again
            raise _converted(error) from error
        readers.append(conn)
        if self._uuids:
            return [StoredEvent(UUID(r[0]), r[1], r[2], r[3]) for r in rows]
        return [StoredEvent(r[0], r[1], r[2], r[3]) for r in rows]

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
        timeout, WAL, autocommit), with rows as tuples."""
        pool = self.datastore.pool
        if pool.closed:
            raise InterfaceError("the store is closed")
        conn: sqlite3.Connection = pool._create_connection()._sqlite_conn
        conn.row_factory = None
        if writer:
            self._writer = conn
        return conn

    def connections(self) -> list[sqlite3.Connection]:
        """This recorder's own open connections (the writer's, then idle readers')."""
        return [*([self._writer] if self._writer else []), *self._readers]

    def close(self) -> None:
        """Close this recorder's own connections (the pool's are the datastore's)."""
        readers, self._readers = self._readers, []
        writer, self._writer = self._writer, None
        for conn in [*readers, *([writer] if writer else [])]:
            conn.close()


def _converted(error: sqlite3.Error) -> PersistenceError:
    for raw, ours in _ERRORS:
        if isinstance(error, raw):
            return ours(error)
    return PersistenceError(error)
