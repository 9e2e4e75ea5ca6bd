"""A view of the support desk's own: one row per escalation, with its severity.

Version 2 added the ``severity`` column when ``EscalationRaised`` gained its
``severity`` field (old events are upcast to ``normal``). Bumping ``version`` is all it
takes: the next catch-up builds version 2 into fresh tables while version 1 keeps
serving, then swaps them. See ``docs/schema-changes.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from sqlalchemy import Column, Connection, Integer, MetaData, String, Table, Text, insert
from support_agent import SupportAgent  # run with examples/ on sys.path, as its tests do

from agentlog.projections import Positioned, View


class Escalations(View):
    """Every escalation: which agent, which version, to which team, how severe."""

    name: ClassVar[str] = "escalations"
    version: ClassVar[int] = 2

    def define(self, metadata: MetaData) -> None:
        """One append-only table."""
        self.rows = Table(
            self.table_name(),
            metadata,
            Column("agent_id", String(36), primary_key=True),
            Column("version", Integer, primary_key=True, autoincrement=False),
            Column("team", String(100), nullable=False),
            Column("reason", Text, nullable=False),
            Column("severity", String(20), nullable=False, index=True),
        )

    def process(self, conn: Connection, events: Sequence[Positioned]) -> None:
        """A row per EscalationRaised."""
        rows = [
            {
                "agent_id": str(event.originator_id),
                "version": event.originator_version,
                "team": event.team,
                "reason": event.reason,
                "severity": event.severity.value,
            }
            for _, event in events
            if isinstance(event, SupportAgent.EscalationRaised)
        ]
        if rows:
            conn.execute(insert(self.rows), rows)
