"""Walk one agent's stored events in version order, page by page, checking its hash chain.

What a valid chain is belongs to :class:`agentlog.domain.chain.ChainLinks` alone; this
module feeds it the stored rows (their state as written, before upcasting) and turns
its verdict, and any row that cannot even be decoded, into a :class:`ChainBreak` that
names the agent, the version and the event. It also checks that each row's bytes are
the very bytes the mapper writes for that state, so an edit that parses to the same
JSON (``1.0`` -> ``1e0``) is a break too. Memory stays bounded: one page of rows at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, cast
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from eventsourcing.utils import TopicError, resolve_topic

from agentlog.adapters.mapper import PydanticMapper, inflate
from agentlog.domain import AgentError, AgentLog, UnknownAgentError
from agentlog.domain.chain import ChainLinks

PAGE = 500
"""Stored rows read per query."""


@dataclass(frozen=True)
class ChainBreak:
    """The first place where an agent's stored history fails its chain."""

    agent_id: UUID
    version: int
    topic: str | None
    """The stored topic of the failing row (None when the event is missing)."""
    reason: str

    @property
    def event(self) -> str:
        """The event's type name (``Agent.ToolCalled``), or its raw topic if unknown."""
        if self.topic is None:
            return "missing"
        try:
            return str(resolve_topic(self.topic).__qualname__)
        except (TopicError, AttributeError, ValueError):
            return self.topic

    def __str__(self) -> str:
        return f"agent {self.agent_id} version {self.version} ({self.event}): {self.reason}"


class ChainWalk:
    """Reads an agent's rows in pages and checks each link; stops checking at the first break.

    Iterate :meth:`rows` and pass each row to :meth:`check` (or not, to skip checking).
    After the walk, ``first_break`` is the break or None, ``checked`` the rows checked,
    ``last_version`` the last version that linked, and ``digests`` holds the digests of
    the versions asked for in ``keep``.
    """

    def __init__(
        self,
        log: AgentLog,
        agent_id: UUID,
        *,
        upto: int | None = None,
        keep: frozenset[int] = frozenset(),
        page: int | None = None,
        on_page: Callable[[int], None] | None = None,
    ) -> None:
        self.log, self.agent_id, self.upto, self.keep = log, agent_id, upto, keep
        self.page = page or PAGE
        self.on_page = on_page
        self.mapper = cast(PydanticMapper, log.mapper)
        self.links = ChainLinks(prev_version=0)  # a walk from the start: version 1 first
        self.first_break: ChainBreak | None = None
        self.checked = 0
        self.last_version = 0
        self.digests: dict[int, str] = {}

    def rows(self) -> Iterator[StoredEvent]:
        """The agent's stored rows in version order (up to ``upto``), one page at a time."""
        after: int | None = None
        while page := self.log.recorder.select_events(
            self.agent_id, gt=after, lte=self.upto, limit=self.page
        ):
            if self.on_page:
                self.on_page(len(page))
            yield from page
            after = page[-1].originator_version
            if len(page) < self.page:
                return

    def check(self, stored: StoredEvent) -> dict[str, Any] | None:
        """The row's stored state if it links to the chain so far, else None (the break
        is recorded in ``first_break``; later rows are not checked)."""
        if self.first_break is not None:
            return None
        version = stored.originator_version
        try:
            state = self.mapper.decode_state(stored)
            self._check_encoding(stored, state)
            digest = self.links.feed(stored.topic, str(self.agent_id), version, state)
        except (AgentError, ValueError) as e:
            self._broke(stored, str(getattr(e, "reason", e)))
            return None
        self.checked += 1
        self.last_version = version
        if version in self.keep:
            self.digests[version] = digest
        return state

    def _broke(self, stored: StoredEvent, reason: str) -> None:
        version, expected = stored.originator_version, self.last_version + 1
        if version > expected:  # a gap: name the first missing version
            self.first_break = ChainBreak(self.agent_id, expected, None, reason)
        else:
            self.first_break = ChainBreak(self.agent_id, version, stored.topic, reason)

    def _check_encoding(self, stored: StoredEvent, state: dict[str, Any]) -> None:
        """The row holds exactly what the mapper writes for its state, byte for byte."""
        mapper = self.mapper
        if mapper.cipher:
            return  # authenticated encryption already refused any changed byte
        if mapper.transcoder.encode(state) != inflate(stored.state):
            msg = "its stored bytes are not the mapper's encoding of its content (edited)"
            raise ValueError(msg)


def checked_events(walk: ChainWalk) -> Iterator[Any]:
    """The walk's events, decoded (bad data raises, naming the event), each checked
    against the chain on the way; raises :class:`UnknownAgentError` if there are none."""
    mapper = walk.mapper
    for stored in walk.rows():
        state = walk.check(stored)  # decoded once: for the chain, then for the event
        yield (
            mapper.to_domain_event(stored)
            if state is None
            else mapper.event_from_state(stored, state)
        )
    if walk.checked == 0 and walk.first_break is None:
        raise UnknownAgentError(walk.agent_id)


def first_break(log: AgentLog, agent_id: UUID, upto: int | None = None) -> ChainBreak | None:
    """Where the agent's events (up to ``upto``) first fail their chain, or None."""
    walk = ChainWalk(log, agent_id, upto=upto)
    for stored in walk.rows():
        if walk.check(stored) is None:
            break
    return walk.first_break
