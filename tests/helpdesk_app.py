"""A user's own module, as ``agentlog --app helpdesk_app`` loads it: a minimal Agent
subclass (one event of its own, none of Agent's re-declared), a sibling aggregate that
is not an agent, an application class and a view of its own."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar
from uuid import UUID

from pydantic import BaseModel
from sqlalchemy import Column, Connection, Integer, MetaData, String, Table, Text, insert

from agentlog.domain import Agent, AgentConfig, AgentLog, AgentState, Aggregate, Lineage
from agentlog.projections import Positioned, View


class ScribeState(AgentState):
    """Every public attribute of a Scribe."""

    notes: int


class Scribe(Agent):
    """An agent that also takes notes."""

    TOPIC: ClassVar[str] = "helpdesk:Scribe@1"
    State: ClassVar[type[BaseModel]] = ScribeState

    class NoteTaken(Agent.Event):
        """A note for later."""

        text: str

        def apply(self, agent: Scribe) -> None:
            agent.notes += 1

    def __init__(
        self,
        name: str,
        config: AgentConfig,
        lineage: Lineage | None = None,
        actor: str = "user",
        caused_by: int | None = None,
    ) -> None:
        super().__init__(name, config, lineage, actor=actor, caused_by=caused_by)
        self.notes = 0

    def take_note(self, text: str, *, actor: str = "user") -> None:
        """Write a note down (while the task runs)."""
        self.check_running()
        self.trigger_event(self.NoteTaken, text=text, actor=actor)


class TicketState(BaseModel):
    """Every public attribute of a Ticket."""

    subject: str
    open: bool
    head_hash: str


class Ticket(Aggregate):
    """A support ticket: not an agent, stored in the same log."""

    TOPIC: ClassVar[str] = "helpdesk:Ticket@1"
    State: ClassVar[type[BaseModel]] = TicketState

    class Event(Aggregate.Event):
        """Base class of a ticket's events."""

    class Created(Aggregate.Created, Event):
        """The ticket was opened."""

        subject: str

    class Closed(Event):
        """The ticket was closed."""

        def apply(self, ticket: Ticket) -> None:
            ticket.open = False

    def __init__(self, subject: str, actor: str = "user") -> None:
        self.subject, self.open = subject, True

    def close(self, *, actor: str = "user") -> None:
        """Close the ticket."""
        self.trigger_event(self.Closed, actor=actor)


class Helpdesk(AgentLog):
    """The application: an AgentLog with commands of its own (same name, same store)."""

    def open_ticket(self, subject: str) -> UUID:
        """Record a new ticket and return its id."""
        ticket = Ticket(subject)
        self.save(ticket)
        return ticket.id

    def hire_scribe(self, name: str, config: AgentConfig | None = None) -> UUID:
        """Record a new scribe and return its id."""
        scribe = Scribe(name, config or AgentConfig())
        self.save(scribe)
        return scribe.id


class Notes(View):
    """Every note a scribe took."""

    name: ClassVar[str] = "notes"
    version: ClassVar[int] = 1

    def define(self, metadata: MetaData) -> None:
        """One append-only table."""
        self.rows = Table(
            self.table_name(),
            metadata,
            Column("agent_id", String(36), primary_key=True),
            Column("version", Integer, primary_key=True, autoincrement=False),
            Column("text", Text, nullable=False),
        )

    def process(self, conn: Connection, events: Sequence[Positioned]) -> None:
        """A row per NoteTaken."""
        rows = [
            {"agent_id": str(e.originator_id), "version": e.originator_version, "text": e.text}
            for _, e in events
            if isinstance(e, Scribe.NoteTaken)
        ]
        if rows:
            conn.execute(insert(self.rows), rows)
