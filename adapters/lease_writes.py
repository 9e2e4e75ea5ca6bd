"""Where lease statements run: through the SQLAlchemy engine, or, on a SQLite store,
through the event store's own writer.

A SQLite file has one write lock. Statements of the views' engine that write (a lease
taken, renewed, released) take it on their own connection, and when an event insert of
the same process holds it, SQLite's busy handler makes them sleep with backoff (1, 2,
5, 10 ... 100 ms) however soon the lock frees. eventsourcing's SQLite datastore gives
its writers one connection at a time, in turn, in the process: lease writes that go
through it (:class:`StoreWrites`) queue behind event inserts in-process, and take the
lock the moment it frees, instead of fighting for it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Protocol, cast

from eventsourcing.persistence import PersistenceError, Recorder
from eventsourcing.sqlite import SQLiteDatastore
from sqlalchemy import ClauseElement, Engine, Executable
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite
from sqlalchemy.exc import OperationalError

Rows = list[Mapping[str, Any]]
Execute = Callable[[Executable], Rows]
"""Runs one statement in the transaction under way; the rows it returned (if any)."""


class LeaseWrites(Protocol):
    """Opens write transactions for lease statements."""

    def transaction(self) -> AbstractContextManager[Execute]:
        """A transaction, committed when the block ends (rolled back if it raises)."""
        ...


class EngineWrites:
    """Lease writes through the SQLAlchemy engine (PostgreSQL; SQLite without a datastore)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @contextmanager
    def transaction(self) -> Iterator[Execute]:
        """One ``engine.begin()`` transaction."""
        with self.engine.begin() as conn:

            def execute(statement: Executable) -> Rows:
                result = conn.execute(statement)
                return [dict(row._mapping) for row in result] if result.returns_rows else []

            yield execute


_NAMED = SQLiteDialect_pysqlite(paramstyle="named")
_NAMED.insert_returning = _NAMED.update_returning = _NAMED.delete_returning = True


class StoreWrites:
    """Lease writes through a SQLite event store's datastore: its writer connection, in
    turn with the store's event inserts (errors are SQLAlchemy's, as the engine's are)."""

    def __init__(self, datastore: SQLiteDatastore) -> None:
        self.datastore = datastore

    @contextmanager
    def transaction(self) -> Iterator[Execute]:
        """One ``BEGIN ... COMMIT`` on the datastore's writer connection."""
        try:
            with self.datastore.transaction(commit=True) as cursor:

                def execute(statement: Executable) -> Rows:
                    compiled = cast(ClauseElement, statement).compile(
                        dialect=_NAMED, compile_kwargs={"render_postcompile": True}
                    )
                    cursor.execute(str(compiled), compiled.params)
                    rows: list[sqlite3.Row] = cursor.fetchall()
                    return [dict(zip(row.keys(), tuple(row), strict=True)) for row in rows]

                yield execute
        except (sqlite3.Error, PersistenceError) as e:
            raise OperationalError("lease write", None, e) from e


def writes_for(engine: Engine, recorder: Recorder | None) -> LeaseWrites:
    """Through the store's SQLite datastore if it has one on the engine's database,
    else through the engine."""
    datastore = getattr(recorder, "datastore", None)
    if engine.dialect.name == "sqlite" and isinstance(datastore, SQLiteDatastore):
        return StoreWrites(datastore)
    return EngineWrites(engine)


__all__ = ["EngineWrites", "Execute", "LeaseWrites", "StoreWrites", "writes_for"]
