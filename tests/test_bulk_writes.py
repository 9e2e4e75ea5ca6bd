"""Bulk writes of the views (projections/bulk.py): executemany on SQLite, COPY on PostgreSQL.

Every test runs on SQLite and on PostgreSQL, with enough rows for PostgreSQL to write by
COPY (a spy counts the COPY writes that were made, so a silent fall back to executemany
fails the test), and the rows read back must be the ones written.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
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
    create_engine,
    insert,
    select,
)
from sqlalchemy.exc import DBAPIError, IntegrityError

from agentlog.projections import bulk
from agentlog.projections.bulk import COPY_FROM, BulkWrite
from agentlog.projections.outages import is_outage
from agentlog.projections.pg_copy import CopyWrite

from conftest import store_url

WHEN = datetime(2026, 11, 30, 6, 20, 19, 123456, tzinfo=UTC)
ODD = "Zoë 🤖 \"quoted\" 'single' back\\slash\ttab\nnewline \u2028 ünïcödé"
BIG = '{"text":"' + "x" * 1_000_000 + '","n":[1,2,3]}'


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An engine on a fresh database of each kind."""
    url = store_url(request.param, tmp_path)
    made = create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    yield made
    made.dispose()


@pytest.fixture
def table(engine: Engine) -> Table:
    """A view-like table: a text key, then columns of every kind a view writes."""
    made = Table(
        "rows_b1",
        MetaData(),
        Column("key", String(36), primary_key=True),
        Column("n", BigInteger, nullable=False),
        Column("text", Text, nullable=True),
        Column("at", DateTime(timezone=True), nullable=True),
        Column("flag", Boolean, nullable=False),
    )
    made.metadata.create_all(engine)
    return made


@pytest.fixture
def copies(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of rows of each COPY write made (on PostgreSQL)."""
    made: list[int] = []
    write = CopyWrite.__call__

    def counted(self: CopyWrite, conn: Any, rows: Any) -> bool:
        done = write(self, conn, rows)
        if done:
            made.append(len(rows))
        return done

    monkeypatch.setattr(CopyWrite, "__call__", counted)
    return made


def row(i: int, text: str | None = "plain", at: datetime | None = WHEN) -> tuple[Any, ...]:
    return (f"agent-{i:04d}", 2**40 + i, text, at, i % 2 == 0)


def stored(engine: Engine, table: Table) -> dict[str, tuple[Any, ...]]:
    with engine.connect() as conn:
        rows = conn.execute(select(table).order_by(table.c.key))
        return {r.key: (r.key, r.n, r.text, _utc(r.at), r.flag) for r in rows}


def _utc(moment: datetime | None) -> datetime | None:
    """SQLite gives the time back without its zone (it stores UTC as written)."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def expected_copies(engine: Engine, *sizes: int) -> list[int]:
    return list(sizes) if engine.dialect.name == "postgresql" else []


def test_inserts_keep_nulls_unicode_and_large_text(
    engine: Engine, table: Table, copies: list[int]
) -> None:
    rows = [row(i) for i in range(COPY_FROM)]
    rows[1] = row(1, text=None, at=None)
    rows[2] = row(2, text=ODD)
    rows[3] = row(3, text=BIG)
    if engine.dialect.name == "postgresql":  # SQLite's DATETIME keeps the wall time only
        rows[4] = row(
            4, text="", at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=5)))
        )
    with engine.begin() as conn:
        BulkWrite.insert(table)(conn, rows)
    found = stored(engine, table)
    assert found == {r[0]: r for r in rows}
    assert copies == expected_copies(engine, COPY_FROM)


def test_updates_change_only_the_rows_named_and_set_nulls(
    engine: Engine, table: Table, copies: list[int]
) -> None:
    before = [row(i) for i in range(2 * COPY_FROM)]
    with engine.begin() as conn:
        BulkWrite.insert(table)(conn, before)
    changed = [row(i, text=f"{ODD} {i}", at=None) for i in range(0, 2 * COPY_FROM, 2)]
    changed[0] = row(0, text=None, at=WHEN + timedelta(days=1))
    changed[1] = row(2, text=BIG)
    with engine.begin() as conn:
        BulkWrite.update(table, ["key"])(conn, changed)
    expected = {r[0]: r for r in before} | {r[0]: r for r in changed}
    assert stored(engine, table) == expected
    assert copies == expected_copies(engine, 2 * COPY_FROM, COPY_FROM)


def test_an_update_of_the_same_key_twice_leaves_the_last(
    engine: Engine, table: Table, copies: list[int]
) -> None:
    with engine.begin() as conn:
        BulkWrite.insert(table)(conn, [row(i) for i in range(COPY_FROM)])
    twice = [row(i, text="first") for i in range(COPY_FROM)] + [row(7, text="last")]
    with engine.begin() as conn:
        BulkWrite.update(table, ["key"])(conn, twice)
    found = stored(engine, table)
    assert found["agent-0007"][2] == "last"
    assert {k for k, v in found.items() if v[2] == "first"} == {
        f"agent-{i:04d}" for i in range(COPY_FROM) if i != 7
    }


def test_an_update_of_a_missing_key_inserts_nothing(
    engine: Engine, table: Table, copies: list[int]
) -> None:
    with engine.begin() as conn:
        BulkWrite.insert(table)(conn, [row(i) for i in range(COPY_FROM)])
    with engine.begin() as conn:
        BulkWrite.update(table, ["key"])(
            conn, [row(i, text="new") for i in range(5, 5 + COPY_FROM)]
        )
    found = stored(engine, table)
    assert len(found) == COPY_FROM
    assert found["agent-0005"][2] == "new"


def test_an_insert_of_a_key_already_there_fails_and_writes_nothing(
    engine: Engine, table: Table, copies: list[int]
) -> None:
    with engine.begin() as conn:
        BulkWrite.insert(table)(conn, [row(0)])
    with pytest.raises(IntegrityError), engine.begin() as conn:
        BulkWrite.insert(table)(conn, [row(i, text="again") for i in range(COPY_FROM)])
    assert list(stored(engine, table)) == ["agent-0000"]
    assert stored(engine, table)["agent-0000"][2] == "plain"


def test_two_updates_in_one_transaction_and_after_a_rollback_apply_their_own_rows(
    engine: Engine, table: Table, copies: list[int]
) -> None:
    update = BulkWrite.update(table, ["key"])
    with engine.begin() as conn:
        BulkWrite.insert(table)(conn, [row(i) for i in range(2 * COPY_FROM)])
    with engine.connect() as conn:  # the stage is made in a transaction rolled back
        update(conn, [row(i, text="rolled back") for i in range(COPY_FROM)])
        conn.rollback()
        update(conn, [row(i, text="one") for i in range(COPY_FROM)])
        conn.execute(table.update().where(table.c.key == "agent-0000").values(text="own"))
        update(conn, [row(i, text="two") for i in range(COPY_FROM, 2 * COPY_FROM)])
        conn.commit()
    texts = [v[2] for v in stored(engine, table).values()]
    assert texts == ["own"] + ["one"] * (COPY_FROM - 1) + ["two"] * COPY_FROM
    assert copies == expected_copies(engine, 2 * COPY_FROM, *[COPY_FROM] * 3)


def test_few_rows_and_naive_times_go_by_executemany_with_the_same_result(
    engine: Engine, table: Table, copies: list[int]
) -> None:
    naive = datetime(2026, 1, 2, 3, 4, 5)
    rows = [row(i, at=naive if i == 3 else WHEN) for i in range(COPY_FROM)]
    with engine.begin() as conn:
        BulkWrite.insert(table)(conn, rows)
        BulkWrite.insert(table)(conn, [row(COPY_FROM)])
        conn.execute(insert(table).values(key="by-sqlalchemy", n=1, at=naive, flag=True))
    found = stored(engine, table)
    assert found["agent-0003"][3] == found["by-sqlalchemy"][3]  # as the database reads it
    assert found[f"agent-{COPY_FROM:04d}"] == row(COPY_FROM)
    assert copies == []


def test_only_postgresql_with_psycopg_writes_by_copy(engine: Engine, table: Table) -> None:
    plan = CopyWrite.plan(table, [c.key for c in table.c], ["key"], engine.dialect)
    assert (plan is not None) == (engine.dialect.name == "postgresql")
    assert bulk.COPY_FROM == COPY_FROM


@pytest.mark.postgres
def test_a_copy_cut_off_by_the_server_stopping_is_an_outage(copies: list[int]) -> None:
    from pg_server import own_cluster

    cluster = own_cluster()
    if cluster is None:
        pytest.skip("no PostgreSQL server binaries")
    engine = create_engine(cluster.url)
    try:
        table = Table("rows_b1", MetaData(), Column("key", String(36), primary_key=True))
        table.metadata.create_all(engine)
        with engine.connect() as conn:
            conn.execute(insert(table).values(key="first"))
            cluster.stop()
            with pytest.raises(DBAPIError) as raised:
                BulkWrite.insert(table)(conn, [(f"k{i}",) for i in range(COPY_FROM)])
        assert raised.value.connection_invalidated
        assert is_outage(raised.value)
    finally:
        engine.dispose()  # the server is stopped; its folder goes at exit


@pytest.mark.postgres
def test_a_role_that_may_not_make_temporary_tables_updates_by_executemany(
    copies: list[int],
) -> None:
    from pg_server import fresh_database, postgres_url

    base = postgres_url()
    if base is None:
        pytest.skip("no PostgreSQL")
    url = fresh_database(base)
    owner = create_engine(url)
    database = url.rsplit("/", 1)[1]
    role = f"no_temp_{database}"  # roles are the server's: one of this database's own
    with owner.begin() as conn:
        conn.exec_driver_sql(f'CREATE ROLE "{role}" LOGIN')
        conn.exec_driver_sql(f'REVOKE TEMPORARY ON DATABASE "{database}" FROM PUBLIC')
        conn.exec_driver_sql(f'GRANT ALL ON SCHEMA public TO "{role}"')
    limited = create_engine(url.replace("//agentlog:agentlog@", f"//{role}@"))
    try:
        table = Table(
            "rows_b1",
            MetaData(),
            Column("key", String(36), primary_key=True),
            Column("n", BigInteger, nullable=False),
        )
        table.metadata.create_all(limited)
        with limited.begin() as conn:
            BulkWrite.insert(table)(conn, [(f"k{i}", 0) for i in range(COPY_FROM)])
            BulkWrite.update(table, ["key"])(conn, [(f"k{i}", 1) for i in range(COPY_FROM)])
        with limited.connect() as conn:
            assert set(conn.execute(select(table.c.n)).scalars()) == {1}
        assert copies == [COPY_FROM]  # the insert; the update went by executemany
    finally:
        limited.dispose()
        owner.dispose()
