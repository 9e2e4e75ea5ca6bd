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
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Protocol, cast

from eventsourcing.persistence import PersistenceError, Recorder
from eventsourcing.sqlite import SQLiteDatastore
from sqlalchemy import ClauseElement, Dialect, Engine, Executable
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite
from sqlalchemy.exc import OperationalError
from sqlalchemy.sql.compiler import SQLCompiler

Rows = list[Mapping[str, Any]]


class Prepared:
    """A statement compiled once per dialect, run with new values each time.

    SQLAlchemy caches no compiled form of a dialect's ``INSERT ... ON CONFLICT`` (nor of
    anything compiled for the SQLite writer): without this, every lease taken would
    compile its upsert again, about a millisecond of a busy worker's CPU each time."""

    def __init__(self, statement: ClauseElement) -> None:
        self.statement = statement
        self._compiled: dict[int, tuple[str, dict[str, Any], list[str] | None]] = {}

    def sql(self, dialect: Dialect, **values: Any) -> tuple[str, Any]:
        """The SQL for this dialect and its parameters in the dialect's style (a dict of
        every parameter, or a tuple in order): those bound when the statement was built,
        overridden by ``values``."""
        compiled = self._compiled.get(id(dialect))
        if compiled is None:
            done = cast(SQLCompiler, self.statement.compile(dialect=dialect))
            order = list(done.positiontup or ()) if done.positional else None
            compiled = self._compiled[id(dialect)] = (str(done), dict(done.params), order)
        sql, defaults, order = compiled
        params = {**defaults, **values}
        return sql, params if order is None else tuple(params[name] for name in order)


class Execute(Protocol):
    """Runs one statement in the transaction under way; the rows it returned (if any).
    A :class:`Prepared` statement takes its values as keywords."""

    def __call__(self, statement: Executable | Prepared, **values: Any) -> Rows: ...


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

            def execute(statement: Executable | Prepared, **values: Any) -> Rows:
                if isinstance(statement, Prepared):
                    sql, params = statement.sql(conn.dialect, **values)
                    result = conn.exec_driver_sql(sql, params)
                else:
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

                def execute(statement: Executable | Prepared, **values: Any) -> Rows:
                    if isinstance(statement, Prepared):
                        cursor.execute(*statement.sql(_NAMED, **values))
                    else:
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


__all__ = ["EngineWrites", "Execute", "LeaseWrites", "Prepared", "StoreWrites", "writes_for"]
