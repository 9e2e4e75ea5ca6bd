"""``Projections.table``: the serving build's table, read on the caller's connection.

A worker asks for the runnable view's table at every pass of its loop: the lookup of
the serving build runs on the connection it was given (no second connection from the
pool), and still sees at once what another process changed (a stop, a swap)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, select

from agentlog.adapters.views import Store, open_store
from agentlog.domain import Agent
from agentlog.projections import ViewStoppedError, catalog

from conftest import store_url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return store_url(request.param, tmp_path)


@pytest.fixture
def store(url: str) -> Iterator[Store]:
    opened = open_store(url, embedded=False)
    opened.log.save(Agent.create("one"))
    opened.views.catch_up()
    yield opened
    opened.close()


def test_the_table_is_looked_up_on_the_connection_given(store: Store) -> None:
    engine = store.views.engine
    checkouts: list[Any] = []

    def checkout(*args: Any) -> None:
        checkouts.append(args)

    event.listen(engine, "checkout", checkout)
    try:
        with engine.connect() as conn:
            before = len(checkouts)
            for _ in range(3):
                table = store.views.table(conn, "runnable")
            assert len(checkouts) == before  # not one more connection
            assert conn.execute(select(func.count()).select_from(table)).scalar() == 1
    finally:
        event.remove(engine, "checkout", checkout)


def test_a_stop_recorded_elsewhere_is_seen_at_the_next_lookup(store: Store) -> None:
    views = store.views
    with views.engine.connect() as conn:
        views.table(conn, "runnable")  # looked up once: kept
    with views.engine.begin() as conn:
        build = catalog.active(conn, "runnable")
        assert build is not None
        catalog.record_error(conn, build.build, "failed elsewhere")
    with views.engine.connect() as conn, pytest.raises(ViewStoppedError):
        views.table(conn, "runnable")


def test_a_swap_made_elsewhere_is_seen_at_the_next_lookup(store: Store, url: str) -> None:
    views = store.views
    with views.engine.connect() as conn:
        old = views.table(conn, "runnable")
    other = open_store(url, embedded=False)  # another process, say
    try:
        other.views.rebuild("runnable")  # a new build swapped in: the old one retired
    finally:
        other.close()
    with views.engine.connect() as conn:
        new = views.table(conn, "runnable")
        assert new.name != old.name
        assert conn.execute(select(func.count()).select_from(new)).scalar() == 1


def test_the_active_build_of_each_view_is_found(store: Store) -> None:
    with store.views.engine.connect() as conn:
        for status in store.views.status():
            assert catalog.active(conn, status.name) == status.active
        assert catalog.active(conn, "no such view") is None
