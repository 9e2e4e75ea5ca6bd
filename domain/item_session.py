"""An SDK conversation session stored as an agent: its items are events.

``ItemSession`` holds what an agent SDK's session holds (the OpenAI Agents SDK's
``Session``: a list of input items, plain JSON dicts), as one ``ItemAdded`` event per
item, ``ItemPopped`` for a removal of the newest item and ``SessionCleared`` for a
clear. Nothing is deleted: the live list is derived. State stays bounded (the number of
live items); the items are read from the events, newest first, so reading the last N
costs the events recorded since the N-th newest live item (see ``live_items``).

It is an ``Agent`` (idle, never given a task), so ``agentlog ls``, ``show``, ``log``,
``audit``, ``verify``, ``export`` and ``fork`` work on it, and the items that are
messages, tool calls and tool results appear in the transcript view (``message_for``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar
from uuid import UUID, uuid5

from pydantic import BaseModel, JsonValue

from agentlog.domain.agent import Agent, AgentState
from agentlog.domain.errors import SessionCommandError
from agentlog.domain.values import AgentConfig, Lineage

SESSION_NAMESPACE = UUID("5b0d5f8e-3c1e-4d4e-9a51-6a9e0c1f7a10")
"""Namespace of the ids of SDK sessions: ``uuid5(SESSION_NAMESPACE, session_id)``."""


def session_uuid(session_id: str) -> UUID:
    """The aggregate id of the SDK session named ``session_id`` (the same in every store)."""
    return uuid5(SESSION_NAMESPACE, session_id)


class ItemSessionState(AgentState):
    """An agent's state plus the session's id and its number of live items."""

    session_id: str
    items: int


class ItemSession(Agent):
    """A conversation session of an agent SDK, whose items are the session's events."""

    TOPIC: ClassVar[str] = "agentlog:ItemSession@1"  # its events: agentlog:ItemSession.<Name>@1
    State: ClassVar[type[BaseModel]] = ItemSessionState

    class Event(Agent.Event):
        """Base class of the session's events."""

    class Created(Agent.Created, Event):
        """The session came into being under the SDK's session id."""

        session_id: str

    class ItemAdded(Event):
        """One item was appended to the session, exactly as the SDK gave it."""

        item: dict[str, JsonValue]

        def apply(self, session: ItemSession) -> None:
            session.items += 1

        @property
        def call_id(self) -> str | None:
            """The tool call a function call or its output belongs to (the audit's call)."""
            value = self.item.get("call_id")
            return value if isinstance(value, str) else None

        @property
        def summary(self) -> str:
            """A line saying what the item is (the audit's detail)."""
            from agentlog.domain.item_messages import item_summary

            return item_summary(self.item)

    class ItemPopped(Event):
        """The newest live item was removed (its ``ItemAdded`` stays in the log)."""

        def apply(self, session: ItemSession) -> None:
            session.items -= 1

    class SessionCleared(Event):
        """Every item was removed (their events stay in the log)."""

        def apply(self, session: ItemSession) -> None:
            session.items = 0

    def __init__(
        self,
        name: str,
        config: AgentConfig,
        lineage: Lineage | None = None,
        actor: str = "user",
        caused_by: int | None = None,
        *,
        session_id: str,
    ) -> None:
        super().__init__(name, config, lineage, actor=actor, caused_by=caused_by)
        self.session_id = session_id
        self.items = 0

    @classmethod
    def open(cls, session_id: str, *, sdk: str = "sdk", actor: str = "user") -> ItemSession:
        """A new, empty session named after the SDK's session id, with the id
        ``session_uuid(session_id)`` (not saved yet); ``sdk`` names the SDK in its
        config's ``model``. Its forks get ids of their own."""
        return cls._create(
            cls.Created,
            id=session_uuid(session_id),
            name=session_id,
            config=AgentConfig(model=sdk),
            actor=actor,
            session_id=session_id,
        )

    def add(self, items: Iterable[dict[str, JsonValue]], *, actor: str) -> None:
        """Append items, in order (refused once the session is cancelled)."""
        self.check_not_finished()
        for item in items:
            self.trigger_event(self.ItemAdded, item=item, actor=actor)

    def pop(self, *, actor: str) -> bool:
        """Remove the newest live item; False (and nothing recorded) if there is none."""
        self.check_not_finished()
        if self.items == 0:
            return False
        self.trigger_event(self.ItemPopped, actor=actor)
        return True

    def clear(self, *, actor: str) -> None:
        """Remove every item (recorded even when empty, as the request it was)."""
        self.check_not_finished()
        self.trigger_event(self.SessionCleared, actor=actor)

    def start_task(self, goal: str, *, actor: str = "user", **_: Any) -> None:
        """Refused: an SDK session is driven by its SDK, never by agentlog's workers."""
        raise SessionCommandError(self.id, "start")

    def receive_user_message(self, text: str, *, actor: str = "user", **_: Any) -> None:
        """Refused: a user message reaches the session as an item, through the SDK."""
        raise SessionCommandError(self.id, "send")


class TailScan:
    """Finds the newest live items from events read newest first.

    A pop removes the newest item live at its time, so read backwards each ``ItemPopped``
    cancels the nearest earlier ``ItemAdded`` not already cancelled (brackets matched
    from the right); a ``SessionCleared`` ends the scan.
    """

    def __init__(self, wanted: int) -> None:
        self.wanted = wanted
        self.found: list[dict[str, JsonValue]] = []  # newest first
        self.pops = 0
        self.done = wanted <= 0

    def feed(self, event: Any) -> None:
        """Take the next older event."""
        if isinstance(event, ItemSession.ItemAdded):
            if self.pops:
                self.pops -= 1
            else:
                self.found.append(event.item)
                self.done = len(self.found) >= self.wanted
        elif isinstance(event, ItemSession.ItemPopped):
            self.pops += 1
        elif isinstance(event, ItemSession.SessionCleared):
            self.done = True

    def items(self) -> list[dict[str, JsonValue]]:
        """The items found, oldest first."""
        return self.found[::-1]
