"""Commands and reads of SDK sessions (``ItemSession``) in an ``AgentLog``.

Each command is load, command, save; a save that loses a race with another writer of
the same session (``IntegrityError``) reloads and tries again, so concurrent writers
never lose an item and never pop the same one twice.

Reads are tail reads: the number of live items is in the session's bounded state, and
the items are read from its events newest first (pages of ``limit + 8``, doubling), up
to the N-th newest live item. A read costs the events recorded since that item: N plus
the items popped in between (and their pops), never the whole history. A full read
(``limit=None``) stops at the latest clear. A fork's scan goes on into its parent's
events up to the version forked at.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.persistence import IntegrityError
from pydantic import JsonValue

from agentlog.domain.application import AgentLog
from agentlog.domain.errors import UnknownAgentError
from agentlog.domain.item_session import ItemSession, TailScan, session_uuid

Item = dict[str, JsonValue]
_T = TypeVar("_T")
_ATTEMPTS = 20


class SessionLog:
    """The item list of SDK sessions, kept as ``ItemSession`` aggregates in ``log``;
    ``sdk`` names the SDK (recorded as a new session's model), ``actor`` who writes."""

    def __init__(self, log: AgentLog, *, sdk: str = "sdk", actor: str = "sdk") -> None:
        self.log, self.sdk, self.actor = log, sdk, actor

    def load(self, agent_id: UUID) -> ItemSession | None:
        """The session as stored now, or None if nothing was ever added to it."""
        try:
            session = self.log.get(agent_id)
        except UnknownAgentError:
            return None
        if not isinstance(session, ItemSession):
            raise TypeError(f"agent {agent_id} is a {type(session).__name__}, not a session")
        return session

    def items(self, agent_id: UUID, limit: int | None = None) -> list[Item]:
        """The live items, oldest first: all, or the newest ``limit`` (``limit < 0``: all)."""
        session = self.load(agent_id)
        if session is None:
            return []
        wanted = session.items if limit is None or limit < 0 else min(limit, session.items)
        return self._scan(session, wanted).items()

    def add(self, agent_id: UUID, session_id: str, items: Sequence[Item]) -> None:
        """Append items in one save (all or none); creates the session on first use."""
        if not items:
            return

        def command() -> None:
            session = self.load(agent_id)
            if session is None:
                if agent_id != session_uuid(session_id):  # a fork's id, not stored
                    raise UnknownAgentError(agent_id)
                session = ItemSession.open(session_id, sdk=self.sdk, actor=self.actor)
            session.add(items, actor=self.actor)
            self.log.save(session)

        self._retrying(command)

    def pop(self, agent_id: UUID) -> Item | None:
        """Remove the newest live item and return it (None if there is none)."""

        def command() -> Item | None:
            session = self.load(agent_id)
            if session is None or session.items == 0:
                return None
            (item,) = self._scan(session, 1).items()
            session.pop(actor=self.actor)
            self.log.save(session)
            return item

        return self._retrying(command)

    def clear(self, agent_id: UUID) -> None:
        """Remove every item (a session never stored stays unstored)."""

        def command() -> None:
            session = self.load(agent_id)
            if session is not None:
                session.clear(actor=self.actor)
                self.log.save(session)

        self._retrying(command)

    def _scan(self, session: ItemSession, wanted: int) -> TailScan:
        scan, agent_id, upto = TailScan(wanted), session.id, session.version
        page = wanted + 8
        while not scan.done:
            events: list[Any] = list(self.log.events.get(agent_id, lte=upto, desc=True, limit=page))
            for event in events:
                scan.feed(event)
                if scan.done:
                    return scan
            oldest = events[-1] if events else None
            if oldest is None or oldest.originator_version == 1:
                lineage = getattr(oldest, "lineage", None)  # a fork reads on in its parent
                if lineage is None:
                    break
                agent_id, upto = lineage.parent_id, lineage.parent_version
            else:
                upto = oldest.originator_version - 1
            page = min(page * 2, 4096)
        return scan

    @staticmethod
    def _retrying(command: Callable[[], _T]) -> _T:
        for attempt in range(1, _ATTEMPTS):
            try:
                return command()
            except IntegrityError:  # another writer saved first: reload and decide again
                time.sleep(0.002 * attempt * random.random())  # noqa: S311 - jitter
        return command()
