"""Where the views live: the same database as the log, through SQLAlchemy Core."""

from __future__ import annotations

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.pool import StaticPool

from agentlog.adapters.storage import sqlite_path
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
