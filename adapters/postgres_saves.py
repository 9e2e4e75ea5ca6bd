"""Saves and reads on PostgreSQL with fewer statements and less Python per call.

eventsourcing's PostgreSQL recorder stores a save as six statements in two round trips
(``BEGIN``, ``SET LOCAL lock_timeout``, ``LOCK TABLE ... IN EXCLUSIVE MODE``,
``NOTIFY``, ``INSERT ... FROM unnest(composite[]) RETURNING``; then ``COMMIT``),
holding the table lock across the second round trip, and sends the events as one array
of a composite type in text (every state hex-encoded, then parsed back by the server).
:class:`PostgresSaves` does the same in ONE statement: a function of the database
(``<events table>_insert``, made with the table) that sets the lock timeout, locks the
table and inserts, called in one implicit transaction; the events go as four arrays in
binary (ids, versions, topics, states). The ``NOTIFY`` follows the commit, in a
transaction of its own (see ``PostgresSaves._notify``). What a save guarantees is unchanged:
the lock is taken before any notification id is given out and held until the commit
(ids are committed in the order they were given out, which followers rely on), the
events are atomic and in order, a version conflict raises ``IntegrityError`` and
stores nothing. The table, its rows and the notifications are the library's: stores
stay readable and writable by the library's own recorder (older agentlog versions).

A store where the function cannot be made (opened with ``CREATE_TABLE`` off, or by a
role that may not create functions) saves the library's way.

Reads of one agent's events (``select_events``, once per worker step) and of pages of
the log (``select_notifications``, the views' follower) are the library's queries,
rendered once per shape. All three statements go through libpq's own prepared-statement
calls with binary parameters and rows (``adapters/pg_prepared.py``): about half the
client CPU of psycopg's cursor per round trip. They return what the library's recorder
returns (ids as ``UUID``, or ``str`` on a store made with ``ORIGINATOR_ID_TYPE=text``;
versions and notification ids as ``int``, topics as ``str``, states as ``bytes``) and
raise what it raises (``IntegrityError`` on a version conflict, ``OperationalError`` on
a lost connection or a lock timeout, ...).
"""

from __future__ import annotations

import logging
import struct
import time
from collections.abc import Callable, Sequence
from typing import Any
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
from psycopg.pq.abc import PGresult
from psycopg.sql import SQL, Identifier

from agentlog.adapters.pg_prepared import Statement, execute
from agentlog.domain.recordings import notification
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
            )
        )
        self._uuids = datastore.originator_id_type == "uuid"
        self._insert_call = Statement(
            SQL("SELECT * FROM {schema}.{function}($1, $2, $3, $4, $5)")
            .format(schema=schema, function=function)
            .as_bytes(),
            [UUID_ARRAY if self._uuids else TEXT_ARRAY, INT8_ARRAY, TEXT_ARRAY, BYTEA_ARRAY, TEXT],
        )
        # The wake-up for listeners, once the events are committed: a transaction of its
        # own that does not wait for its commit to be flushed (see ``_notify``).
        self._notify_call = Statement(
            b"SELECT set_config('synchronous_commit', 'off', true), pg_notify($1, '')", [TEXT]
        )
        self._channel = self.channel_name.encode()
        self._exists = SQL("SELECT to_regprocedure(%s) IS NOT NULL").as_bytes()
        self._signature = (
            f"{_quoted(datastore.schema)}.{_quoted(insert_function(events_table_name))}"
            f"({datastore.originator_id_type}[], bigint[], text[], bytea[], text)"
        )
        self._wait = f"{datastore.lock_timeout}s".encode()
        self._one_statement: bool | None = None  # known once looked up
        self._selects: dict[tuple[bool, bool, bool, bool], Statement] = {}
        self._pages: dict[tuple[bool, bool, bool, bool], Statement] = {}

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
            _array(INT8, [_INT8.pack(e.originator_version) for e in stored_events]),
            _array(TEXT, [e.topic.encode() for e in stored_events]),
            _array(BYTEA, [bytes(e.state) for e in stored_events]),
            self._wait,
        )
        result = self._run(self._insert_call, params, then=self._notify)
        get = result.get_value
        return [_INT8.unpack(get(i, 0))[0] for i in range(result.ntuples)]  # type: ignore[arg-type]

    def _notify(self, conn: psycopg.Connection[Any]) -> None:
        """Wake whoever listens on the events table's channel (``agentlog projections
        run``, the library's subscriptions), now that the events are committed.

        Not inside the save's transaction, as the library does it: PostgreSQL takes one
        lock for every transaction that notifies, in the whole cluster, and holds it until
        that transaction's commit is flushed to disk, so the saves of different shards
        (tables of their own, locks of their own) would wait for each other's flush after
        all. This transaction's commit is not waited for (``synchronous_commit`` off): the
        lock is held for moments. A listener that misses a wake-up (this process killed
        in between) finds the events with its next one, or its next poll. A failure here
        does not fail the save, which is committed: it is logged."""
        try:
            execute(conn, self._notify_call, [self._channel])
        except psycopg.Error as e:
            log.warning("%s: listeners not woken after a save: %s", self.channel_name, e)

    def _ids(self, stored_events: Sequence[StoredEvent]) -> bytes:
        if self._uuids:
            return _array(UUID_, [_uuid_bytes(e.originator_id) for e in stored_events])
        return _array(TEXT, [str(e.originator_id).encode() for e in stored_events])

    def _run(
        self,
        statement: Statement,
        params: Sequence[bytes],
        then: Callable[[psycopg.Connection[Any]], None] | None = None,
    ) -> PGresult:
        """Run one of our statements on a pooled connection (autocommit: its own
        transaction); its result, rows in binary (``then``, once it succeeded, on the
        same connection). The library's ``get_connection`` does the same through two
        context managers and a commit call per statement; its errors are the same (the
        library's, made from psycopg's)."""
        datastore = self.datastore
        pool = datastore.pool
        try:
            if pool.closed:  # opened on first use, as the library's get_connection does
                pool.open(
                    datastore.pool_open_timeout is not None, datastore.pool_open_timeout or 30.0
                )
            conn = pool.getconn()
            try:
                result = execute(conn, statement, params)
                if then is not None:
                    then(conn)
                return result
            finally:
                pool.putconn(conn)  # one libpq marked bad is dropped and replaced
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
        if self._uuids:  # every row is this aggregate's: its id made once
            agent: UUID | str = (made := _uuid(originator_id))
            params = [made.bytes]
        else:
            agent = str(originator_id)
            params = [agent.encode()]
        params += [_INT8.pack(v) for v in (gt, lte, limit) if v is not None]
        result = self._run(statement, params)
        get: Any = result.get_value  # bytes: no column of a stored event is null
        unpack = _INT8.unpack
        return [
            StoredEvent(agent, unpack(get(i, 0))[0], get(i, 1).decode(), get(i, 2))
            for i in range(result.ntuples)
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
        params = [_INT8.pack(v) for v in (start, stop) if v is not None]
        if topics:
            params.append(_array(TEXT, [t.encode() for t in topics]))
        params.append(_INT8.pack(limit))
        return self._notifications(self._run(statement, params))

    def _notifications(self, result: PGresult) -> list[Notification]:
        get: Any = result.get_value  # bytes: no column of a stored event is null
        agents: dict[bytes, UUID | str] = {}  # each agent's id made once a page
        page: list[Notification] = []
        add, unpack = page.append, _INT8.unpack
        for i in range(result.ntuples):
            raw = get(i, 1)
            agent = agents.get(raw)
            if agent is None:
                agent = agents[raw] = UUID(bytes=raw) if self._uuids else raw.decode()
            fields = {"originator_id": agent, "originator_version": unpack(get(i, 2))[0]}
            fields["topic"], fields["state"] = get(i, 3).decode(), get(i, 4)
            fields["id"] = unpack(get(i, 0))[0]
            add(notification(fields))  # without the frozen __init__ (one per event)
        return page

    def _page(self, start: bool, inclusive: bool, stop: bool, topics: bool) -> Statement:
        conditions, types = [], []
        if start:
            conditions.append("notification_id >= $%d" if inclusive else "notification_id > $%d")
            types.append(INT8)
        if stop:
            conditions.append("notification_id <= $%d")
            types.append(INT8)
        if topics:
            conditions.append("topic = ANY($%d)")
            types.append(TEXT_ARRAY)
        types.append(INT8)
        numbered = [SQL(c % n) for n, c in enumerate(conditions, start=1)]
        statement = SQL(
            "SELECT notification_id, originator_id, originator_version, topic, state"
            " FROM {schema}.{table}"
        ).format(schema=Identifier(self.datastore.schema), table=Identifier(self.events_table_name))
        if numbered:
            statement += SQL(" WHERE ") + SQL(" AND ").join(numbered)
        statement += SQL(f" ORDER BY notification_id LIMIT ${len(types)}")
        return Statement(statement.as_bytes(), types)

    def _select(self, gt: bool, lte: bool, desc: bool, limit: bool) -> Statement:
        statement = SQL(
            "SELECT originator_version, topic, state FROM {schema}.{table} WHERE originator_id = $1"
        ).format(schema=Identifier(self.datastore.schema), table=Identifier(self.events_table_name))
        types = [UUID_ if self._uuids else TEXT]
        if gt:
            types.append(INT8)
            statement += SQL(f" AND originator_version > ${len(types)}")
        if lte:
            types.append(INT8)
            statement += SQL(f" AND originator_version <= ${len(types)}")
        statement += SQL(
            " ORDER BY originator_version DESC" if desc else " ORDER BY originator_version ASC"
        )
        if limit:
            types.append(INT8)
            statement += SQL(f" LIMIT ${len(types)}")
        return Statement(statement.as_bytes(), types)


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


# PostgreSQL's type oids of what we send
UUID_, INT8, TEXT, BYTEA = 2950, 20, 25, 17
UUID_ARRAY, INT8_ARRAY, TEXT_ARRAY, BYTEA_ARRAY = 2951, 1016, 1009, 1001
_HEADER = struct.Struct("!iiIii")  # dimensions, has nulls, element type, length, lower bound
_LENGTH = struct.Struct("!i")
_INT8 = struct.Struct("!q")


def _array(element_type: int, items: list[bytes]) -> bytes:
    """A one-dimensional array of these elements (each in its type's binary form), none
    of them null, in PostgreSQL's binary format (what ``array_send`` gives)."""
    parts = [_HEADER.pack(1, 0, element_type, len(items), 1)]
    for item in items:
        parts += (_LENGTH.pack(len(item)), item)
    return b"".join(parts)


def _uuid(originator_id: Any) -> UUID:
    if type(originator_id) is UUID:
        return originator_id
    try:
        return UUID(str(originator_id))
    except ValueError as e:  # as the server says of text that is no uuid
        raise DataError(f"invalid input syntax for type uuid: {originator_id!r}") from e


def _uuid_bytes(originator_id: Any) -> bytes:
    return _uuid(originator_id).bytes


def _quoted(name: str) -> str:
    return psycopg.sql.Identifier(name).as_string()
