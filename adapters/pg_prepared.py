"""Statements of ours run through libpq's own prepared-statement calls, in binary.

psycopg's cursor spends ~60 us of Python per round trip on what a fixed statement does
not need (a cursor, converting the query, working out how to send each parameter, its
prepared-statement bookkeeping, setting up the result); libpq's prepared-statement calls
(psycopg's ``pgconn.send_prepare`` / ``send_query_prepared``, the result waited for by
psycopg's own ``Connection.wait``, which lets other threads run and turns Ctrl-C into a
cancel of the statement) need none of it: a :class:`Statement` is prepared once per
connection, under a name of its own (``agentlog_`` and a digest of its text and types,
so no clash with psycopg's ``_pg3_*`` names or another store's statements), and run
with its parameters already in PostgreSQL's binary format; the rows come back in binary.

What can go wrong, and what :func:`execute` does:

- a connection it has not seen (new, or one the pool made to replace another): the
  statement is prepared on it first;
- the server lost the statement (``DEALLOCATE ALL``, ``DISCARD ALL``): running it fails
  with SQLSTATE 26000, which proves it did not run, so it is prepared again and run
  once more (an insert too: nothing of it was done);
- any other error: raised as psycopg raises it (``psycopg.errors.error_from_result``),
  so callers map it as they map psycopg's; a connection lost under the call is psycopg's
  ``OperationalError``, and libpq has marked it bad (``transaction_status`` UNKNOWN), so
  the pool drops it when it is given back instead of handing it out again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any
from weakref import WeakKeyDictionary

import psycopg
from psycopg import pq
from psycopg.errors import error_from_result
from psycopg.generators import execute as execute_generator

__all__ = ["Statement", "execute"]
TUPLES_OK = pq.ExecStatus.TUPLES_OK
MISSING = b"26000"  # invalid_sql_statement_name: no prepared statement of that name
DUPLICATE = b"42P05"  # duplicate_prepared_statement: it is there already
UTF8 = b"UTF8"
_prepared: WeakKeyDictionary[psycopg.Connection[Any], set[bytes]] = WeakKeyDictionary()
"""The names of the statements prepared on each open connection, as far as we know."""


class Statement:
    """A statement with ``$n`` parameters of the given type oids, all sent in binary."""

    __slots__ = ("formats", "name", "sql", "types")

    def __init__(self, sql: bytes, types: Sequence[int]) -> None:
        self.sql = sql
        self.types = list(types)
        self.formats = [1] * len(self.types)
        digest = hashlib.sha1(sql + repr(self.types).encode(), usedforsecurity=False)
        self.name = b"agentlog_" + digest.hexdigest()[:40].encode()


def execute(
    conn: psycopg.Connection[Any], statement: Statement, params: Sequence[bytes]
) -> pq.abc.PGresult:
    """Run the statement on this connection (autocommit: its own transaction); its
    result, rows in binary. Raises psycopg's error for anything that went wrong."""
    names = _prepared.get(conn)
    if names is None:
        names = _prepared[conn] = _set_up(conn)
    if statement.name not in names:
        _prepare(conn, statement, names)
    result = _run(conn, statement, params)
    if result.status == TUPLES_OK:
        return result
    if _sqlstate(result) == MISSING:  # the server lost it; nothing ran
        names.clear()  # DEALLOCATE ALL or DISCARD ALL: the others went with it
        _prepare(conn, statement, names)
        result = _run(conn, statement, params)
        if result.status == TUPLES_OK:
            return result
    raise _error(conn, result)


def _run(
    conn: psycopg.Connection[Any], statement: Statement, params: Sequence[bytes]
) -> pq.abc.PGresult:
    """Send the prepared statement, then wait for its result the way psycopg's cursor
    waits: other threads run meanwhile, and Ctrl-C (in the main thread) cancels the
    statement in the server and is raised, instead of waiting it out (a save may wait
    for the events table's lock, without a limit by default)."""
    pgconn = conn.pgconn
    pgconn.send_query_prepared(statement.name, params, statement.formats, 1)
    results: list[pq.abc.PGresult] = conn.wait(execute_generator(pgconn))
    return results[-1]


def _set_up(conn: psycopg.Connection[Any]) -> set[bytes]:
    """Text goes both ways as UTF-8 bytes (a database whose client encoding is another
    one, SQL_ASCII say, would otherwise read our topics in it)."""
    pgconn = conn.pgconn
    if pgconn.parameter_status(b"client_encoding") != UTF8:
        result = pgconn.exec_(b"SET client_encoding TO 'UTF8'")
        if result.status != pq.ExecStatus.COMMAND_OK:
            raise _error(conn, result)
    return set()


def _prepare(conn: psycopg.Connection[Any], statement: Statement, names: set[bytes]) -> None:
    conn.pgconn.send_prepare(statement.name, statement.sql, statement.types)
    results: list[pq.abc.PGresult] = conn.wait(execute_generator(conn.pgconn))
    result = results[-1]
    if result.status != pq.ExecStatus.COMMAND_OK and _sqlstate(result) != DUPLICATE:
        raise _error(conn, result)
    names.add(statement.name)


def _sqlstate(result: pq.abc.PGresult) -> bytes | None:
    return result.error_field(pq.DiagnosticField.SQLSTATE)


def _error(conn: psycopg.Connection[Any], result: pq.abc.PGresult) -> psycopg.Error:
    """psycopg's error for a result that failed, as its cursor would raise it."""
    status = result.status
    if status != pq.ExecStatus.FATAL_ERROR:
        return psycopg.InternalError(
            f"unexpected result status from query: {pq.ExecStatus(status).name}"
        )
    if _sqlstate(result) is None and conn.pgconn.status == pq.ConnStatus.BAD:
        # libpq's own message (the server went away): no SQLSTATE, as psycopg's
        # cursor raises it when the connection breaks under a query
        return psycopg.OperationalError(result.get_error_message("utf-8"))
    return error_from_result(result, encoding="utf-8")
