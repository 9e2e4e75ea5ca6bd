"""The worker step's cheaper paths give what the general ones give: a save through
``AgentLog.save`` on PostgreSQL takes the one-statement path (``tracking=None`` is no
tracking record), and the other shortcuts of the step are checked against the long way."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from eventsourcing.postgres import PostgresApplicationRecorder

from agentlog.adapters.postgres_saves import PostgresSaves
from agentlog.adapters.storage import open_log
from agentlog.domain import AgentLog


@pytest.fixture
def pg_log(postgres_url: str) -> Iterator[AgentLog]:
    """A log on a fresh PostgreSQL database."""
    app = open_log(postgres_url)
    yield app
    app.close()


@pytest.mark.postgres
def test_an_agentlog_save_on_postgresql_takes_the_one_statement_path(
    pg_log: AgentLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert isinstance(pg_log.recorder, PostgresSaves)
    pg_log.create_agent("warm", goal="open the store")  # the function is looked up once

    def librarys_way(self: Any, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("saved the library's way")

    monkeypatch.setattr(PostgresApplicationRecorder, "insert_events", librarys_way)
    agent_id = pg_log.create_agent("a", goal="say hello")
    pg_log.send(agent_id, "hello")
    assert pg_log.get(agent_id).messages == 2
