"""The key check: a store opens only with the cipher key it was created with (or none).

The first open of an empty store records, in ``agentlog_key_check`` (a table beside the
views, never among the events, so no view or agent listing sees it), a known value
encrypted with the store's cipher, or a row saying the store has no key. Every later open
compares the key it was given with that row and fails at once, for reads and writes
alike, instead of writing events the store's own key cannot read. A store made before the
check existed is checked by decoding its first event, then the check is recorded.
"""

from __future__ import annotations

import binascii
import sqlite3
from base64 import b64decode, b64encode
from contextlib import closing
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from eventsourcing.application import Application
from eventsourcing.persistence import Cipher, Mapper
from sqlalchemy import Column, Engine, MetaData, String, Table, Text, insert
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from agentlog.adapters.mapper import inflate
from agentlog.domain.errors import (
    CipherKeyRequiredError,
    InvalidCipherKeyError,
    UnexpectedCipherKeyError,
    WrongCipherKeyError,
)

KNOWN_VALUE = b"agentlog key check v1"
_SELECT = "SELECT token FROM agentlog_key_check WHERE application = {mark}"
_CREATE = (
    "CREATE TABLE IF NOT EXISTS agentlog_key_check "
    "(application VARCHAR(100) NOT NULL PRIMARY KEY, token TEXT)"
)
AES_KEY_SIZES = (16, 24, 32)

metadata = MetaData()
checks = Table(
    "agentlog_key_check",
    metadata,
    Column("application", String(100), primary_key=True),
    Column("token", Text, nullable=True),  # base64 of KNOWN_VALUE encrypted; NULL: no key
)


def validate_key(key: str) -> None:
    """Raise :class:`InvalidCipherKeyError` unless ``key`` is base64 of an AES key."""
    try:
        raw = b64decode(key, validate=True)
    except binascii.Error:
        raise InvalidCipherKeyError("not base64") from None
    if len(raw) not in AES_KEY_SIZES:
        raise InvalidCipherKeyError(f"{len(raw)} bytes, not 16, 24 or 32")


Target = Engine | Path
"""Where the check lives: an engine on the store's database, or a SQLite file (read with
``sqlite3`` itself, so that a worker's start does not pay for building an engine)."""


def check_key(app: Application[Any], engine: Target, url: str, *, writable: bool = True) -> None:
    """Raise a :class:`CipherKeyError` unless ``app``'s cipher is the store's own.

    ``engine`` is on the store's database (or is its SQLite file); ``url`` only names
    the store in errors. A store that may not be written (a read-only copy) without a
    recorded check is checked by its first event alone.
    """
    cipher, shown = app.mapper.cipher, displayed(url)
    found = _recorded(engine, app.name, writable)
    if found is None:
        _check_first_event(app, shown)
        if not writable:
            return
        found = _record(engine, app.name, cipher)
    (token,) = found
    if token is None and cipher is not None:
        raise UnexpectedCipherKeyError(shown)
    if token is not None and cipher is None:
        raise CipherKeyRequiredError(shown)
    if token is not None and cipher is not None and not _opens(cipher, token):
        raise WrongCipherKeyError(shown)


def displayed(url: str) -> str:
    """The URL without its password, fit for an error message."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _recorded(target: Target, name: str, writable: bool = True) -> tuple[str | None] | None:
    try:
        return _read(target, name)
    except (SQLAlchemyError, sqlite3.Error):  # no table yet: a new or pre-check store
        if not writable:
            return None
        _create_table(target)
        return _read(target, name)


def _read(target: Target, name: str) -> tuple[str | None] | None:
    # Plain SQL: every open reads this once, on a fresh engine whose statement cache is
    # empty, and compiling a statement would cost more than the query (a worker's start).
    if isinstance(target, Path):
        with closing(sqlite3.connect(target, timeout=30)) as db:
            row = db.execute(_SELECT.format(mark="?"), (name,)).fetchone()
    else:
        mark = "?" if target.dialect.paramstyle == "qmark" else "%s"
        with target.connect() as conn:
            row = conn.exec_driver_sql(_SELECT.format(mark=mark), (name,)).first()
    return None if row is None else (row[0],)


def _record(target: Target, name: str, cipher: Cipher | None) -> tuple[str | None]:
    """Record the check; if another opener recorded one first, that one stands."""
    token = None if cipher is None else b64encode(cipher.encrypt(KNOWN_VALUE)).decode()
    try:
        if isinstance(target, Path):
            with closing(sqlite3.connect(target, timeout=30)) as db, db:
                db.execute("INSERT INTO agentlog_key_check VALUES (?, ?)", (name, token))
        else:
            with target.begin() as conn:
                conn.execute(insert(checks).values(application=name, token=token))
    except (IntegrityError, sqlite3.IntegrityError):
        stored = _recorded(target, name)
        assert stored is not None  # the row that made the insert fail
        return stored
    return (token,)


def _create_table(target: Target) -> None:
    if isinstance(target, Path):
        with closing(sqlite3.connect(target, timeout=30)) as db, db:
            db.execute(_CREATE)
        return
    try:
        metadata.create_all(target)
    except SQLAlchemyError:  # another process created it at the same moment
        metadata.create_all(target)


def _opens(cipher: Cipher, token: str) -> bool:
    try:
        return cipher.decrypt(b64decode(token)) == KNOWN_VALUE
    except ValueError:  # AES-GCM's tag does not verify: another key
        return False


def _check_first_event(app: Application[Any], shown: str) -> None:
    """A store from before the check: its first event must decode with the given key."""
    first = app.recorder.select_notifications(None, 1)
    if not first or _decodes(app.mapper, first[0].state, app.mapper.cipher):
        return
    if app.mapper.cipher is None:
        raise CipherKeyRequiredError(shown)
    if _decodes(app.mapper, first[0].state, None):
        raise UnexpectedCipherKeyError(shown)
    raise WrongCipherKeyError(shown)


def _decodes(mapper: Mapper[Any], state: bytes, cipher: Cipher | None) -> bool:
    try:
        data = cipher.decrypt(state) if cipher is not None else state
        mapper.transcoder.decode(inflate(data))
    except Exception:  # any failure (cipher, zlib, JSON) means "does not decode"
        return False
    return True
