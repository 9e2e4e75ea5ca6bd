"""Errors about an agent's lease: another worker is advancing it, or took it meanwhile."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

from agentlog.domain.errors import AgentError


class AgentLeasedError(AgentError):
    """A live lease of another worker holds the agent: it is being advanced elsewhere."""

    def __init__(
        self, agent_id: UUID, holder: str | None = None, until: float | None = None
    ) -> None:
        who = f"worker {holder}" if holder else "another worker"
        if until is not None:
            ends = datetime.fromtimestamp(until, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
            who += f" (its lease runs until {ends}, renewed while it works)"
        super().__init__(
            f"agent {agent_id} is being advanced by {who}; try again later, or stop that worker"
        )
        self.agent_id = agent_id
        self.holder = holder
        """``host:pid#n/slot``; None if it could not be read."""
        self.until = until
        """Seconds since the epoch, by the database's clock; None if it could not be read."""


class LeaseLostError(AgentError):
    """The agent's lease expired unrenewed, or another worker took it, during a run."""

    def __init__(self, agent_id: UUID, steps: int) -> None:
        super().__init__(
            f"agent {agent_id}: its lease expired or was taken by another worker; "
            f"the run stopped after {steps} step(s), leaving the agent to that worker"
        )
        self.agent_id = agent_id
        self.steps = steps


__all__ = ["AgentLeasedError", "LeaseLostError"]
