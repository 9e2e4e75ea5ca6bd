"""The state view as a witness of each agent's chain head, for ``agentlog verify``.

The state view keeps, per agent, the version and head hash it last applied. A chain
cannot tell that its own last events were deleted, nor that it was rewritten and
resealed from some version on; the view, which saw the original, can. A view that is
missing, stopped or unreadable simply witnesses nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from agentlog.domain import AgentError
from agentlog.projections import Projections, queries


class StateViewHeads:
    """``heads(agent_id)``: (version, head hash) the state view saw; ``agent_ids()``: all."""

    def __init__(self, views: Projections, page: int = 500) -> None:
        self.views, self.page = views, page

    def __call__(self, agent_id: UUID) -> tuple[int, str] | None:
        """The version and head hash the view holds for the agent, if it holds any."""
        try:
            with self.views.engine.connect() as conn:
                table = self.views.table(conn, "state")
                agent = queries.aggregate_from_state(conn, table, agent_id, self.views.seal)
        except (AgentError, SQLAlchemyError, ValueError):
            return None
        return agent.version, agent.head_hash

    def agent_ids(self) -> Iterator[UUID]:
        """Every agent the view holds, by id, a page at a time."""
        after = ""
        while True:
            try:
                with self.views.engine.connect() as conn:
                    column = self.views.table(conn, "state").c.agent_id
                    query = select(column).where(column > after).order_by(column)
                    ids = [row.agent_id for row in conn.execute(query.limit(self.page))]
            except (AgentError, SQLAlchemyError):
                return
            yield from (UUID(i) for i in ids)
            if len(ids) < self.page:
                return
            after = ids[-1]
