"""The paths a rebuild takes per event (read, decode, bulk writes) keep what the general
paths give: events no followed view handles are not decoded, in batches of any size;
a bulk write stores exactly what SQLAlchemy's own statements store (times, booleans,
nulls, column order of an update). Real SQLite files."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from eventsourcing.persistence import Notification
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Engine,
    MetaData,
    String,
    Table,
    Text,
    bindparam,
    create_engine,
    insert,
    update,
)
from test_view_process_kill import write_log

from agentlog.adapters.mapper import PydanticMapper
from agentlog.adapters.storage import open_log
from agentlog.adapters.views import engine_for
from agentlog.domain import AgentLog
from agentlog.projections import AuditTrail, Projections, Transcripts
from agentlog.projections.bulk import BulkWrite

WHEN = datetime(2026, 11, 30, 6, 20, 19, 123456, tzinfo=UTC)


@pytest.fixture
def app(tmp_path: Path) -> Iterator[AgentLog]:
    log = open_log(f"sqlite:///{tmp_path / 'log.db'}")
    write_log(log, agents=4, events_each=40)
    yield log
    log.close()


@pytest.mark.parametrize("view", [Transcripts, AuditTrail])
def test_events_a_view_does_not_handle_are_not_decoded_in_a_large_batch(
    app: AgentLog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, view: Any
) -> None:
    """The whole log in one batch: each topic is judged once, and every event of a class
    the view does not handle is passed over undecoded (its position still reached)."""
    notifications = app.recorder.select_notifications(1, 10**9)
    assert isinstance(app.mapper, PydanticMapper)
    wanted = {n.id for n in notifications if view.handles(app.mapper.event_class(n))}
    assert 0 < len(wanted) < len(notifications)
    decoded: list[int] = []
    to_domain_event = app.mapper.to_domain_event

    def spy(notification: Notification) -> Any:
        decoded.append(notification.id)
        return to_domain_event(notification)

    monkeypatch.setattr(app.mapper, "to_domain_event", spy)
    views = Projections(app, engine_for(f"sqlite:///{tmp_path / 'log.db'}"), (view,), 10_000)
    views.catch_up()
    assert decoded == sorted(wanted)
    (status,) = views.status()
    assert status.active is not None
    assert status.active.position == notifications[-1].id
    views.engine.dispose()


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    made = create_engine(f"sqlite:///{tmp_path / 'rows.db'}")
    yield made
    made.dispose()


def table_of(name: str) -> Table:
    """A table with a column of every kind the views write, out of alphabetical order."""
    return Table(
        name,
        MetaData(),
        Column("key", String(36), primary_key=True),
        Column("when", DateTime(timezone=True), nullable=True),
        Column("flag", Boolean, nullable=False),
        Column("text", Text, nullable=True),
        Column("n", BigInteger, nullable=False),
        Column("naive", DateTime, nullable=True),
    )


ROWS = [
    ("a", WHEN, True, "zoë 🤖", 1, datetime(2026, 1, 2, 3, 4, 5)),
    ("b", None, False, None, -(2**62), None),
    (
        "c",
        WHEN.astimezone(timezone(timedelta(hours=5, minutes=30))),
        True,
        "",
        0,
        datetime(1, 1, 1),
    ),
]
CHANGED = [
    ("b", WHEN, True, "now", 7, datetime(2026, 1, 2, 3, 4, 5, 6)),
    ("a", None, False, None, 8, None),
]


def raw(engine: Engine, name: str) -> list[tuple[Any, ...]]:
    """The stored values as SQLite holds them (text, integers), not parsed back."""
    with sqlite3.connect(str(engine.url.database)) as db:
        return db.execute(f"SELECT * FROM {name} ORDER BY key").fetchall()


def test_a_bulk_write_stores_what_sqlalchemys_statements_store(engine: Engine) -> None:
    ours, theirs = table_of("ours"), table_of("theirs")
    for table in (ours, theirs):
        table.create(engine)
    keys = [c.key for c in theirs.columns]
    with engine.begin() as conn:
        BulkWrite.insert(ours)(conn, ROWS)
        BulkWrite.update(ours, ["key"])(conn, CHANGED)
        conn.execute(insert(theirs), [dict(zip(keys, row, strict=True)) for row in ROWS])
        their_update = (
            update(theirs)
            .where(theirs.c.key == bindparam("k"))
            .values({c: bindparam(c.key) for c in theirs.columns if c.key != "key"})
        )
        conn.execute(
            their_update,
            [{"k": row[0], **dict(zip(keys[1:], row[1:], strict=True))} for row in CHANGED],
        )
    assert raw(engine, "ours") == raw(engine, "theirs")
    stored = raw(engine, "ours")
    assert stored[0][1] is None
    assert stored[0][2] == 0
    assert stored[1][1] == "2026-11-30 06:20:19.123456"  # times as SQLite's DATETIME text
