"""One pass for all views: the follower reads and decodes each batch of the log once and
applies it to every build it follows, each at its own position, in one transaction; a
view that fails stops alone; a build being built keeps its work in memory, bounded, and
writes it as it goes. Whatever the batch sizes, flushes and memory bounds, the rows are
those of a rebuild (incremental == rebuilt), on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest
from eventsourcing.persistence import Notification
from sqlalchemy import Column, Connection, Integer, MetaData, Table, insert, select
from test_view_process_kill import write_log

from agentlog.adapters.storage import open_log
from agentlog.adapters.views import engine_for
from agentlog.domain import Agent, AgentLog, Aggregate, EffectClass, Policy, ToolCallRequest
from agentlog.projections import (
    DEFAULT_VIEWS,
    AgentStates,
    AuditTrail,
    Positioned,
    Projections,
    RunnableAgents,
    Transcripts,
    View,
    ViewFailedError,
    follower,
)

from conftest import store_url

VIEW_NAMES = [cls.name for cls in DEFAULT_VIEWS]


class Tripwire(View):
    """The position of every event; raises on a user message "boom"."""

    name: ClassVar[str] = "tripwire"
    version: ClassVar[int] = 1

    def define(self, metadata: MetaData) -> None:
        """One row per event."""
        self.rows = Table(
            self.table_name(),
            metadata,
            Column("position", Integer, primary_key=True, autoincrement=False),
        )

    def process(self, conn: Connection, events: Sequence[Positioned]) -> None:
        """Insert the batch's positions, or fail on "boom"."""
        for _, event in events:
            if isinstance(event, Agent.UserMessageReceived) and event.text == "boom":
                raise RuntimeError("cannot handle 'boom'")
        conn.execute(insert(self.rows), [{"position": p} for p, _ in events])


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh store on SQLite, then on PostgreSQL."""
    return store_url(request.param, tmp_path)


@pytest.fixture
def app(url: str) -> Iterator[AgentLog]:
    """A log of busy agents (messages, tool calls, permissions, compactions), no views."""
    log = open_log(url)
    write_log(log, agents=12, events_each=60)
    yield log
    log.close()


def head(app: AgentLog) -> int:
    """The id of the last notification."""
    return app.recorder.max_notification_id() or 0


def positions(views: Projections) -> dict[str, int]:
    """Where each view's serving build stands."""
    return {s.name: s.active.position for s in views.status() if s.active is not None}


def rows_of(views: Projections, names: Sequence[str] = VIEW_NAMES) -> dict[str, list[Any]]:
    """Every row of the named views' serving builds, in primary key order."""
    rows = {}
    with views.engine.connect() as conn:
        for name in names:
            table = views.table(conn, name)
            query = select(table).order_by(*table.primary_key.columns)
            rows[name] = [tuple(row) for row in conn.execute(query)]
    return rows


def rebuilt_rows(app: AgentLog, url: str) -> dict[str, list[Any]]:
    """The default views' rows as a rebuild from position 0 makes them (batches of 1000)."""
    views = Projections(app, engine_for(url), DEFAULT_VIEWS)
    views.rebuild_many(VIEW_NAMES, downgrade=True)  # some may be of a newer version
    rows = rows_of(views)
    views.engine.dispose()
    return rows


def count_reads(app: AgentLog, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of notifications in each batch read from the log from now on."""
    reads: list[int] = []
    select_notifications = app.recorder.select_notifications

    def spy(*args: Any, **kwargs: Any) -> Any:
        batch = select_notifications(*args, **kwargs)
        reads.append(len(batch))
        return batch

    monkeypatch.setattr(app.recorder, "select_notifications", spy)
    return reads


def count_decodes(app: AgentLog, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The position of every event decoded from now on."""
    decoded: list[int] = []
    to_domain_event = app.mapper.to_domain_event

    def spy(notification: Notification) -> Any:
        decoded.append(notification.id)
        return to_domain_event(notification)

    monkeypatch.setattr(app.mapper, "to_domain_event", spy)
    return decoded


def test_each_event_is_read_and_decoded_once_for_all_views(
    app: AgentLog, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    views = Projections(app, engine_for(url), DEFAULT_VIEWS, batch_size=50)
    ids = [n.id for n in app.recorder.select_notifications(1, 10**9)]
    reads = count_reads(app, monkeypatch)
    decoded = count_decodes(app, monkeypatch)
    views.catch_up()
    assert sum(reads) == len(ids)  # not four times: one pass
    assert decoded == ids
    assert set(positions(views).values()) == {head(app)}
    monkeypatch.undo()
    assert rows_of(views) == rebuilt_rows(app, url)
    views.engine.dispose()


def test_a_failing_view_stops_alone_while_the_others_advance_in_the_same_pass(
    app: AgentLog, url: str
) -> None:
    agent_id = app.create_agent("scout")
    app.start_task(agent_id, "find owls")
    app.send(agent_id, "boom")
    stop_at = head(app) - 1  # the message is the last event
    write_log(app, agents=3, events_each=30, seed=9)  # and the log goes on after it
    views = Projections(app, engine_for(url), (*DEFAULT_VIEWS, Tripwire), batch_size=7)
    with pytest.raises(ViewFailedError) as failed:
        views.catch_up()
    assert (failed.value.view, failed.value.position) == ("tripwire", stop_at // 7 * 7)
    where = positions(views)
    assert {name: where[name] for name in VIEW_NAMES} == dict.fromkeys(VIEW_NAMES, head(app))
    assert where["tripwire"] == stop_at // 7 * 7  # at the start of the batch that failed
    with views.engine.connect() as conn:
        build = next(s.active for s in views.status() if s.name == "tripwire")
        assert build is not None
        table = Table(Tripwire(build.build).table_name(), MetaData(), autoload_with=conn)
        stored = [row.position for row in conn.execute(select(table).order_by(table.c.position))]
    ids = [n.id for n in app.recorder.select_notifications(1, 10**9)]
    assert stored == [i for i in ids if i <= where["tripwire"]]  # no row of the failed batch
    assert rows_of(views) == rebuilt_rows(app, url)
    views.engine.dispose()


class Shouting(Transcripts):
    """The transcript view's next version: the same rows (a new build at position 0)."""

    version: ClassVar[int] = Transcripts.version + 1


def test_builds_at_different_positions_catch_up_in_one_pass(
    app: AgentLog, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = engine_for(url)
    Projections(app, engine, DEFAULT_VIEWS).catch_up()  # all at the head
    write_log(app, agents=2, events_each=40, seed=10)  # the head moves on
    kinds = [Shouting if cls is Transcripts else cls for cls in DEFAULT_VIEWS]
    deployed = Projections(app, engine, kinds, batch_size=25)  # transcript: a build at 0
    (new,) = [s.building for s in deployed.status() if s.name == "transcript"]
    assert new is not None
    assert new.position == 0 < set(positions(deployed).values()).pop() < head(app)
    ids = [n.id for n in app.recorder.select_notifications(1, 10**9)]
    reads = count_reads(app, monkeypatch)
    deployed.catch_up()
    assert sum(reads) == len(ids)  # once from the lowest position, for every build
    assert set(positions(deployed).values()) == {head(app)}
    (status,) = [s for s in deployed.status() if s.name == "transcript"]
    assert (status.active and status.active.version, status.building) == (Shouting.version, None)
    monkeypatch.undo()
    assert rows_of(deployed) == rebuilt_rows(app, url)  # nothing applied twice
    engine.dispose()


class FewAgents(AgentStates):
    """The state view, keeping at most 5 agents in memory."""

    capacity: ClassVar[int] = 5


class FewRunnable(RunnableAgents):
    """The runnable view, keeping at most 5 agents in memory (it shares them with
    FewAgents while they rebuild together)."""

    capacity: ClassVar[int] = 5


def test_a_rebuild_keeps_memory_bounded_and_writes_as_it_goes(
    app: AgentLog, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    incremental = Projections(app, engine_for(url), DEFAULT_VIEWS, batch_size=3)
    incremental.catch_up()
    expected = rows_of(incremental)
    monkeypatch.setattr(follower, "REBUILD_BATCHES", 4)  # write every 4 batches
    monkeypatch.setattr(AuditTrail, "call_capacity", 6)  # calls looked up in the table
    monkeypatch.setattr(Transcripts, "flush_rows", 15)  # compactions across flushes
    kept: list[int] = []
    process = FewAgents.process

    def counting(self: FewAgents, conn: Connection, events: Sequence[Positioned]) -> None:
        process(self, conn, events)
        kept.append(len(self._replay.agents))

    monkeypatch.setattr(FewAgents, "process", counting)
    small: dict[type[View], type[View]] = {AgentStates: FewAgents, RunnableAgents: FewRunnable}
    kinds = [small.get(cls, cls) for cls in DEFAULT_VIEWS]
    views = Projections(app, engine_for(url), kinds, batch_size=10)
    building: list[dict[str, int]] = []

    def progress(position: int, _head: int) -> None:
        building.append({s.name: s.building.position for s in views.status() if s.building})

    views.rebuild_many(VIEW_NAMES, progress)
    assert max(kept) <= FewAgents.capacity + 10  # plus the agents of one batch at most
    for name in VIEW_NAMES:  # written every 4 batches or sooner, not only at the end
        moves = {b[name] for b in building if name in b} - {0}
        assert len(moves) >= head(app) // 40 - 1, name
    assert rows_of(views) == expected
    views.engine.dispose()
    incremental.engine.dispose()


def test_state_and_runnable_rebuilt_in_one_pass_replay_each_event_once(
    app: AgentLog, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = rebuilt_rows(app, url)  # each on its own
    applied: list[int] = []
    mutate = Aggregate.Event.mutate

    def counting(self: Aggregate.Event, aggregate: Any) -> Any:
        applied.append(self.originator_version)
        return mutate(self, aggregate)

    monkeypatch.setattr(Aggregate.Event, "mutate", counting)
    views = Projections(app, engine_for(url), DEFAULT_VIEWS, batch_size=16)
    views.rebuild_many(["state", "runnable"])
    assert len(applied) == head(app)  # once, not twice
    assert rows_of(views, ["state", "runnable"]) == {
        "state": expected["state"],
        "runnable": expected["runnable"],
    }
    views.engine.dispose()


def test_a_view_whose_flush_fails_stops_alone_and_resumes_once_fixed(
    app: AgentLog, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    views = Projections(app, engine_for(url), DEFAULT_VIEWS, batch_size=20)
    flushes = [0]
    flush = AuditTrail.flush

    def failing_second(self: AuditTrail, conn: Connection) -> None:
        flushes[0] += 1
        if flushes[0] == 2:
            raise RuntimeError("disk full")
        flush(self, conn)

    monkeypatch.setattr(AuditTrail, "flush", failing_second)
    with pytest.raises(ViewFailedError) as failed:
        views.catch_up()
    assert (failed.value.view, failed.value.position) == ("audit", 20)
    where = positions(views)
    assert where["audit"] == 20
    assert {n: where[n] for n in VIEW_NAMES if n != "audit"} == {
        n: head(app) for n in VIEW_NAMES if n != "audit"
    }
    assert len(rows_of(views, ["state"])["state"]) == 12
    monkeypatch.undo()
    views.catch_up()  # fixed: it goes on from where it stopped
    assert set(positions(views).values()) == {head(app)}
    assert rows_of(views) == rebuilt_rows(app, url)
    views.engine.dispose()


def test_a_follower_whose_builds_another_moved_forgets_what_it_kept(
    app: AgentLog, url: str
) -> None:
    first = Projections(app, engine_for(url), DEFAULT_VIEWS, batch_size=9)
    other = Projections(app, engine_for(url), DEFAULT_VIEWS, batch_size=4)
    first.catch_up()  # keeps agents, calls in memory
    write_log(app, agents=3, events_each=40, seed=11)
    other.catch_up()  # moves every build on
    write_log(app, agents=3, events_each=40, seed=12)
    first.catch_up()  # must read the rows the other wrote, not trust its memory
    assert set(positions(first).values()) == {head(app)}
    assert rows_of(first) == rebuilt_rows(app, url)
    first.engine.dispose()
    other.engine.dispose()


def test_events_no_followed_view_handles_are_passed_over_undecoded(
    app: AgentLog, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The transcript alone: claims and calls are not decoded, yet its position reaches
    the head, through batches that hold nothing it reads, and its rows are a rebuild's."""
    # The log ends with a claim: batches of one past it hold nothing the transcript reads.
    agent_id = app.create_agent("last")
    app.start_task(agent_id, "claim at the end")
    agent = app.get(agent_id)
    call = ToolCallRequest(call_id="c-last", tool="echo", args={"n": 1})
    agent.record_model_response("calling", model="m", tool_calls=(call,))
    agent.call_tool(call, effect=EffectClass.PURE, policy=Policy.ALLOW)
    agent.start_tool(call.call_id, worker_id="w")
    app.save(agent)
    views = Projections(app, engine_for(url), (Transcripts,), batch_size=1)
    notifications = app.recorder.select_notifications(1, 10**9)
    skipped = {n.id for n in notifications if n.topic.split(":")[-1].startswith("Agent.Tool")}
    skipped -= {n.id for n in notifications if "ToolSucceeded" in n.topic or "Failed" in n.topic}
    assert skipped
    decoded = count_decodes(app, monkeypatch)
    views.catch_up()
    assert not skipped & set(decoded)
    assert positions(views) == {"transcript": head(app)}
    monkeypatch.undo()
    assert rows_of(views, ["transcript"])["transcript"] == rebuilt_rows(app, url)["transcript"]
    views.engine.dispose()


def test_a_view_that_reads_every_event_still_gets_every_event(app: AgentLog, url: str) -> None:
    views = Projections(app, engine_for(url), (*DEFAULT_VIEWS, Tripwire), batch_size=13)
    views.catch_up()
    with views.engine.connect() as conn:
        stored = [row.position for row in conn.execute(select(views.table(conn, "tripwire")))]
    assert sorted(stored) == [n.id for n in app.recorder.select_notifications(1, 10**9)]
    views.engine.dispose()
