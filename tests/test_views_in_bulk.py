"""Views caught up in big batches (dozens of agents a batch, as a worker's view follower
sees them): on PostgreSQL their rows go by COPY, and they must still equal a rebuild
and the log. Also: a catch-up told to stop ends after a batch with nothing
half-written, and needs no read of the log's head to know when to stop."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_views_properties import assert_views_agree_with_the_log, rows_of

from agentlog.adapters.views import Store, open_store
from agentlog.domain import Agent, EffectClass, Policy, ToolCallRequest
from agentlog.projections import DEFAULT_VIEWS, CatchUpStoppedError, Projections, catalog
from agentlog.projections.pg_copy import CopyWrite

from conftest import store_url

AGENTS = 40  # more than COPY_FROM: each batch writes that many rows per view
NAMES = [cls.name for cls in DEFAULT_VIEWS]
ODD = 'Zoë 🤖 "q" \\ \t\n\u2028 end'  # no NUL: the views store U+FFFD for it


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A store whose views catch up only when asked."""
    opened = open_store(store_url(request.param, tmp_path), embedded=False)
    yield opened
    opened.close()


@pytest.fixture
def copies(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The rows of each COPY write made."""
    made: list[int] = []
    write = CopyWrite.__call__

    def counted(self: CopyWrite, conn: Any, rows: Any) -> bool:
        done = write(self, conn, rows)
        made.extend([len(rows)] if done else [])
        return done

    monkeypatch.setattr(CopyWrite, "__call__", counted)
    return made


def work(store: Store, agents: list[Agent], round_: int) -> None:
    """Every agent takes a turn: a model response with a call, then the call's
    protocol (some ask a person, some are denied, some fail), saved all together."""
    for n, agent in enumerate(agents):
        call_id = f"call-{round_}"
        request = ToolCallRequest(call_id=call_id, tool="search", args={"q": f"{ODD} {n}"})
        agent.record_model_response(f"{ODD} {round_}", model="m", tool_calls=(request,))
        asks = (n + round_) % 3 == 0
        agent.call_tool(
            request, effect=EffectClass.PURE, policy=Policy.ASK if asks else Policy.ALLOW
        )
        if asks:
            agent.request_permission(call_id)
            if n % 2:
                agent.deny(call_id, approver="Zoë", reason=ODD)
                continue
            agent.grant(call_id, approver="Zoë")
        agent.start_tool(call_id, worker_id="w")
        if (n + round_) % 5 == 0:
            agent.fail_tool(call_id, ODD)
        else:
            agent.succeed(call_id, {"text": "x" * 20_000 + ODD})
        if round_ % 2:
            agent.compact(agent.version, f"summary {round_} {ODD}", summarizer="s")
    store.log.save(*agents)


def new_agents(store: Store) -> list[Agent]:
    agents = [Agent.create(f"agent {n} {ODD}") for n in range(AGENTS)]
    for agent in agents:
        agent.start_task(f"goal {ODD}")
    store.log.save(*agents)
    return agents


def test_views_caught_up_in_big_batches_equal_a_rebuild_and_the_log(
    store: Store, copies: list[int]
) -> None:
    agents = new_agents(store)
    for round_ in range(4):
        work(store, agents, round_)
        store.views.catch_up()  # the agents are kept: their rows are updated
    incremental = {name: rows_of(store.views, name) for name in NAMES}
    assert_views_agree_with_the_log(store.log, store.views, agents)
    for name in NAMES:
        store.views.rebuild(name)
    assert {name: rows_of(store.views, name) for name in NAMES} == incremental
    if store.views.engine.dialect.name == "postgresql":
        assert len(copies) >= 4 * 4  # every view, every round
        assert min(copies) >= AGENTS


def test_views_of_a_fresh_process_update_the_rows_they_read_back(
    store: Store, copies: list[int]
) -> None:
    agents = new_agents(store)
    work(store, agents, 0)
    store.views.catch_up()
    work(store, agents, 1)
    fresh = Projections(store.log, store.views.engine, DEFAULT_VIEWS)  # keeps no agent
    fresh.catch_up()
    incremental = {name: rows_of(fresh, name) for name in NAMES}
    assert_views_agree_with_the_log(store.log, fresh, agents)
    for name in NAMES:
        fresh.rebuild(name)
    assert {name: rows_of(fresh, name) for name in NAMES} == incremental


def test_a_catch_up_told_to_stop_ends_after_a_batch_and_reads_no_head(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    agents = new_agents(store)
    work(store, agents, 0)
    head = store.log.recorder.max_notification_id() or 0
    views = Projections(store.log, store.views.engine, DEFAULT_VIEWS, batch_size=100)
    heads_read = reads = 0

    def head_of_log() -> int | None:
        nonlocal heads_read
        heads_read += 1
        return head

    read = store.log.recorder.select_notifications

    def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal reads
        reads += 1
        return read(*args, **kwargs)

    monkeypatch.setattr(store.log.recorder, "max_notification_id", head_of_log)
    monkeypatch.setattr(store.log.recorder, "select_notifications", counted)
    with pytest.raises(CatchUpStoppedError):
        views.catch_up(stop=lambda: True)
    assert (heads_read, reads) == (0, 1)
    assert {s.active.position for s in views.status() if s.active} == {100}
    heads_read = 0
    views.catch_up(stop=lambda: False)
    assert heads_read == 0
    # One batch, then the rest: the last, short batch (or an empty read) is the head.
    assert reads == 1 + (head - 100) // 100 + 1
    assert {s.lag for s in views.status()} == {0}
    incremental = {name: rows_of(views, name) for name in NAMES}
    for name in NAMES:
        views.rebuild(name)
    assert {name: rows_of(views, name) for name in NAMES} == incremental


@pytest.mark.postgres
def test_a_move_in_a_later_shard_clears_the_builds_error(tmp_path: Path) -> None:
    opened = open_store(store_url("postgres", tmp_path), embedded=False, shards=4)
    try:
        agent = next(a for a in iter(lambda: Agent.create("late"), None) if a.id.int % 4 == 2)
        opened.log.save(agent)
        with opened.views.engine.begin() as conn:
            for status in opened.views.status():
                assert status.active is not None
                catalog.record_error(conn, status.active.build, "failed once, elsewhere")
        opened.views.catch_up()
        assert [s.active.error for s in opened.views.status() if s.active] == [None] * len(NAMES)
    finally:
        opened.close()
