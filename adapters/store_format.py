"""What a database holds before agentlog touches it, and the format record of a store.

A store records, when it is made, which engine made it, its table layout and the
agentlog version (table ``agentlog_store``, beside ``agentlog_key_check``). Every open
compares the engine asked for with that record, so a second engine never starts a second
log in the same file. A SQLite file is looked at through a read-only connection first:
a command that finds no store (or someone else's database) leaves it byte for byte as it was.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from dataclasses import dataclass
from importlib.metadata import version as package_version
from pathlib import Path
from urllib.parse import quote

from sqlalchemy import Engine, inspect
from sqlalchemy.exc import SQLAlchemyError

from agentlog.domain.store_errors import (
    EngineMismatchError,
    ForeignDatabaseError,
    NoStoreError,
    NotADatabaseError,
)

_CREATE = (
    "CREATE TABLE IF NOT EXISTS agentlog_store (application VARCHAR(100) NOT NULL PRIMARY KEY, "
    "engine VARCHAR(20) NOT NULL, layout VARCHAR(100) NOT NULL, "
    "agentlog_version VARCHAR(40) NOT NULL)"
)
_INSERT = "INSERT INTO agentlog_store VALUES ({m}, {m}, {m}, {m}) ON CONFLICT DO NOTHING"
_SELECT = "SELECT engine, agentlog_version FROM agentlog_store WHERE application = {m}"
_SQLITE_EVENTS = {"native": "stored_events", "sqlalchemy": "agentlog_events"}
"""Each engine's events table in a SQLite file (on PostgreSQL both use agentlog_events)."""


@dataclass(frozen=True)
class Format:
    """Which engine made a store, with which agentlog version."""

    engine: str
    version: str
    recorded: bool = True  # False: inferred from the tables of a store made before the record


@dataclass(frozen=True)
class Found:
    """What a database held when it was looked at: a store's format, and its tables."""

    format: Format | None
    tables: frozenset[str]

    @property
    def is_store(self) -> bool:
        """Whether agentlog's log is in it (recorded, or from before the record)."""
        return self.format is not None or bool(self.tables & {*_SQLITE_EVENTS.values()})


def readonly_uri(path: Path) -> str:
    """A ``file:`` URI that opens ``path`` without writing: ``mode=ro``, or, where
    SQLite cannot even read that way (a WAL file in a folder it may not write),
    ``immutable=1``."""
    db, uri = _connect_readonly(path)
    db.close()
    return uri


def _connect_readonly(path: Path) -> tuple[sqlite3.Connection, str]:
    uri = f"file:{quote(str(path.absolute()))}?mode=ro"
    db = sqlite3.connect(uri, uri=True)
    try:
        db.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.OperationalError:
        db.close()
        uri = f"{uri}&immutable=1"
        db = sqlite3.connect(uri, uri=True)
    except sqlite3.DatabaseError:
        pass  # not a database at all: the caller's read says so
    return db, uri


def find_in_sqlite(path: Path, url: str, application: str) -> Found:
    """What the SQLite file holds, read without writing a byte (nothing if it is missing)."""
    if not path.is_file() or path.stat().st_size == 0:
        if path.is_dir():
            raise NotADatabaseError(url, f"{path} (a folder)")
        return Found(None, frozenset())
    try:
        with closing(_connect_readonly(path)[0]) as db:
            rows = db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
            tables = frozenset(name for (name,) in rows)
            found = None
            if "agentlog_store" in tables:
                found = db.execute(_SELECT.format(m="?"), (application,)).fetchone()
    except sqlite3.DatabaseError:
        raise NotADatabaseError(url, str(path)) from None
    if found is None:  # a store from before the record says its engine by its tables
        made_by = [name for name, table in _SQLITE_EVENTS.items() if table in tables]
        return Found(Format(made_by[0], "before 0.2", False) if made_by else None, tables)
    return Found(Format(*found), tables)


def find_in_database(engine: Engine, application: str) -> Found:
    """What a database behind a SQLAlchemy engine holds (one query when it has a record)."""
    mark = "?" if engine.dialect.paramstyle == "qmark" else "%s"
    try:
        with engine.connect() as conn:
            row = conn.exec_driver_sql(_SELECT.format(m=mark), (application,)).first()
    except SQLAlchemyError:  # no record table: from before the record, or no store
        row = None
    if row is not None:
        return Found(Format(row[0], row[1]), frozenset())
    # Only the log's own table counts: a PostgreSQL database may well hold other things.
    has_log = inspect(engine).has_table(f"{application}_events")
    return Found(None, frozenset({"agentlog_events"} if has_log else ()))


def check(found: Found, url: str, engine: str, *, create: bool, force: bool) -> None:
    """Refuse to open what is not this engine's store (see :mod:`.store_errors`)."""
    if found.format is not None and found.format.engine != engine:
        raise EngineMismatchError(url, found.format.engine, found.format.version, engine)
    if found.is_store:
        return
    if not create:
        raise NoStoreError(url)
    foreign = sorted(t for t in found.tables if not t.startswith(("agentlog_", "stored_")))
    if foreign and not force:
        raise ForeignDatabaseError(url, foreign)


def record(target: Engine | Path, application: str, engine: str, layout: str) -> None:
    """Record the store's format, unless it is recorded already (the first one stands)."""
    values = (application, engine, layout, package_version("agentlog"))
    if isinstance(target, Path):
        with closing(sqlite3.connect(target, timeout=30)) as db, db:
            db.execute(_CREATE)
            db.execute(_INSERT.format(m="?"), values)
        return
    mark = "?" if target.dialect.paramstyle == "qmark" else "%s"
    try:
        with target.begin() as conn:
            conn.exec_driver_sql(_CREATE)
    except SQLAlchemyError:  # another process created it at the same moment: now it is
        with target.begin() as conn:
            conn.exec_driver_sql(_CREATE)
    with target.begin() as conn:
        conn.exec_driver_sql(_INSERT.format(m=mark), values)
