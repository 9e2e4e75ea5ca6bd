"""Saves and reads on PostgreSQL with fewer statements and less Python per call.

eventsourcing's PostgreSQL recorder stores a save as six statements in two round trips
(``BEGIN``, ``SET LOCAL lock_timeout``, ``LOCK TABLE ... IN EXCLUSIVE MODE``,
``NOTIFY``, ``INSERT ... FROM unnest(composite[]) RETURNING``; then ``COMMIT``),
holding the table lock across the second round trip, and sends the events as one array
of a composite type in text (every state hex-encoded, then parsed back by the server).
:class:`PostgresSaves` does the same in ONE statement: a function of the database
(``<events table>_insert``, made with the table) that sets the lock timeout, locks the
table, notifies and inserts, called in one implicit transaction; the events go as four
arrays in binary (ids, versions, topics, states). What a save guarantees is unchanged:
the lock is taken before any notification id is given out and held until the commit
(ids are committed in the order they were given out, which followers rely on), the
events are atomic and in order, a version conflict raises ``IntegrityError`` and
stores nothing. The table, its rows and the notifications are the library's: stores
stay readable and writable by the library's own recorder (older agentlog versions).

A store where the function cannot be made (opened with ``CREATE_TABLE`` off, or by a
role that may not create functions) saves the library's way.

Reads of one agent's events (``select_events``, once per worker step) and of pages of
the log (``select_notifications``, the views' follower) use statements rendered once
and rows as tuples.
"""

from __future__ import annotations

import logging
import struct
import time
from collections.abc import Sequence
from typing import Any, ClassVar
from uuid import UUID

import psycopg
from eventsourcing.persistence import (
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
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from eventsourcing.utils import retry
from psycopg.adapt import Dumper
from psycopg.pq import Format
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Identifier

from agentlog.projections.outages import is_outage

__all__ = ["TOPIC", "PostgresSaves", "insert_function"]
ATTEMPTS, RETRY_WAIT = 10, 0.2
"""As the library's recorder retries its connection and lock errors."""
TOPIC = "agentlog.adapters.postgres_saves:PostgresSaves"
"""What ``APPLICATION_RECORDER_TOPIC`` names to make eventsourcing's factory use it."""
log = logging.getLogger(__name__)


def insert_function(events_table_name: str) -> str:
    """The name of the database function that saves into an events table."""
    return f"{events_table_name}_insert"[:63]


class PostgresSaves(PostgresApplicationRecorder):
    """eventsourcing's PostgreSQL application recorder, saving in one statement."""

    def __init__(self, datastore: PostgresDatastore, *, events_table_name: str = "stored_events"):
        super().__init__(datastore, events_table_name=events_table_name)
        schema, table = Identifier(datastore.schema), Identifier(events_table_name)
        function = Identifier(insert_function(events_table_name))
        id_type = SQL(datastore.originator_id_type)
        self.sql_create_statements.append(
            SQL(
                "CREATE OR REPLACE FUNCTION {schema}.{function}("
                "ids {id_type}[], versions bigint[], topics text[], states bytea[], "
                "wait text) RETURNS SETOF bigint LANGUAGE plpgsql AS $BODY$ BEGIN "
                "PERFORM set_config('lock_timeout', wait, true); "
                "LOCK TABLE {schema}.{table} IN EXCLUSIVE MODE; "
                "NOTIFY {channel}; "
                "RETURN QUERY INSERT INTO {schema}.{table} "
                "(originator_id, originator_version, topic, state) "
                "SELECT * FROM unnest(ids, versions, topics, states) "
                "RETURNING notification_id; "
                "END; $BODY$"
            ).format(
                schema=schema,
                function=function,
                table=table,
                id_type=id_type,
                channel=Identifier(self.channel_name),
            )
        )
        self._insert_call = (
            SQL("SELECT * FROM {schema}.{function}(%b::{id_type}[], %b::bigint[], %b, %b, %s)")
            .format(schema=schema, function=function, id_type=id_type)
            .as_bytes()
        )
        self._exists = SQL("SELECT to_regprocedure(%s) IS NOT NULL").as_bytes()
        self._signature = (
            f"{_quoted(datastore.schema)}.{_quoted(insert_function(events_table_name))}"
            f"({datastore.originator_id_type}[], bigint[], text[], bytea[], text)"
        )
        self._wait = f"{datastore.lock_timeout}s"
        self._one_statement: bool | None = None  # known once looked up
        self._selects: dict[tuple[bool, bool, bool, bool], bytes] = {}
        self._pages: dict[tuple[bool, bool, bool, bool], bytes] = {}

    def create_table(self) -> None:
        """The library's tables, types and functions, and this recorder's function."""
        super().create_table()
        self._one_statement = True

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        """Store the events in one statement (the library's way if the store has no
        function for it, or when called with more than the events: a tracking record;
        ``AgentLog.save`` passes ``tracking=None``, which is no more than the events).

        A failure the library would retry (a lock timeout, say) is tried again, as it
        would; the database out of reach is not: the caller hears of it at once (a
        worker says so and waits it out, ``adapters/outages.py``), as it did when the
        library's pipelined save failed on a lost connection."""
        if (
            not stored_events
            or any(v is not None for v in kwargs.values())
            or not self._has_function()
        ):
            ids: Sequence[int] | None = super().insert_events(stored_events, **kwargs)
            return ids
        for attempt in range(1, ATTEMPTS + 1):
            try:
                return self._insert(stored_events)
            except (InterfaceError, OperationalError) as e:
                if attempt == ATTEMPTS or is_outage(e):
                    raise
                time.sleep(RETRY_WAIT)
        raise AssertionError("unreachable")  # pragma: no cover

    def _insert(self, stored_events: Sequence[StoredEvent]) -> list[int]:
        params = (
            self._ids(stored_events),
            _array(_Int8Array, [_INT8.pack(e.originator_version) for e in stored_events]),
            _array(_TextArray, [e.topic.encode() for e in stored_events]),
            _array(_ByteaArray, [bytes(e.state) for e in stored_events]),
            self._wait,
        )
        rows = self._run(self._insert_call, params)
        return [row[0] for row in rows]

    def _ids(self, stored_events: Sequence[StoredEvent]) -> _BinaryArray:
        if self.datastore.originator_id_type == "text":
            return _array(_TextArray, [str(e.originator_id).encode() for e in stored_events])
        return _array(_UuidArray, [_uuid_bytes(e.originator_id) for e in stored_events])

    def _run(self, statement: bytes, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        """Run one prepared statement on a pooled connection (autocommit: its own
        transaction); its rows. The library's ``get_connection`` does the same through
        two context managers and a commit call per statement; its errors are the same
        (the library's, made from psycopg's)."""
        datastore = self.datastore
        pool = datastore.pool
        try:
            if pool.closed:  # opened on first use, as the library's get_connection does
                pool.open(
                    datastore.pool_open_timeout is not None, datastore.pool_open_timeout or 30.0
                )
            conn = pool.getconn()
            try:
                curs = conn.cursor(row_factory=tuple_row)
                curs.execute(statement, params, prepare=True)
                return curs.fetchall()
            finally:
                pool.putconn(conn)  # a broken connection is replaced, as with the library's
        except psycopg.Error as e:
            raise _persistence_error(e) from e

    def _has_function(self) -> bool:
        if self._one_statement is None:
            with self.datastore.get_connection() as conn:
                found = conn.execute(self._exists, (self._signature,)).fetchone()
            self._one_statement = bool(found and next(iter(found.values())))
            if not self._one_statement:
                log.info("%s: no insert function; saving the library's way", self._signature)
        return self._one_statement

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
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
        shape = (gt is not None, lte is not None, desc, limit is not None)
        statement = self._selects.get(shape)
        if statement is None:
            statement = self._selects[shape] = self._select(*shape)
        params = [v for v in (originator_id, gt, lte, limit) if v is not None]
        return [
            StoredEvent(originator_id=r[0], originator_version=r[1], topic=r[2], state=r[3])
            for r in self._run(statement, params)
        ]

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def select_notifications(
        self,
        start: int | None,
        limit: int,
        stop: int | None = None,
        topics: Sequence[str] = (),
        *,
        inclusive_of_start: bool = True,
    ) -> Sequence[Notification]:
        """The library's query (same rows, same order), rendered once per shape: the
        views' follower reads a page of the log several times a second."""
        shape = (start is not None, inclusive_of_start, stop is not None, bool(topics))
        statement = self._pages.get(shape)
        if statement is None:
            statement = self._pages[shape] = self._page(*shape)
        params: list[Any] = [v for v in (start, stop) if v is not None]
        if topics:
            params.append(list(topics))
        params.append(limit)
        return [
            Notification(
                id=r[0], originator_id=r[1], originator_version=r[2], topic=r[3], state=r[4]
            )
            for r in self._run(statement, params)
        ]

    def _page(self, start: bool, inclusive: bool, stop: bool, topics: bool) -> bytes:
        conditions = []
        if start:
            conditions.append(SQL("notification_id >= %s" if inclusive else "notification_id > %s"))
        if stop:
            conditions.append(SQL("notification_id <= %s"))
        if topics:
            conditions.append(SQL("topic = ANY(%s)"))
        statement = SQL(
            "SELECT notification_id, originator_id, originator_version, topic, state"
            " FROM {schema}.{table}"
        ).format(schema=Identifier(self.datastore.schema), table=Identifier(self.events_table_name))
        if conditions:
            statement += SQL(" WHERE ") + SQL(" AND ").join(conditions)
        statement += SQL(" ORDER BY notification_id LIMIT %s")
        return statement.as_bytes()

    def _select(self, gt: bool, lte: bool, desc: bool, limit: bool) -> bytes:
        statement = SQL(
            "SELECT originator_id, originator_version, topic, state FROM {schema}.{table}"
            " WHERE originator_id = %s"
        ).format(schema=Identifier(self.datastore.schema), table=Identifier(self.events_table_name))
        if gt:
            statement += SQL(" AND originator_version > %s")
        if lte:
            statement += SQL(" AND originator_version <= %s")
        statement += SQL(
            " ORDER BY originator_version DESC" if desc else " ORDER BY originator_version ASC"
        )
        if limit:
            statement += SQL(" LIMIT %s")
        return statement.as_bytes()


_ERRORS: tuple[tuple[type[psycopg.Error], type[PersistenceError]], ...] = (
    (psycopg.InterfaceError, InterfaceError),
    (psycopg.OperationalError, OperationalError),
    (psycopg.DataError, DataError),
    (psycopg.IntegrityError, IntegrityError),
    (psycopg.InternalError, InternalError),
    (psycopg.ProgrammingError, ProgrammingError),
    (psycopg.NotSupportedError, NotSupportedError),
    (psycopg.DatabaseError, DatabaseError),
)
"""psycopg's errors and the library's, in the order its ``get_connection`` maps them."""


def _persistence_error(error: psycopg.Error) -> PersistenceError:
    """The library's error for a psycopg error, as its ``get_connection`` makes it."""
    kind = next((ours for theirs, ours in _ERRORS if isinstance(error, theirs)), PersistenceError)
    return kind(str(error))


class _BinaryArray:
    """A one-dimensional array of one type, already in PostgreSQL's binary format (what
    ``array_send`` gives): psycopg sends it as it is, instead of working out the type of
    each list and its elements and dumping them on every save."""

    __slots__ = ("data",)
    ELEMENT_OID: ClassVar[int]

    def __init__(self, data: bytes) -> None:
        self.data = data


class _UuidArray(_BinaryArray):
    ELEMENT_OID = 2950


class _Int8Array(_BinaryArray):
    ELEMENT_OID = 20


class _TextArray(_BinaryArray):
    ELEMENT_OID = 25


class _ByteaArray(_BinaryArray):
    ELEMENT_OID = 17


_HEADER = struct.Struct("!iiIii")  # dimensions, has nulls, element type, length, lower bound
_LENGTH = struct.Struct("!i")
_INT8 = struct.Struct("!q")


def _array(kind: type[_BinaryArray], items: list[bytes]) -> _BinaryArray:
    """The array of these elements (each in its type's binary form), none of them null."""
    parts = [_HEADER.pack(1, 0, kind.ELEMENT_OID, len(items), 1)]
    for item in items:
        parts += (_LENGTH.pack(len(item)), item)
    return kind(b"".join(parts))


def _uuid_bytes(originator_id: Any) -> bytes:
    return (originator_id if type(originator_id) is UUID else UUID(str(originator_id))).bytes


class _ArrayDumper(Dumper):
    """Sends a :class:`_BinaryArray` as it is."""

    format = Format.BINARY

    def dump(self, obj: Any) -> bytes:
        data: bytes = obj.data
        return data


for _kind, _oid in (
    (_UuidArray, 2951),
    (_Int8Array, 1016),
    (_TextArray, 1009),
    (_ByteaArray, 1001),
):
    psycopg.adapters.register_dumper(
        _kind, type(f"{_kind.__name__}Dumper", (_ArrayDumper,), {"oid": _oid})
    )


def _quoted(name: str) -> str:
    return psycopg.sql.Identifier(name).as_string()
