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

from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.pool import StaticPool

from agentlog.adapters.key_check import check_key, validate_key
from agentlog.domain.application import AgentLog
from agentlog.domain.errors import StorageURLError

DEFAULT_URL = "sqlite:///.agentlog/agentlog.db"
ENGINES = ("native", "sqlalchemy")
_SQLITE_LOCK_TIMEOUT = "30"
_SQLALCHEMY = "agentlog.adapters.sqlalchemy_engine:ClosingSQLAlchemyFactory"


def open_log(
    url: str = DEFAULT_URL,
    *,
    cipher_key: str | None = None,
    snapshot_interval: int | None = None,
    engine: Engine | None = None,
    aggregate_cache: int | None = None,
    log_class: type[AgentLog] = AgentLog,
) -> AgentLog:
    """An :class:`AgentLog` on the store the URL names (created if missing).

    The key must be the one the store was created with, or none if it had none
    (see :mod:`agentlog.adapters.key_check`); ``engine`` is one on the same database,
    if the caller has one, for the key check. ``log_class``: a subclass of your own
    (same ``name``, same store).
    """
    if cipher_key:
        validate_key(cipher_key)
    env = env_for(
        url,
        cipher_key=cipher_key,
        snapshot_interval=snapshot_interval,
        aggregate_cache=aggregate_cache,
    )
    log = log_class(env)
    if urlsplit(url).scheme == "memory":
        return log  # a new, empty store on every open: nothing to check
    native_sqlite = engine is None and urlsplit(url).scheme == "sqlite" and "engine=" not in url
    checker: Engine | Path = sqlite_path(url) if native_sqlite else (engine or engine_for(url))
    try:
        check_key(log, checker, url)
    except BaseException:
        log.close()
        raise
    finally:
        if engine is None and isinstance(checker, Engine):
            checker.dispose()
    return log


def engine_for(url: str) -> Engine:
    """A SQLAlchemy engine on the database a storage URL names (for views, key check)."""
    scheme = url.split("://", 1)[0]
    if scheme == "memory":
        return create_engine("sqlite://", poolclass=StaticPool)
    if scheme == "sqlite":
        engine = create_engine(f"sqlite:///{sqlite_path(url)}", connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    netloc_path = url.split("://", 1)[1].split("?", 1)[0]
    return create_engine(f"postgresql+psycopg://{netloc_path}", pool_pre_ping=True)


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
) -> dict[str, str]:
    """The eventsourcing environment for a storage URL.

    ``aggregate_cache``: keep that many agents in memory and bring a cached one up to date
    with the events stored after it (the library's fast-forward) instead of loading its
    snapshot and tail; for workers, which load the same agents step after step.
    """
    parts = urlsplit(url)
    options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    engine = options.pop("engine", "native")
    compress = options.pop("compress", None)
    if options:
        raise StorageURLError(url, f"unknown option(s): {', '.join(sorted(options))}")
    if engine not in ENGINES:
        raise StorageURLError(url, f"engine must be one of {', '.join(ENGINES)}")
    env = _engine_env(url, parts.scheme, engine)
    if compress is not None:
        if compress not in COMPRESSORS:
            raise StorageURLError(url, f"compress must be one of {', '.join(COMPRESSORS)}")
        env["COMPRESSOR_TOPIC"] = COMPRESSORS[compress]
    if cipher_key:
        env["CIPHER_TOPIC"] = "eventsourcing.cipher:AESCipher"
        env["CIPHER_KEY"] = cipher_key
    if snapshot_interval is not None:
        env["AGENTLOG_SNAPSHOT_INTERVAL"] = str(snapshot_interval)
    if aggregate_cache:
        env["AGGREGATE_CACHE_MAXSIZE"] = str(aggregate_cache)
    return env


def _engine_env(url: str, scheme: str, engine: str) -> dict[str, str]:
    parts = urlsplit(url)
    if scheme == "memory":
        return {"PERSISTENCE_MODULE": "eventsourcing.popo"}
    if scheme == "sqlite":
        path = sqlite_path(url)
        if engine == "sqlalchemy":
            return {
                "PERSISTENCE_MODULE": _SQLALCHEMY,
                "SQLALCHEMY_URL": f"sqlite:///{path}",
            }
        return {
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": str(path),
            "SQLITE_LOCK_TIMEOUT": _SQLITE_LOCK_TIMEOUT,
        }
    if scheme in ("postgresql", "postgresql+psycopg", "postgres"):
        if engine == "sqlalchemy":
            netloc_path = url.split("://", 1)[1].split("?", 1)[0]
            return {
                "PERSISTENCE_MODULE": _SQLALCHEMY,
                "SQLALCHEMY_URL": f"postgresql+psycopg://{netloc_path}",
            }
        if not parts.path.strip("/"):
            raise StorageURLError(url, "name the database: postgresql+psycopg://HOST/DBNAME")
        return {
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": unquote(parts.path.lstrip("/")),
            "POSTGRES_HOST": parts.hostname or "127.0.0.1",
            "POSTGRES_PORT": str(parts.port or 5432),
            "POSTGRES_USER": unquote(parts.username or "postgres"),
            "POSTGRES_PASSWORD": unquote(parts.password or ""),
        }
    raise StorageURLError(url, "use memory://, sqlite:///PATH or postgresql+psycopg://...")


def sqlite_path(url: str) -> Path:
    """The file a ``sqlite:///`` URL names; its folder is created if missing."""
    rest = url.split("://", 1)[1].split("?", 1)[0]
    if not rest.startswith("/") or rest == "/":
        raise StorageURLError(url, "write sqlite:///relative/path.db or sqlite:////abs/path.db")
    path = Path(unquote(rest[1:]))
    path.parent.mkdir(parents=True, exist_ok=True)
    return path
