"""The worker's context source: the transcript view, caught up to the agent first."""

from __future__ import annotations

from sqlalchemy import select

from agentlog.domain import Agent, AgentError
from agentlog.domain.messages import replay_transcript
from agentlog.domain.ports import Message
from agentlog.projections.projections import Projections
from agentlog.projections.transcript import message_from_row


class ViewTranscript:
    """Messages from the transcript view (O(messages since the last compaction)).

    Falls back to replaying the log if the view is stopped, so a broken view never
    stops an agent.
    """

    def __init__(self, views: Projections) -> None:
        self.views = views

    def messages(self, agent: Agent) -> list[Message]:
        """The agent's messages as of its current version."""
        try:
            self.views.catch_up(["transcript"])
            with self.views.engine.connect() as conn:
                table = self.views.table(conn, "transcript")
                query = select(table).where(
                    table.c.agent_id == str(agent.id), table.c.seq <= agent.version
                )
                rows = conn.execute(query.order_by(table.c.seq)).all()
        except AgentError:
            return replay_transcript(self.views.app.events_of(agent.id, upto=agent.version))
        return [message_from_row(row) for row in rows]
