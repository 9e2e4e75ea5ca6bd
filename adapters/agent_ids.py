"""Agent ids from what people type: a whole id, a unique prefix of one, or
``thread:THREAD_ID`` for a LangGraph thread stored by ``AgentLogSaver``.

Prefixes resolve through the state view's primary-key index (a range query), so a
short id costs one indexed lookup however long the log is. Only when the view is behind
the log (or stopped) does it fall back to scanning the log for agents it has not seen.
"""

from __future__ import annotations

import string
from uuid import UUID

from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from agentlog.domain import AgentError, AgentLog, AmbiguousAgentError, UnknownAgentError
from agentlog.domain.graph_thread import thread_uuid
from agentlog.projections import Projections

THREAD_PREFIX = "thread:"
_ID_CHARS = frozenset(string.hexdigits.lower() + "-")


def resolve(log: AgentLog, views: Projections | None, ref: str) -> UUID:
    """The id of the one agent whose id is ``ref`` or starts with it (or of the
    LangGraph thread ``thread:THREAD_ID``)."""
    if ref.startswith(THREAD_PREFIX):
        return thread_uuid(ref.removeprefix(THREAD_PREFIX))
    try:
        return UUID(ref)
    except ValueError:
        pass
    prefix = ref.lower().strip()
    if not prefix or not set(prefix) <= _ID_CHARS:
        raise UnknownAgentError(ref)
    if views is not None:
        try:
            matches, current = _from_state_view(views, prefix)
        except (AgentError, SQLAlchemyError):
            matches, current = [], False  # a stopped or missing view: read the log
        if len(matches) > 1:
            raise AmbiguousAgentError(ref, _count(views, prefix))
        if matches:
            return matches[0]
        if current:
            raise UnknownAgentError(ref)
    return log.resolve(ref)


def _from_state_view(views: Projections, prefix: str) -> tuple[list[UUID], bool]:
    """Up to two ids with the prefix, and whether the view has seen the whole log."""
    (state,) = [s for s in views.status() if s.name == "state"]
    with views.engine.connect() as conn:
        table = views.table(conn, "state")
        column = table.c.agent_id
        # Ids hold only 0-9, a-f and '-': '~' sorts after all of them.
        query = select(column).where(column >= prefix, column < prefix + "~").limit(2)
        ids = [UUID(row.agent_id) for row in conn.execute(query)]
    return ids, state.lag == 0


def _count(views: Projections, prefix: str) -> int:
    with views.engine.connect() as conn:
        column = views.table(conn, "state").c.agent_id
        query = select(func.count()).where(column >= prefix, column < prefix + "~")
        return int(conn.execute(query).scalar_one())
