"""The OpenAI Agents SDK's ``Session``, kept in agentlog (extra ``openai-agents``).

``AgentlogSession`` implements the SDK's ``Session`` protocol (``get_items`` with
``limit``, ``add_items``, ``pop_item``, ``clear_session``) on an ``AgentLog``: each SDK
session is an ``ItemSession`` aggregate with the id ``session_uuid(session_id)``, and
each item an event of it, given back exactly as it was added. Behaviour follows the
SDK's ``SQLiteSession``: ``limit`` (or ``session_settings.limit``) gives the newest N
items in chronological order (0: none; negative: all), ``pop_item`` removes and returns
the newest item (None if empty), ``clear_session`` empties the session.

The store calls are blocking: they run in a worker thread (``asyncio.to_thread``, as the
SDK's SQLite session does), one at a time per session object. Writers in other threads
or processes are safe too: a save that loses a race reloads and tries again.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any, TypeVar, cast
from uuid import UUID

from agents.items import TResponseInputItem
from agents.memory.session_settings import SessionSettings, resolve_session_limit

from agentlog.adapters.storage import DEFAULT_URL, open_log
from agentlog.domain import AgentLog, ItemSession, SessionLog, UnknownAgentError, session_uuid

_T = TypeVar("_T")


class AgentlogSession:
    """An OpenAI Agents SDK session whose items are events in an agentlog store.

    ``log`` is an open ``AgentLog`` (kept open by its owner) or a storage URL (opened
    here, closed by ``close``). ``actor`` is recorded on every event.
    """

    session_settings: SessionSettings | None

    def __init__(
        self,
        session_id: str,
        log: AgentLog | str = DEFAULT_URL,
        *,
        session_settings: SessionSettings | None = None,
        actor: str = "openai-agents",
    ) -> None:
        self._owned = isinstance(log, str)
        self.log = open_log(log) if isinstance(log, str) else log
        self.session_id = session_id
        self.session_settings = session_settings
        self.agent_id: UUID = session_uuid(session_id)
        """The id of the session's aggregate: what ``agentlog log``, ``audit`` and ``fork`` take."""
        self._sessions = SessionLog(self.log, sdk="openai-agents", actor=actor)
        self._lock = threading.Lock()

    @classmethod
    def of_agent(cls, log: AgentLog, agent_id: UUID, **kwargs: Any) -> AgentlogSession:
        """The session stored as agent ``agent_id``: a fork (``agentlog fork``) of one."""
        stored = log.get(agent_id)
        if not isinstance(stored, ItemSession):
            raise UnknownAgentError(agent_id)
        session = cls(stored.session_id, log, **kwargs)
        session.agent_id = agent_id
        return session

    async def get_items(self, limit: int | None = None) -> list[TResponseInputItem]:
        """The session's items, oldest first: all, or the newest ``limit``."""
        n = resolve_session_limit(limit, self.session_settings)
        items = await self._run(lambda: self._sessions.items(self.agent_id, n))
        return cast(list[TResponseInputItem], items)

    async def add_items(self, items: list[TResponseInputItem]) -> None:
        """Append items, in order, in one save."""
        stored = [dict(cast(dict[str, Any], item)) for item in items]
        await self._run(lambda: self._sessions.add(self.agent_id, self.session_id, stored))

    async def pop_item(self) -> TResponseInputItem | None:
        """Remove and return the newest item (None if the session is empty)."""
        item = await self._run(lambda: self._sessions.pop(self.agent_id))
        return cast(TResponseInputItem | None, item)

    async def clear_session(self) -> None:
        """Remove every item (the log keeps them, and that they were cleared)."""
        await self._run(lambda: self._sessions.clear(self.agent_id))

    def close(self) -> None:
        """Close the store, if this session opened it."""
        if self._owned:
            self.log.close()

    async def _run(self, call: Callable[[], _T]) -> _T:
        def locked() -> _T:
            with self._lock:
                return call()

        return await asyncio.to_thread(locked)
