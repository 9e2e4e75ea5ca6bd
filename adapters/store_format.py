"""What a database holds before agentlog touches it, and the format record of a store.

A store records, when it is made, which engine made it, its table layout and the
agentlog version (table ``agentlog_store``, beside ``agentlog_key_check``). Every open
compares the engine asked for with that record, so a second engine never starts a second
log in the same file. A SQLite file is looked at through a read-only connection first:
a command that finds no store (or someone else's database) leaves it byte for byte as it was.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import Engine, inspect
from sqlalchemy.exc import SQLAlchemyError

from agentlog.domain.store_errors import (
    EngineMismatchError,
    ForeignDatabaseError,
    NoStoreError,
    NotADatabaseError,
    ShardCountMismatchError,
)

_CREATE = (
    "CREATE TABLE IF NOT EXISTS agentlog_store (application VARCHAR(100) NOT NULL PRIMARY KEY, "
    "engine VARCHAR(20) NOT NULL, layout VARCHAR(100) NOT NULL, "
    "agentlog_version VARCHAR(40) NOT NULL)"
)
_INSERT = "INSERT INTO agentlog_store VALUES ({m}, {m}, {m}, {m}) ON CONFLICT DO NOTHING"
_INSERT_SHARDED = (
    "INSERT INTO agentlog_store (application, engine, layout, agentlog_version, shards) "
    "VALUES ({m}, {m}, {m}, {m}, {m}) ON CONFLICT DO NOTHING"
)
_ADD_SHARDS = "ALTER TABLE agentlog_store ADD COLUMN shards INTEGER"
_SELECT = "SELECT * FROM agentlog_store WHERE application = {m}"
# A store without shards records no ``shards`` column (its table is as it always was).
# A store with shards records its engine as ``native+shards``: an agentlog from before
# shards, which would write every agent into shard 0, refuses it as another engine's.
SHARDED = "+shards"


def _sqlite_events(application: str) -> dict[str, str]:
    """Each engine's events table in a SQLite file (on PostgreSQL both use NAME_events)."""
    return {"native": "stored_events", "sqlalchemy": f"{application}_events"}


@dataclass(frozen=True)
class Format:
    """Which engine made a store, with which agentlog version."""

    engine: str
    version: str
    recorded: bool = True  # False: inferred from the tables of a store made before the record
    shards: int = 1
    """How many shards its events are spread over (fixed when the store was made)."""


def _format(columns: Sequence[str], row: Sequence[Any]) -> Format:
    """The format a record row says (a record without a ``shards`` column: one shard)."""
    values = dict(zip(columns, row, strict=True))
    engine = str(values["engine"]).removesuffix(SHARDED)
    return Format(engine, values["agentlog_version"], True, values.get("shards") or 1)


@dataclass(frozen=True)
class Found:
    """What a database held when it was looked at: a store's format (recorded, or told by
    the tables of a store from before the record), and other programs' tables."""

    format: Format | None
    foreign: tuple[str, ...] = ()


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
        return Found(None)
    try:
        with closing(_connect_readonly(path)[0]) as db:
            rows = db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
            tables = frozenset(name for (name,) in rows)
            found = None
            if "agentlog_store" in tables:
                cursor = db.execute(_SELECT.format(m="?"), (application,))
                row = cursor.fetchone()
                if row is not None:
                    found = _format([d[0] for d in cursor.description], row)
    except sqlite3.DatabaseError:
        raise NotADatabaseError(url, str(path)) from None
    if found is not None:
        return Found(found)
    # A store from before the record says its engine by its tables.
    made_by = [name for name, table in _sqlite_events(application).items() if table in tables]
    if made_by:
        return Found(Format(made_by[0], "before 0.2", False))
    ours = ("agentlog_", "stored_", f"{application}_")
    return Found(None, tuple(sorted(t for t in tables if not t.startswith(ours))))


def find_in_database(engine: Engine, application: str) -> Found:
    """What a database behind a SQLAlchemy engine holds (one query when it has a record)."""
    mark = "?" if engine.dialect.paramstyle == "qmark" else "%s"
    try:
        with engine.connect() as conn:
            result = conn.exec_driver_sql(_SELECT.format(m=mark), (application,))
            row = result.first()
            found = None if row is None else _format(list(result.keys()), tuple(row))
    except SQLAlchemyError:  # no record table: from before the record, or no store
        found = None
    if found is not None:
        return Found(found)
    # Only the log's own table counts: a PostgreSQL database may well hold other things.
    # Both engines name it alike there: a store from before the record is taken as is.
    if inspect(engine).has_table(f"{application}_events"):
        return Found(Format("", "before 0.2", False))
    return Found(None)


def check(found: Found, url: str, engine: str, *, create: bool, force: bool) -> None:
    """Refuse to open what is not this engine's store (see :mod:`.store_errors`)."""
    made = found.format
    if made is not None and made.engine not in ("", engine):
        raise EngineMismatchError(url, made.engine, made.version, engine)
    if made is not None:
        return
    if not create:
        raise NoStoreError(url)
    if found.foreign and not force:
        raise ForeignDatabaseError(url, list(found.foreign))


def shard_count(found: Found, url: str, asked: int | None) -> int:
    """The store's shards: as recorded, or as asked for a new store (default 1);
    :class:`ShardCountMismatchError` if asked for another number than it has."""
    made = found.format
    if made is None:
        return asked or 1
    if asked is not None and asked != made.shards:
        raise ShardCountMismatchError(url, made.shards, asked)
    return made.shards


def record(
    target: Engine | Path, application: str, engine: str, layout: str, shards: int = 1
) -> None:
    """Record the store's format, unless it is recorded already (the first one stands)."""
    values = (application, engine, layout, package_version("agentlog"))
    if shards > 1:
        assert isinstance(target, Engine)  # shards are PostgreSQL's (checked before)
        _record_sharded(target, (application, engine + SHARDED, layout, values[3], shards))
        return
    if isinstance(target, Path):
        with closing(sqlite3.connect(target, timeout=30)) as db, db:
            db.execute(_CREATE)
            db.execute(_INSERT.format(m="?"), values)
        return
    mark = "?" if target.dialect.paramstyle == "qmark" else "%s"
    _create_record_table(target)
    with target.begin() as conn:
        conn.exec_driver_sql(_INSERT.format(m=mark), values)


def _create_record_table(target: Engine) -> None:
    try:
        with target.begin() as conn:
            conn.exec_driver_sql(_CREATE)
    except SQLAlchemyError:  # another process created it at the same moment: now it is
        with target.begin() as conn:
            conn.exec_driver_sql(_CREATE)


def _record_sharded(target: Engine, values: tuple[str, str, str, str, int]) -> None:
    """Record a store with shards: the record table gains a ``shards`` column."""
    _create_record_table(target)
    if "shards" not in {c["name"] for c in inspect(target).get_columns("agentlog_store")}:
        with target.begin() as conn:
            conn.exec_driver_sql(_ADD_SHARDS)
    with target.begin() as conn:
        conn.exec_driver_sql(_INSERT_SHARDED.format(m="%s"), values)
