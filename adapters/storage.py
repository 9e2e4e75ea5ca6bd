"""Storage URLs: one string names where an agent log lives and how it is stored.

``memory://``                            in-process, for tests and experiments
``sqlite:///relative.db``, ``sqlite:////abs.db``   SQLite file (the default engine:
                                         eventsourcing's own ``sqlite`` module)
``postgresql+psycopg://user:pw@host:port/db``      PostgreSQL (eventsourcing's ``postgres``)

Add ``?engine=sqlalchemy`` to use ``eventsourcing_sqlalchemy`` instead of the library's
own module. Stored states of 512 bytes or more are zlib-compressed when that saves bytes;
``?compress=zlib`` compresses every state, ``?compress=none`` none. Encryption at rest (AES-GCM)
is turned on by a key (``cipher_key``; the CLI reads ``AGENTLOG_CIPHER_KEY``), never by
the URL, so URLs can be logged. A store opens only with the key it was created with
(:mod:`agentlog.adapters.key_check`).
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from sqlalchemy import URL, Engine, create_engine, event, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import StaticPool

from agentlog.adapters import store_format
from agentlog.adapters.group_commit import install as install_group_commit
from agentlog.adapters.key_check import check_key, displayed, validate_key
from agentlog.domain.application import AgentLog
from agentlog.domain.errors import StorageURLError
from agentlog.domain.shards import SHARDS_KEY
from agentlog.domain.store_errors import EXTRAS, MissingExtraError, missing_extra

DEFAULT_URL = "sqlite:///.agentlog/agentlog.db"
ENGINES = ("native", "sqlalchemy")
_SQLITE_LOCK_TIMEOUT = "30"
DEFAULT_AGGREGATE_CACHE = 100
"""Agents an :func:`open_log` keeps in memory between loads, unless told otherwise."""
_SQLALCHEMY = "agentlog.adapters.sqlalchemy_engine:ClosingSQLAlchemyFactory"
_POSTGRES_SCHEMES = ("postgresql", "postgresql+psycopg", "postgres")
_POSTGRES_RECORDER = "agentlog.adapters.postgres_saves:PostgresSaves"  # one statement a save
_SQLITE_RECORDER = "agentlog.adapters.sqlite_saves:SQLiteSaves"  # less Python a save and read
MAX_SHARDS = 256
VIEWS_POOL = 15
"""Connections a PostgreSQL engine for the views and leases may hold (kept once opened)."""


def open_log(
    url: str = DEFAULT_URL,
    *,
    cipher_key: str | None = None,
    snapshot_interval: int | None = None,
    engine: Engine | None = None,
    aggregate_cache: int | None = DEFAULT_AGGREGATE_CACHE,
    create: bool = True,
    force: bool = False,
    log_class: type[AgentLog] = AgentLog,
    shards: int | None = None,
    group_commit: bool = False,
) -> AgentLog:
    """An :class:`AgentLog` on the store the URL names.

    ``create``: make the store if there is none (else :class:`NoStoreError`, and nothing
    is written); ``force``: even in a SQLite file that holds other programs' tables. A
    store whose file or folder may not be written is opened read-only. The store must be
    of the engine the URL asks for, and the key the one it was created with, or none if
    it had none (see :mod:`agentlog.adapters.key_check`); ``engine`` is one on the same
    database, if the caller has one, for these checks. ``log_class``: a subclass of your
    own (same ``name``, same store). ``shards``: how many shards a new store spreads its
    events over (PostgreSQL; see :mod:`agentlog.adapters.shards`); an existing store
    opens with the number it was made with, and refuses another one if one is given.
    ``group_commit``: saves made at once by several threads share one transaction
    (:mod:`agentlog.adapters.group_commit`). ``aggregate_cache``: how many agents are kept
    in memory between loads (:mod:`agentlog.domain.kept`); loading a kept agent reads
    only the events stored after it, instead of its snapshot and tail; 0 or None: none.
    """
    if cipher_key:
        validate_key(cipher_key)
        require_extra("Crypto")
    check_url(url)
    if urlsplit(url).scheme == "memory":
        env = env_for(
            url,
            cipher_key=cipher_key,
            snapshot_interval=snapshot_interval,
            aggregate_cache=aggregate_cache,
            shards=shards or 1,
        )
        log = log_class(env)  # a new, empty store on every open: nothing to check
        if group_commit:
            install_group_commit(log)
        return log
    read_only = is_read_only(url)
    found = _find(url, engine, log_class.name)
    store_format.check(found, displayed(url), engine_option(url), create=create, force=force)
    count = store_format.shard_count(found, displayed(url), shards)
    env = env_for(
        url,
        cipher_key=cipher_key,
        snapshot_interval=snapshot_interval,
        aggregate_cache=aggregate_cache,
        read_only=read_only,
        shards=count,
    )
    log = log_class(env)
    native_sqlite = engine is None and _is_sqlite(url) and engine_option(url) == "native"
    target: Engine | Path
    if native_sqlite and not read_only:
        target = sqlite_path(url)
    else:
        target = engine or engine_for(url, read_only=read_only)
    try:
        check_key(log, target, url, writable=not read_only)
        if not read_only and (found.format is None or not found.format.recorded):
            native = _is_sqlite(url) and engine_option(url) == "native"
            layout = "stored_events" if native else f"{log.name}_events"
            store_format.record(target, log.name, engine_option(url), layout, count)
    except BaseException:
        log.close()
        raise
    finally:
        if engine is None and isinstance(target, Engine):
            target.dispose()
    if group_commit:
        install_group_commit(log)
    return log


def _find(url: str, engine: Engine | None, application: str) -> store_format.Found:
    """What the database holds; a SQLite file is read without writing (no engine yet)."""
    if _is_sqlite(url):
        return store_format.find_in_sqlite(sqlite_path(url), displayed(url), application)
    checker = engine or engine_for(url)
    try:
        return store_format.find_in_database(checker, application)
    finally:
        if engine is None:
            checker.dispose()


def is_read_only(url: str) -> bool:
    """Whether the store is a SQLite file (or its folder) this process may not write."""
    if not _is_sqlite(url):
        return False
    path = sqlite_path(url)
    if not path.exists():
        return False
    return not (os.access(path, os.W_OK) and os.access(path.parent, os.W_OK))


def require_extra(module: str) -> None:
    """Raise :class:`MissingExtraError` if an optional extra's module cannot be imported."""
    try:
        importlib.import_module(module)
    except ImportError as e:
        feature, extra = EXTRAS[module]
        raise (missing_extra(e) or MissingExtraError(feature, extra, module)) from None


def check_url(url: str) -> None:
    """Raise :class:`StorageURLError` for a URL agentlog cannot use (before any I/O)."""
    scheme = urlsplit(url).scheme
    if scheme not in ("memory", "sqlite", *_POSTGRES_SCHEMES):
        reason = "use memory://, sqlite:///PATH or postgresql+psycopg://..."
        raise StorageURLError(displayed(url), reason)
    env_for(url, create_folder=False)  # its options, and the path or database it names


def engine_option(url: str) -> str:
    """The engine a URL asks for (``native`` unless ``?engine=sqlalchemy``)."""
    engine = {k: v[-1] for k, v in parse_qs(urlsplit(url).query).items()}.get("engine", "native")
    if engine not in ENGINES:
        raise StorageURLError(displayed(url), f"engine must be one of {', '.join(ENGINES)}")
    return engine


def _is_sqlite(url: str) -> bool:
    return urlsplit(url).scheme == "sqlite"


def engine_for(url: str, *, read_only: bool = False) -> Engine:
    """A SQLAlchemy engine on the database a storage URL names (for views, key check)."""
    scheme = url.split("://", 1)[0]
    if scheme == "memory":
        return create_engine("sqlite://", poolclass=StaticPool)
    if scheme == "sqlite":
        path = sqlite_path(url)
        if read_only:
            uri = store_format.readonly_uri(path)
            return create_engine(f"sqlite:///{uri}&uri=true")
        engine = create_engine(f"sqlite:///{path}", connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    try:
        # Up to 15 connections, as SQLAlchemy's default (5 + 10 overflow), but every one
        # opened stays open: with overflow, a worker whose turn threads took leases at
        # once closed the extra connections as they came back and opened new ones at the
        # next burst (a PostgreSQL backend started each time).
        return create_engine(
            postgres_url(url), pool_pre_ping=True, pool_size=VIEWS_POOL, max_overflow=0
        )
    except ImportError as e:
        raise (missing_extra(e) or e) from None


def postgres_url(url: str) -> URL:
    """The SQLAlchemy URL of a PostgreSQL storage URL (without agentlog's options)."""
    try:
        parsed = make_url(url.split("?", 1)[0])
    except (ArgumentError, ValueError) as e:
        reason = "its port is not a number" if "int()" in str(e) else f"not a valid URL ({e})"
        raise StorageURLError(displayed(url), reason) from None
    if parsed.port is not None and not 0 < parsed.port < 65536:
        raise StorageURLError(displayed(url), f"port {parsed.port} is not between 1 and 65535")
    if not parsed.database:
        raise StorageURLError(displayed(url), "name the database: postgresql+psycopg://HOST/DBNAME")
    return parsed.set(drivername="postgresql+psycopg")


def _sqlite_pragmas(dbapi_connection: object, _record: object) -> None:
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()


COMPRESSORS = {
    "large": "agentlog.adapters.mapper:LargeStateCompressor",
    "zlib": "eventsourcing.compressor:ZlibCompressor",
    "none": "",
}
"""``?compress=``: large states only (the default), every state, or none. Any store reads
back states written either way, so the option can change between opens."""


def env_for(
    url: str,
    *,
    cipher_key: str | None = None,
    snapshot_interval: int | None = None,
    aggregate_cache: int | None = None,
    read_only: bool = False,
    create_folder: bool = True,
    shards: int = 1,
) -> dict[str, str]:
    """The eventsourcing environment for a storage URL (a SQLite file's folder is made).

    ``aggregate_cache``: keep that many agents in memory and bring a cached one up to date
    with the events stored after it (the library's fast-forward) instead of loading its
    snapshot and tail; for workers, which load the same agents step after step.
    ``read_only``: open an existing SQLite store without writing (no tables made);
    ``create_folder``: make the folder of a SQLite file. ``shards``: the store's shards
    (more than one only on PostgreSQL with the native engine).
    """
    parts = urlsplit(url)
    options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    options.pop("engine", None)
    compress = options.pop("compress", None)
    if options:
        raise StorageURLError(displayed(url), f"unknown option(s): {', '.join(sorted(options))}")
    env = _engine_env(url, parts.scheme, engine_option(url), read_only, create_folder)
    if compress is not None:
        if compress not in COMPRESSORS:
            reason = f"compress must be one of {', '.join(COMPRESSORS)}"
            raise StorageURLError(displayed(url), reason)
        env["COMPRESSOR_TOPIC"] = COMPRESSORS[compress]
    if cipher_key:
        env["CIPHER_TOPIC"] = "eventsourcing.cipher:AESCipher"
        env["CIPHER_KEY"] = cipher_key
    if snapshot_interval is not None:
        env["AGENTLOG_SNAPSHOT_INTERVAL"] = str(snapshot_interval)
    if aggregate_cache:
        env["AGGREGATE_CACHE_MAXSIZE"] = str(aggregate_cache)
    if read_only:
        env["CREATE_TABLE"] = "n"
    if shards != 1:
        _check_shards(url, parts.scheme, shards)
        env["PERSISTENCE_MODULE"] = "agentlog.adapters.shards:ShardedPostgresFactory"
        env[SHARDS_KEY] = str(shards)
    return env


def _check_shards(url: str, scheme: str, shards: int) -> None:
    """Shards are PostgreSQL's: one SQLite file has one write lock however many tables."""
    if not 1 <= shards <= MAX_SHARDS:
        raise StorageURLError(displayed(url), f"shards must be between 1 and {MAX_SHARDS}")
    if scheme not in _POSTGRES_SCHEMES or engine_option(url) != "native":
        reason = "shards need PostgreSQL with the native engine (a SQLite file has one lock)"
        raise StorageURLError(displayed(url), reason)


def _engine_env(
    url: str, scheme: str, engine: str, read_only: bool, create_folder: bool
) -> dict[str, str]:
    if scheme == "memory":
        return {"PERSISTENCE_MODULE": "eventsourcing.popo"}
    if scheme == "sqlite":
        path = sqlite_path(url)
        uri = store_format.readonly_uri(path) if read_only else None
        if create_folder and not read_only:
            _make_folder(path, url)
        if engine == "sqlalchemy":
            target = f"{uri}&uri=true" if uri else str(path)
            return {"PERSISTENCE_MODULE": _SQLALCHEMY, "SQLALCHEMY_URL": f"sqlite:///{target}"}
        return {
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": uri or str(path),
            "SQLITE_LOCK_TIMEOUT": _SQLITE_LOCK_TIMEOUT,
            "APPLICATION_RECORDER_TOPIC": _SQLITE_RECORDER,
        }
    if scheme in _POSTGRES_SCHEMES:
        pg = postgres_url(url)
        if engine == "sqlalchemy":
            return {
                "PERSISTENCE_MODULE": _SQLALCHEMY,
                "SQLALCHEMY_URL": pg.render_as_string(hide_password=False),
            }
        return {
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": pg.database or "",
            "POSTGRES_HOST": pg.host or "127.0.0.1",
            "POSTGRES_PORT": str(pg.port or 5432),
            "POSTGRES_USER": pg.username or "postgres",
            "POSTGRES_PASSWORD": pg.password or "",
            "APPLICATION_RECORDER_TOPIC": _POSTGRES_RECORDER,
        }
    raise StorageURLError(
        displayed(url), "use memory://, sqlite:///PATH or postgresql+psycopg://..."
    )


def sqlite_path(url: str) -> Path:
    """The file a ``sqlite:///`` URL names."""
    rest = url.split("://", 1)[1].split("?", 1)[0]
    if not rest.startswith("/") or rest == "/":
        raise StorageURLError(url, "write sqlite:///relative/path.db or sqlite:////abs/path.db")
    return Path(unquote(rest[1:]))


def _make_folder(path: Path, url: str) -> None:
    """Make the folder of a new SQLite file, or say why there can be no file there."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        reason = f"{path.parent} cannot be a folder: a file is in the way"
        raise StorageURLError(displayed(url), reason) from None
    if not path.exists() and not os.access(path.parent, os.W_OK):
        reason = f"cannot create {path.name}: the folder {path.parent} is read-only"
        raise StorageURLError(displayed(url), reason)
