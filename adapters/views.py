"""Where the views live: the same database as the log, through SQLAlchemy Core."""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.pool import StaticPool

from agentlog.adapters.storage import open_log, sqlite_path
from agentlog.domain import AgentLog
from agentlog.projections import DEFAULT_VIEWS, Projections


def engine_for(url: str) -> Engine:
    """A SQLAlchemy engine on the database a storage URL names."""
    scheme = url.split("://", 1)[0]
    if scheme == "memory":
        return create_engine("sqlite://", poolclass=StaticPool)
    if scheme == "sqlite":
        engine = create_engine(f"sqlite:///{sqlite_path(url)}", connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    netloc_path = url.split("://", 1)[1].split("?", 1)[0]
    return create_engine(f"postgresql+psycopg://{netloc_path}", pool_pre_ping=True)


def open_projections(app: AgentLog, url: str, *, embedded: bool = True) -> Projections:
    """The default views of ``app``; embedded, they catch up right after each save."""
    projections = Projections(app, engine_for(url), DEFAULT_VIEWS)
    if embedded:
        app.after_save.append(projections.catch_up_quietly)
    return projections


def _sqlite_pragmas(dbapi_connection: object, _record: object) -> None:
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()


class Store:
    """An agent log and its views, opened together (the CLI's unit of work)."""

    def __init__(self, log: AgentLog, views: Projections) -> None:
        self.log = log
        self.views = views

    def waiter(self, seconds: float) -> Callable[[], None]:
        """Wait for new events: LISTEN/NOTIFY on PostgreSQL, else sleep ``seconds``."""
        channel = getattr(self.log.recorder, "channel_name", None)
        if channel is None or self.views.engine.dialect.name != "postgresql":
            return lambda: time.sleep(seconds)
        return ListenWaiter(self.views.engine, channel, seconds)

    def close(self) -> None:
        """Close the log and dispose of the views' connections."""
        self.log.close()
        self.views.engine.dispose()


def open_store(
    url: str, *, cipher_key: str | None = None, embedded: bool = True, catch_up: bool = True
) -> Store:
    """Open the log and its views; embedded views catch up now and after every save."""
    log = open_log(url, cipher_key=cipher_key)
    views = open_projections(log, url, embedded=embedded)
    if catch_up:
        views.catch_up_quietly()
    return Store(log, views)


class ListenWaiter:
    """Wakes as soon as PostgreSQL says events were inserted, or after ``seconds``.

    Notifications only shorten the wait: followers always re-read from their position,
    so a missed or coalesced notification loses nothing (ids have gaps anyway).
    """

    def __init__(self, engine: Engine, channel: str, seconds: float) -> None:
        import psycopg  # the 'postgres' extra; only needed on PostgreSQL
        from psycopg import sql

        self.seconds = seconds
        url = engine.url.set(drivername="postgresql")
        self.conn = psycopg.connect(url.render_as_string(hide_password=False), autocommit=True)
        self.conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))

    def __call__(self) -> None:
        """Block until a notification arrives or the timeout passes."""
        for _ in self.conn.notifies(timeout=self.seconds, stop_after=1):
            pass
