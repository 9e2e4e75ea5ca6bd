"""The worker step's cheaper paths give what the general ones give: a save through
``AgentLog.save`` on PostgreSQL takes the one-statement path (``tracking=None`` is no
tracking record), and the other shortcuts of the step are checked against the long way."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder

from agentlog.adapters.postgres_saves import PostgresSaves
from agentlog.adapters.storage import open_log
from agentlog.domain import AgentLog, aggregate
from agentlog.domain.agent import Agent
from agentlog.domain.chain import event_digest
from agentlog.domain.values import AgentConfig

TABLE = "agentlog_events"


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


@pytest.mark.postgres
@pytest.mark.parametrize("id_type", ["uuid", "text"])
def test_a_save_sends_its_events_as_binary_arrays_and_stores_them_as_given(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch, id_type: str
) -> None:
    monkeypatch.setenv("ORIGINATOR_ID_TYPE", id_type)
    app = open_log(postgres_url)
    try:
        recorder = app.recorder
        assert isinstance(recorder, PostgresSaves)
        a, b = uuid.uuid4(), uuid.uuid4()
        batch = [
            StoredEvent(a, 1, "agentlog:Agent.Créé@1", b""),
            StoredEvent(b, 2**40, "t", bytes(range(256)) * 5),
            StoredEvent(str(a) if id_type == "text" else a, 2, "ünï 😀", b"\x00{}"),
        ]
        ids = recorder.insert_events(batch)
        assert ids is not None
        assert len(ids) == 3
        library = PostgresApplicationRecorder(recorder.datastore, events_table_name=TABLE)
        key = str if id_type == "text" else (lambda i: i)
        stored = [*library.select_events(key(a)), *library.select_events(key(b))]
        assert [
            (str(e.originator_id), e.originator_version, e.topic, bytes(e.state)) for e in stored
        ] == [
            (str(e.originator_id), e.originator_version, e.topic, e.state)
            for e in (batch[0], batch[2], batch[1])  # a's, then b's
        ]
    finally:
        app.close()


def test_the_id_text_a_digest_hashes_is_the_ids_text_and_kept_bounded() -> None:
    ids = [uuid.uuid4() for _ in range(aggregate.ID_TEXTS_KEPT + 10)]
    assert [aggregate.id_text(i) for i in ids] == [str(i) for i in ids]
    assert [aggregate.id_text(i) for i in ids[-3:]] == [str(i) for i in ids[-3:]]  # kept ones
    assert len(aggregate._ID_TEXTS) <= aggregate.ID_TEXTS_KEPT
    agent = Agent.create("a", AgentConfig())
    (created,) = agent.collect_events()
    state = created.stored_state()
    assert created.digest == event_digest(created.TOPIC, str(agent.id), 1, state)
