"""Whether an error says the database cannot be reached now (restarted, unreachable,
busy): something to wait out and retry, not a bug in a query or a view.

Only errors that say so count: a lost connection (SQLAlchemy's ``connection_invalidated``,
psycopg's connection and operator-intervention errors, SQLSTATE classes 08 and 57P, or
none at all), a pool with no connection to give, SQLite's "locked" and "busy". SQLite
reports a missing table or column as an ``OperationalError`` too: that is no outage.
"""

from __future__ import annotations

import sqlite3

from eventsourcing.persistence import ConnectionUnavailableError
from sqlalchemy.exc import DBAPIError

_SQLITE_TRANSIENT = ("locked", "busy", "unable to open")


def is_outage(error: BaseException | None) -> bool:
    """Whether the error, or one it wraps, says the database is out of reach for now."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, ConnectionUnavailableError):
            return True
        if isinstance(error, DBAPIError) and error.connection_invalidated:
            return True
        if _transient(error):
            return True
        error = getattr(error, "orig", None) or error.__cause__
    return False


def _transient(error: BaseException) -> bool:
    if isinstance(error, sqlite3.OperationalError):
        return any(word in str(error).lower() for word in _SQLITE_TRANSIENT)
    if not type(error).__module__.startswith("psycopg"):
        return False
    import psycopg  # the 'postgres' extra: only its own errors get here

    if not isinstance(error, (psycopg.OperationalError, psycopg.InterfaceError)):
        return False
    sqlstate: str | None = getattr(error, "sqlstate", None)
    return sqlstate is None or sqlstate.startswith(("08", "57P"))


__all__ = ["is_outage"]
