"""Where the views live: the same database as the log, through SQLAlchemy Core."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, cast

from sqlalchemy import Engine

from agentlog.adapters.storage import (
    DEFAULT_AGGREGATE_CACHE,
    engine_for,
    is_read_only,
    open_log,
)
from agentlog.domain import AgentLog
from agentlog.domain.shards import log_shards
from agentlog.projections import DEFAULT_VIEWS, Projections, View

__all__ = ["ListenWaiter", "Store", "engine_for", "open_projections", "open_store"]


def open_projections(
    app: AgentLog,
    url: str,
    *,
    embedded: bool = True,
    engine: Engine | None = None,
    views: Sequence[type[View]] = DEFAULT_VIEWS,
) -> Projections:
    """The views of ``app`` (default: the built-in ones); embedded, they catch up right
    after each save."""
    projections = Projections(app, engine or engine_for(url), views)
    if embedded:
        app.after_save.append(projections.catch_up_quietly)
    return projections


class Store:
    """An agent log and its views, opened together (the CLI's unit of work)."""

    def __init__(self, log: AgentLog, views: Projections) -> None:
        self.log = log
        self.views = views

    def waiter(self, seconds: float) -> Callable[[], None]:
        """Wait for new events: LISTEN/NOTIFY on PostgreSQL (every shard's channel),
        else sleep ``seconds``."""
        shards = log_shards(self.log.recorder)
        channels = [getattr(recorder, "channel_name", None) for recorder in shards]
        if None in channels or self.views.engine.dialect.name != "postgresql":
            return lambda: time.sleep(seconds)
        return ListenWaiter(self.views.engine, cast(list[str], channels), seconds)

    def close(self) -> None:
        """Close the log and dispose of the views' connections."""
        self.log.close()
        self.views.engine.dispose()


def open_store(
    url: str,
    *,
    cipher_key: str | None = None,
    embedded: bool = True,
    catch_up: bool = True,
    aggregate_cache: int | None = DEFAULT_AGGREGATE_CACHE,
    create: bool = True,
    force: bool = False,
    log_class: type[AgentLog] = AgentLog,
    views: Sequence[type[View]] = DEFAULT_VIEWS,
    shards: int | None = None,
    group_commit: bool = False,
) -> Store:
    """Open the log and its views; embedded views catch up now and after every save.

    A key that does not fit the store fails here, before any view is created or read;
    ``create``, ``force`` and ``shards`` are :func:`open_log`'s. The views of a read-only store
    are read as they are. ``log_class`` and ``views``: an application class and views
    of your own. ``group_commit``: saves made at once by several threads (a worker
    advancing several agents) share one transaction (:mod:`agentlog.adapters.group_commit`).
    """
    read_only = is_read_only(url)
    engine = engine_for(url, read_only=read_only)
    try:
        log = open_log(
            url,
            cipher_key=cipher_key,
            engine=engine,
            aggregate_cache=aggregate_cache,
            create=create,
            force=force,
            log_class=log_class,
            shards=shards,
            group_commit=group_commit,
        )
    except BaseException:
        engine.dispose()
        raise
    projections = open_projections(
        log, url, embedded=embedded and not read_only, engine=engine, views=views
    )
    if catch_up and not read_only:
        projections.catch_up_quietly()
    return Store(log, projections)


class ListenWaiter:
    """Wakes as soon as PostgreSQL says events were inserted, or after ``seconds``.

    Notifications only shorten the wait: followers always re-read from their position,
    so a missed or coalesced notification loses nothing (ids have gaps anyway).
    """

    def __init__(self, engine: Engine, channels: str | Sequence[str], seconds: float) -> None:
        self.seconds = seconds
        self.channels = [channels] if isinstance(channels, str) else list(channels)
        url = engine.url.set(drivername="postgresql")
        self.url = url.render_as_string(hide_password=False)
        self.conn: Any = self._listen()

    def __call__(self) -> None:
        """Block until a notification arrives or the timeout passes. A connection lost
        (the server restarted) is opened again on the next call; meanwhile, sleep."""
        import psycopg

        try:
            if self.conn is None:
                self.conn = self._listen()
            for _ in self.conn.notifies(timeout=self.seconds, stop_after=1):
                pass
        except psycopg.Error:
            if self.conn is not None:
                self.conn.close()
            self.conn = None
            time.sleep(self.seconds)

    def _listen(self) -> Any:
        import psycopg  # the 'postgres' extra; only needed on PostgreSQL
        from psycopg import sql

        conn = psycopg.connect(self.url, autocommit=True)
        for channel in self.channels:
            conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
        return conn
