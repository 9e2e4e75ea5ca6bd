"""Readers never see a half-built view: while a new build catches up, batch by batch,
every read gets the old build, complete; the new one serves only once it caught up.

Each test reads the state view the way ``agentlog ls`` does (``Projections.table`` then
``queries.states``) between the batches of a rebuild: from the rebuild's progress
callback, or, where there is none (a catch-up after a save, the CLI command), just
before the follower reads each batch from the log. The paths: a view version bumped by
a deploy (``setup`` registers a new build), the same caught up by the embedded
follower after a save, ``Projections.rebuild``, and ``agentlog projections rebuild``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import pytest
from click.testing import CliRunner

from agentlog.adapters.sqlite_saves import SQLiteSaves
from agentlog.adapters.storage import open_log
from agentlog.adapters.views import engine_for
from agentlog.cli import main
from agentlog.domain import Agent, AgentLog
from agentlog.projections import DEFAULT_VIEWS, AgentStates, Projections, queries

AGENTS = 6
BATCH = 4  # events per batch: each agent's five events span two batches


class ShoutingStates(AgentStates):
    """The state view's next version: the same rows, names in capitals (so that a
    reader can tell which build answered)."""

    version: ClassVar[int] = AgentStates.version + 1

    def columns_for(self, agent: Agent) -> dict[str, Any]:
        """Version 1's columns, the name shouted."""
        return super().columns_for(agent) | {"name": agent.name.upper()}


@dataclass(frozen=True)
class Served:
    """What a reader of the state view got: which build, of which version, which rows."""

    build: int
    version: int
    rows: list[dict[str, Any]]


def served(views: Projections) -> Served:
    """Read the state view as a reader does (``agentlog ls``)."""
    (status,) = [s for s in views.status() if s.name == "state"]
    assert status.active is not None
    with views.engine.connect() as conn:
        rows = queries.states(conn, views.table(conn, "state"))
    return Served(status.active.build, status.active.version, rows)


def shouted(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows the next version makes of the same agents."""
    return [row | {"name": row["name"].upper()} for row in rows]


def add_agents(log: AgentLog, count: int, first: int = 0) -> None:
    """Agents saved one after another, five events each."""
    for n in range(first, first + count):
        agent = Agent.create(f"agent-{n}")
        agent.start_task(f"task {n}")
        for m in range(3):
            agent.receive_user_message(f"message {m}")
        log.save(agent)


@pytest.fixture
def history(sqlite_url: str) -> Iterator[tuple[str, AgentLog]]:
    """A SQLite log of several agents, many batches long."""
    log = open_log(sqlite_url)
    add_agents(log, AGENTS)
    yield sqlite_url, log
    log.close()


@pytest.fixture
def serving_v1(history: tuple[str, AgentLog]) -> tuple[str, AgentLog, Served]:
    """The log, with the state view's current version built and serving all agents."""
    url, log = history
    views = Projections(log, engine_for(url), [AgentStates], batch_size=BATCH)
    views.catch_up()
    before = served(views)
    assert len(before.rows) == AGENTS
    assert before.version == AgentStates.version
    views.engine.dispose()
    return url, log, before


def reads_before_each_batch(
    monkeypatch: pytest.MonkeyPatch, read: Callable[[], Served]
) -> list[Served]:
    """Reads of the view taken each time a follower asks the log for its next batch."""
    reads: list[Served] = []
    select = SQLiteSaves.select_notifications  # native SQLite's recorder reads the pages

    def spy(self: SQLiteSaves, *args: Any, **kwargs: Any) -> Any:
        reads.append(read())
        return select(self, *args, **kwargs)

    monkeypatch.setattr(SQLiteSaves, "select_notifications", spy)
    return reads


def test_a_bumped_view_version_serves_the_old_build_until_the_new_one_caught_up(
    serving_v1: tuple[str, AgentLog, Served],
) -> None:
    url, log, before = serving_v1
    deployed = Projections(log, engine_for(url), [ShoutingStates], batch_size=BATCH)
    (status,) = deployed.status()
    assert status.building is not None
    assert status.building.version == ShoutingStates.version
    assert served(deployed) == before
    midway: list[Served] = []
    deployed.catch_up(progress=lambda position, head: midway.append(served(deployed)))
    assert len(midway) >= AGENTS * 5 // BATCH
    assert midway == [before] * len(midway)  # every agent, the old version, every time
    after = served(deployed)
    assert (after.version, after.rows) == (ShoutingStates.version, shouted(before.rows))
    assert after.build != before.build


def test_a_bumped_view_version_caught_up_after_a_save_serves_the_old_build_until_then(
    serving_v1: tuple[str, AgentLog, Served], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, log, before = serving_v1
    deployed = Projections(log, engine_for(url), [ShoutingStates], batch_size=BATCH)
    log.after_save.append(deployed.catch_up_quietly)  # embedded, as open_store sets it up
    midway = reads_before_each_batch(monkeypatch, lambda: served(deployed))
    add_agents(log, 1, first=AGENTS)  # the first save after the deploy
    monkeypatch.undo()
    assert len(midway) >= (AGENTS + 1) * 5 // BATCH
    assert midway == [before] * len(midway)
    after = served(deployed)
    assert after.version == ShoutingStates.version
    assert after.rows[:AGENTS] == shouted(before.rows)
    assert [r["name"] for r in after.rows[AGENTS:]] == [f"AGENT-{AGENTS}"]


def test_a_rebuild_serves_the_old_build_until_the_new_one_caught_up(
    serving_v1: tuple[str, AgentLog, Served],
) -> None:
    url, log, before = serving_v1
    views = Projections(log, engine_for(url), [AgentStates], batch_size=BATCH)
    midway: list[Served] = []
    rebuilt = views.rebuild("state", progress=lambda position, head: midway.append(served(views)))
    assert len(midway) >= AGENTS * 5 // BATCH
    assert midway == [before] * len(midway)
    after = served(views)
    assert (after.build, after.version, after.rows) == (rebuilt.build, before.version, before.rows)
    assert after.build != before.build


def test_the_projections_rebuild_command_serves_the_old_build_until_it_caught_up(
    sqlite_url: str, app: AgentLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    for n in range(3):  # the command reads 1000 events a batch: three agents, three batches
        agent = Agent.create(f"agent-{n}")
        agent.start_task("talk")
        for m in range(700):
            agent.receive_user_message(f"message {m}")
        app.save(agent)
    reader = Projections(app, engine_for(sqlite_url), DEFAULT_VIEWS)
    reader.catch_up(["state"])
    before = served(reader)
    assert len(before.rows) == 3
    midway = reads_before_each_batch(monkeypatch, lambda: served(reader))
    monkeypatch.setenv("AGENTLOG_DB", sqlite_url)
    result = CliRunner().invoke(main, ["projections", "rebuild", "state"])
    monkeypatch.undo()
    assert result.exit_code == 0, result.output
    assert len(midway) >= 3
    assert midway == [before] * len(midway)
    after = served(reader)
    assert (after.version, after.rows) == (before.version, before.rows)
    assert after.build != before.build
