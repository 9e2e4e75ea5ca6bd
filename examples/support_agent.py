"""A user's own agent domain on agentlog: a customer-support agent that can escalate.

Run it with ``python examples/support_agent.py [STORAGE_URL]`` (default: an in-memory
store). It shows what a custom aggregate needs (see ``docs/custom-aggregates.md``): a
stable topic on the aggregate and on every event it stores, a ``State`` model for
snapshots, its own rules and errors, and upcasters for old events and old snapshot state.
"""

from __future__ import annotations

import sys
from enum import StrEnum
from typing import Any, ClassVar
from uuid import UUID

from pydantic import BaseModel

from agentlog.adapters.storage import env_for
from agentlog.domain import (
    Agent,
    AgentConfig,
    AgentError,
    AgentLog,
    AgentState,
    EffectClass,
    Lineage,
    Policy,
    ToolCallRequest,
    UnknownAgentError,
)


class Severity(StrEnum):
    """How urgent an escalation is, least urgent first."""

    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        """Position in the order of urgency (0 is least urgent)."""
        return list(Severity).index(self)


class AlreadyEscalatedError(AgentError):
    """A team already holds the ticket; resolve that escalation first."""

    def __init__(self, agent_id: UUID, team: str) -> None:
        super().__init__(f"agent {agent_id} is already escalated to {team}")
        self.agent_id = agent_id
        self.team = team


class NotEscalatedError(AgentError):
    """There is no open escalation to resolve."""

    def __init__(self, agent_id: UUID) -> None:
        super().__init__(f"agent {agent_id} has no open escalation")
        self.agent_id = agent_id


class EscalationOpenError(AgentError):
    """The task cannot complete while a team still holds the ticket."""

    def __init__(self, agent_id: UUID, team: str) -> None:
        super().__init__(f"agent {agent_id} cannot complete: {team} still holds the ticket")
        self.agent_id = agent_id
        self.team = team


class SupportAgentState(AgentState):
    """Every public attribute of a SupportAgent (snapshot state, version 2)."""

    ticket: str
    escalations: int
    escalated_to: str | None
    highest_severity: Severity | None


class SupportAgent(Agent):
    """An agent that works one support ticket and can hand it to a team of people."""

    TOPIC: ClassVar[str] = "support:SupportAgent@1"
    State: ClassVar[type[BaseModel]] = SupportAgentState
    class_version: ClassVar[int] = 2  # snapshot state v2 added highest_severity

    class Event(Agent.Event):
        """Base class of the support agent's events."""

    class Created(Agent.Created, Event):
        """The agent was opened on a ticket."""

        TOPIC: ClassVar[str] = "support:SupportAgent.Created@1"
        ticket: str

    class EscalationRaised(Event):
        """The ticket was handed to a team of people."""

        TOPIC: ClassVar[str] = "support:SupportAgent.EscalationRaised@1"
        class_version: ClassVar[int] = 2
        team: str
        reason: str
        severity: Severity = Severity.NORMAL

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            """Version 1 had no severity: every escalation was a normal one."""
            state["severity"] = Severity.NORMAL.value

        def apply(self, agent: SupportAgent) -> None:
            agent.escalations += 1
            agent.escalated_to = self.team
            top = agent.highest_severity
            if top is None or self.severity.rank > top.rank:
                agent.highest_severity = self.severity

    class EscalationResolved(Event):
        """The team handed the ticket back."""

        TOPIC: ClassVar[str] = "support:SupportAgent.EscalationResolved@1"
        team: str
        resolution: str

        def apply(self, agent: SupportAgent) -> None:
            agent.escalated_to = None

    # Agent's events are inherited: the library re-derives each for this class, and each
    # gets this class's topic plus its name ("support:SupportAgent.TaskStarted@1"), so
    # none needs re-declaring. Re-declare one only to give it a topic of another shape.

    # Positional on purpose: eventsourcing treats keyword-only __init__ parameters as required.
    def __init__(  # noqa: PLR0917
        self,
        name: str,
        config: AgentConfig,
        ticket: str,
        lineage: Lineage | None = None,
        actor: str = "user",
        caused_by: int | None = None,
    ) -> None:
        super().__init__(name, config, lineage, actor=actor, caused_by=caused_by)
        self.ticket = ticket
        self.escalations = 0
        self.escalated_to: str | None = None
        self.highest_severity: Severity | None = None

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        """Snapshot state v1 had no highest_severity; v1 escalations were all normal."""
        state["highest_severity"] = Severity.NORMAL.value if state["escalations"] else None

    @classmethod
    def open(
        cls, ticket: str, config: AgentConfig | None = None, *, actor: str = "user"
    ) -> SupportAgent:
        """A new support agent for ``ticket``."""
        return cls(
            name=f"support:{ticket}", config=config or AgentConfig(), ticket=ticket, actor=actor
        )

    def escalate(
        self,
        team: str,
        reason: str,
        severity: Severity = Severity.NORMAL,
        *,
        actor: str | None = None,
    ) -> None:
        """Hand the ticket to a team; one escalation at a time (the model decides, by default)."""
        self.check_running()
        if self.escalated_to is not None:
            raise AlreadyEscalatedError(self.id, self.escalated_to)
        self.trigger_event(
            self.EscalationRaised,
            team=team,
            reason=reason,
            severity=severity,
            actor=actor or self.model_actor,
        )

    def resolve_escalation(self, resolution: str, *, actor: str = "user") -> None:
        """Take the ticket back from the team that holds it."""
        self.check_running()
        if self.escalated_to is None:
            raise NotEscalatedError(self.id)
        self.trigger_event(
            self.EscalationResolved, team=self.escalated_to, resolution=resolution, actor=actor
        )

    def complete(self, result: str = "", *, actor: str | None = None) -> None:
        """Finish the task; not while a team still holds the ticket."""
        self.check_running()
        if self.escalated_to is not None:
            raise EscalationOpenError(self.id, self.escalated_to)
        super().complete(result, actor=actor)


class SupportDesk(AgentLog):
    """An AgentLog with commands for support agents (same store, same name, same CLI)."""

    def open_ticket(self, ticket: str, config: AgentConfig | None = None) -> UUID:
        """Record a new support agent for ``ticket`` and return its id."""
        agent = SupportAgent.open(ticket, config)
        self.save(agent)
        return agent.id

    def get_support_agent(self, agent_id: UUID, version: int | None = None) -> SupportAgent:
        """The support agent, now or at ``version``; other kinds of agent are not found."""
        agent = self.get(agent_id, version)
        if not isinstance(agent, SupportAgent):
            raise UnknownAgentError(agent_id, version)
        return agent

    def escalate(
        self, agent_id: UUID, team: str, reason: str, severity: Severity = Severity.NORMAL
    ) -> None:
        """Hand an agent's ticket to a team."""
        agent = self.get_support_agent(agent_id)
        agent.escalate(team, reason, severity)
        self.save(agent)

    def resolve_escalation(self, agent_id: UUID, resolution: str, *, actor: str = "user") -> None:
        """Take an agent's ticket back from its team."""
        agent = self.get_support_agent(agent_id)
        agent.resolve_escalation(resolution, actor=actor)
        self.save(agent)


def open_desk(url: str = "memory://", snapshot_interval: int | None = None) -> SupportDesk:
    """A SupportDesk on the store the URL names."""
    return SupportDesk(env_for(url, snapshot_interval=snapshot_interval))


def work_ticket(desk: SupportDesk, ticket: str) -> UUID:
    """One ticket from start to finish: look up the order, escalate, resolve, complete."""
    config = AgentConfig(tool_policies={"lookup_order": Policy.ALLOW})
    agent_id = desk.open_ticket(ticket, config)
    desk.start_task(agent_id, f"answer ticket {ticket}")
    desk.send(agent_id, "I was charged twice for order 1042.")
    lookup = ToolCallRequest(call_id="c1", tool="lookup_order", args={"order": 1042})
    agent = desk.get_support_agent(agent_id)
    agent.record_model_response("Let me look that up.", model="scripted", tool_calls=(lookup,))
    agent.call_tool(lookup, effect=EffectClass.PURE)
    agent.start_tool("c1", worker_id="w1")
    agent.succeed("c1", {"order": 1042, "charges": [49.5, 49.5]})
    desk.save(agent)
    desk.escalate(agent_id, "billing", "duplicate charge needs a refund", Severity.HIGH)
    desk.resolve_escalation(agent_id, "refunded one charge", actor="billing:ana")
    desk.complete(agent_id, "Refunded the duplicate charge.")
    return agent_id


def main(url: str = "memory://") -> None:
    """Work one ticket and print what the log says about it."""
    desk = open_desk(url)
    try:
        agent = desk.get_support_agent(work_ticket(desk, "T-1042"))
        print(f"{agent.name}: {agent.status}, {agent.escalations} escalation(s), ", end="")
        print(f"highest severity {agent.highest_severity}, {agent.version} events")
        for event in desk.events_of(agent.id):
            print(f"{event.originator_version:>3} {type(event).__name__:<20} by {event.actor}")
    finally:
        desk.close()


if __name__ == "__main__":
    main(*sys.argv[1:2])
