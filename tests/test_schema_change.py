"""A schema change, end to end, on a stored old-format log (docs/schema-changes.md):
an event gained a field (with an upcaster), a view gained a column and its version was
bumped; the new build catches up while the old one serves, then takes over."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

from eventsourcing.persistence import StoredEvent
from sqlalchemy import Column, Connection, Integer, MetaData, String, Table, insert, select

from agentlog.adapters.storage import open_log
from agentlog.adapters.views import engine_for
from agentlog.domain import AgentLog
from agentlog.projections import AgentStates, Positioned, Projections, View, queries

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
if str(EXAMPLES) not in sys.path:
    sys.path.insert(0, str(EXAMPLES))

from support_agent import SupportAgent  # noqa: E402
from support_views import Escalations  # noqa: E402

OLD_LOG = Path(__file__).parent / "data" / "support_agent_v1.jsonl"


class EscalationsV1(View):
    """The view as version 1 of the code had it: no severity."""

    name: ClassVar[str] = "escalations"
    version: ClassVar[int] = 1

    def define(self, metadata: MetaData) -> None:
        self.rows = Table(
            self.table_name(),
            metadata,
            Column("agent_id", String(36), primary_key=True),
            Column("version", Integer, primary_key=True, autoincrement=False),
            Column("team", String(100), nullable=False),
        )

    def process(self, conn: Connection, events: Sequence[Positioned]) -> None:
        rows = [
            {"agent_id": str(e.originator_id), "version": e.originator_version, "team": e.team}
            for _, e in events
            if isinstance(e, SupportAgent.EscalationRaised)
        ]
        if rows:
            conn.execute(insert(self.rows), rows)


def load_old_log(url: str) -> AgentLog:
    """A real SQLite store holding exactly the rows the old code wrote."""
    log = open_log(url)
    rows = [json.loads(line) for line in OLD_LOG.read_text().splitlines() if line[:1] == "{"]
    for table, recorder in (("events", log.recorder), ("snapshots", log.snapshots.recorder)):  # type: ignore[union-attr]
        stored = [
            StoredEvent(
                r["originator_id"], r["originator_version"], r["topic"], r["state"].encode()
            )
            for r in rows
            if r["table"] == table
        ]
        recorder.insert_events(stored)
    return log


def escalation_rows(views: Projections) -> list[dict[str, object]]:
    with views.engine.connect() as conn:
        table = views.table(conn, "escalations")
        return [dict(r._mapping) for r in conn.execute(select(table).order_by(table.c.version))]


def test_bumped_view_version_rebuilds_from_the_old_log_and_swaps_in(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/support.db"
    log = load_old_log(url)
    old = Projections(log, engine_for(url), [AgentStates, EscalationsV1])
    old.catch_up()
    served_before = escalation_rows(old)
    assert served_before
    assert all(set(r) == {"agent_id", "version", "team"} for r in served_before)

    new = Projections(log, engine_for(url), [AgentStates, Escalations])  # the deploy
    (status,) = [s for s in new.status() if s.name == "escalations"]
    assert (
        status.active and status.active.version,
        status.building and status.building.version,
    ) == (1, 2)
    assert escalation_rows(new) == served_before  # the old build serves while v2 builds

    new.catch_up()
    rows = escalation_rows(new)
    assert [(r["agent_id"], r["version"], r["team"]) for r in rows] == [
        (r["agent_id"], r["version"], r["team"]) for r in served_before
    ]
    assert {r["severity"] for r in rows} <= {"low", "normal", "high", "critical"}
    v1_events = [r for r in rows if r["severity"] == "normal"]
    assert v1_events, "old events were upcast to the default severity"
    (status,) = [s for s in new.status() if s.name == "escalations"]
    assert (status.active and status.active.version, status.building) == (2, None)


def test_rebuild_from_scratch_gives_the_same_rows(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/support.db"
    log = load_old_log(url)
    views = Projections(log, engine_for(url), [AgentStates, Escalations])
    views.catch_up()
    before = escalation_rows(views)
    with views.engine.connect() as conn:
        states_before = queries.states(conn, views.table(conn, "state"))
    views.rebuild("escalations")
    views.rebuild("state")
    assert escalation_rows(views) == before
    with views.engine.connect() as conn:
        assert queries.states(conn, views.table(conn, "state")) == states_before
