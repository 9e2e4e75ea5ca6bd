"""Reading lineage: an agent's ancestors, and where two agents' histories part.

A fork's ``Created`` names its parent, the version it was forked at and the parent's
chain head there; walking those links back gives the agent's whole history, root first.
Two agents related by forks share the history up to a common point and differ after it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from uuid import UUID

from agentlog.domain.aggregate import Aggregate
from agentlog.domain.application import AgentLog
from agentlog.domain.errors import UnknownAgentError
from agentlog.domain.values import Lineage

MAX_DEPTH = 10_000  # forks of forks; a longer chain is a cycle in a damaged log


@dataclass(frozen=True)
class Link:
    """One agent on the walk back: its name, where it came from, whether that checks."""

    agent_id: UUID
    name: str
    lineage: Lineage | None
    check: str = ""
    """``verified``, ``mismatch`` (the parent's event there has another digest),
    ``parent missing``, ``unrecorded`` (an old lineage without a digest), or ""."""


@dataclass(frozen=True)
class Segment:
    """A stretch of one agent's own events in a history: versions ``first``..``last``
    (``last`` None: to its head)."""

    agent_id: UUID
    last: int | None = None
    first: int = 1


@dataclass(frozen=True)
class Divergence:
    """Where two histories part: the last event they share, and each one's events after."""

    common: tuple[UUID, int, str] | None
    """(agent id, version, digest) of the last shared event; None if they share nothing."""
    a: list[Aggregate.Event] = field(default_factory=list)
    b: list[Aggregate.Event] = field(default_factory=list)


def ancestry(log: AgentLog, agent_id: UUID) -> list[Link]:
    """The agent, then its parent, grandparent... up to the first agent (no lineage)."""
    links: list[Link] = []
    current: UUID | None = agent_id
    while current is not None and len(links) < MAX_DEPTH:
        created = _created(log, current)
        lineage: Lineage | None = getattr(created, "lineage", None)
        check = "" if lineage is None else _check(log, lineage)
        links.append(Link(current, getattr(created, "name", ""), lineage, check))
        current = None if lineage is None or check == "parent missing" else lineage.parent_id
        if current is not None and any(link.agent_id == current for link in links):
            break  # a cycle cannot come from forking; stop rather than loop
    return links


def history(log: AgentLog, agent_id: UUID) -> list[Segment]:
    """The agent's history as stretches of its ancestors' events, root first."""
    segments = [Segment(agent_id)]
    for link in ancestry(log, agent_id):
        if link.lineage is not None and link.check != "parent missing":
            segments.append(Segment(link.lineage.parent_id, link.lineage.parent_version))
    return segments[::-1]


def divergence(log: AgentLog, a: UUID, b: UUID) -> Divergence:
    """The common point of two agents' histories and the events of each after it."""
    path_a, path_b = history(log, a), history(log, b)
    shared = 0
    while (
        shared < min(len(path_a), len(path_b))
        and path_a[shared].agent_id == path_b[shared].agent_id
    ):
        shared += 1
    if shared == 0:
        return Divergence(None, _events(log, path_a[-1:]), _events(log, path_b[-1:]))
    meet = path_a[shared - 1].agent_id
    head = log.get(meet).version
    end_a = path_a[shared - 1].last or head
    end_b = path_b[shared - 1].last or head
    at = min(end_a, end_b)
    shared_event = _event_at(log, meet, at)
    digest = shared_event.digest if shared_event is not None else ""
    rest_a = [Segment(meet, end_a, at + 1), *path_a[shared:]]
    rest_b = [Segment(meet, end_b, at + 1), *path_b[shared:]]
    return Divergence((meet, at, digest), _events(log, rest_a), _events(log, rest_b))


def _events(log: AgentLog, segments: list[Segment]) -> list[Aggregate.Event]:
    events: list[Aggregate.Event] = []
    for s in segments:
        if s.last is None or s.first <= s.last:
            events.extend(log.events_of(s.agent_id, after=s.first - 1, upto=s.last))
    return events


def _created(log: AgentLog, agent_id: UUID) -> Aggregate.Event:
    created = _event_at(log, agent_id, 1)
    if created is None:
        raise UnknownAgentError(agent_id)
    return created


def _event_at(log: AgentLog, agent_id: UUID, version: int) -> Aggregate.Event | None:
    return next(log.events_of(agent_id, after=version - 1, upto=version), None)


def _check(log: AgentLog, lineage: Lineage) -> str:
    """Whether the parent's event at the fork version has the digest the fork recorded."""
    if _event_at(log, lineage.parent_id, 1) is None:
        return "parent missing"
    event = _event_at(log, lineage.parent_id, lineage.parent_version)
    if event is None:
        return "mismatch"  # the parent's log is shorter than the fork version
    if not lineage.parent_digest:
        return "unrecorded"
    return "verified" if event.digest == lineage.parent_digest else "mismatch"
