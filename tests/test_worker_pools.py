"""A worker with K turn threads lets its store's pool lend a connection to each (and
the keeper and the loop), on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agentlog.adapters.tools import ToolRegistry
from agentlog.adapters.views import Store, open_store
from agentlog.adapters.worker import Worker
from agentlog.adapters.worker_pools import EXTRA, fit_pools, pool_of

from conftest import store_url


@pytest.fixture(
    params=[
        ("sqlite", False),
        ("sqlite", True),
        pytest.param(("postgres", True), marks=pytest.mark.postgres),
    ],
    ids=["sqlite", "sqlite-group-commit", "postgres-group-commit"],
)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    backend, group_commit = request.param
    opened = open_store(
        store_url(backend, tmp_path), embedded=False, catch_up=False, group_commit=group_commit
    )
    yield opened
    opened.close()


def most(store: Store) -> int:
    pool = pool_of(store.log.recorder)
    assert pool is not None
    return int(getattr(pool, "max_size", 0) or pool.pool_size + pool.max_overflow)


def test_a_worker_fits_the_pool_to_its_threads(store: Store) -> None:
    before = most(store)
    assert before < 40 + EXTRA  # the library's default is smaller than the test's K
    worker = Worker(store, ToolRegistry.of([]), concurrency=40)
    worker.work(poll=0.01, exit_when_idle=True, on_step=lambda step: None)
    assert most(store) == 40 + EXTRA


def test_a_pool_is_never_made_smaller(store: Store) -> None:
    before = most(store)
    assert fit_pools(store.log.recorder, 1) == before
    assert most(store) == before
