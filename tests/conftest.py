"""Shared fixtures: real stores on every backend, hypothesis profiles."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from agentlog.adapters.storage import open_log
from agentlog.domain import AgentLog

settings.register_profile(
    "ci", max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "thorough", max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("AGENTLOG_HYPOTHESIS_PROFILE", "ci"))

BACKENDS = ["memory", "sqlite", "sqlite-sqlalchemy", "postgres", "postgres-sqlalchemy"]


def _postgres_base_url() -> str:
    from pg_server import postgres_url, unavailable_reason

    url = postgres_url()
    if url is None:
        reason = f"PostgreSQL not available: {unavailable_reason()}"
        if os.environ.get("AGENTLOG_REQUIRE_POSTGRES"):
            pytest.fail(reason)
        pytest.skip(reason)
    return url


def store_url(backend: str, tmp_path: Path) -> str:
    """A URL for a fresh, empty store on the named backend."""
    if backend == "memory":
        return "memory://"
    if backend.startswith("sqlite"):
        url = f"sqlite:///{tmp_path / 'agentlog.db'}"
    else:
        from pg_server import fresh_database

        url = fresh_database(_postgres_base_url())
    return url + ("?engine=sqlalchemy" if backend.endswith("sqlalchemy") else "")


@pytest.fixture(params=BACKENDS)
def backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh store on each backend in turn."""
    return store_url(request.param, tmp_path)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A fresh SQLite file store (the default engine)."""
    return store_url("sqlite", tmp_path)


@pytest.fixture
def postgres_url() -> str:
    """A fresh PostgreSQL database (the test session's throwaway server)."""
    return store_url("postgres", Path())


@pytest.fixture
def app(sqlite_url: str) -> Iterator[AgentLog]:
    """An AgentLog on a fresh SQLite file."""
    log = open_log(sqlite_url)
    yield log
    log.close()
