"""``agentlog verify``: recompute every agent's hash chain and check what else saw it.

Per agent, one streaming pass over its stored events (:class:`ChainWalk`) checks every
link; on the way, the events up to the agent's newest snapshot are replayed and the
snapshot must equal that replay. Two witnesses outside the chain catch what a chain
alone cannot (a deleted last event, a history rewritten and resealed from some version
on): the newest snapshot and the state view's head (version and head hash) must lie on
the chain. Memory: one page of rows and one agent at a time, plus the set of agent ids
seen (for agents whose first event is gone).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, cast
from uuid import UUID

from eventsourcing.persistence import StoredEvent

from agentlog.adapters.chain_walk import ChainBreak, ChainWalk
from agentlog.adapters.mapper import PydanticMapper
from agentlog.domain import (
    AgentError,
    AgentLog,
    StaleSnapshotError,
    UnknownAgentError,
    UnknownTopicError,
)

Heads = Callable[[UUID], tuple[int, str] | None]
"""The version and head hash a witness (the state view) last saw of an agent, if any."""


@dataclass(frozen=True)
class AgentReport:
    """What verifying one agent found."""

    agent_id: UUID
    events: int
    """Events checked (up to the first break)."""
    snapshots: int
    """Snapshots checked against a replay of the events."""
    first_break: ChainBreak | None

    @property
    def ok(self) -> bool:
        """Whether the agent's history holds together."""
        return self.first_break is None


def verify_agent(
    log: AgentLog,
    agent_id: UUID,
    heads: Heads | None = None,
    on_page: Callable[[int], None] | None = None,
) -> AgentReport:
    """Check one agent's chain, its newest snapshot and the witnesses' heads;
    ``on_page(rows)`` is called after each page of rows is read (for a progress bar)."""
    snapshot = _newest_snapshot(log, agent_id)
    seen = heads(agent_id) if heads else None
    keep = frozenset([seen[0]] if seen else [])
    walk = ChainWalk(log, agent_id, keep=keep, on_page=on_page)
    replay = _Replay(log, snapshot)
    for stored in walk.rows():
        state = walk.check(stored)
        if state is None:
            break
        replay.apply(walk, stored, state)
    if snapshot is not None:
        replay.finish(walk)
    if seen is not None:
        _check_head(walk, *seen)
    if walk.checked == 0 and walk.first_break is None:
        raise UnknownAgentError(agent_id)
    return AgentReport(agent_id, walk.checked, replay.checked, walk.first_break)


def agents_to_verify(log: AgentLog, also: Iterable[UUID] = (), page: int = 500) -> Iterator[UUID]:
    """Every agent with a stored event (in order of first appearance), then those in
    ``also`` (a witness's agents) that have none left."""
    seen: set[UUID] = set()
    start = 1
    while notifications := log.recorder.select_notifications(start, page):
        for n in notifications:
            agent_id = UUID(str(n.originator_id))
            if agent_id not in seen:
                seen.add(agent_id)
                yield agent_id
        start = notifications[-1].id + 1
    yield from (agent_id for agent_id in also if agent_id not in seen)


def _newest_snapshot(log: AgentLog, agent_id: UUID) -> StoredEvent | None:
    if log.snapshots is None:
        return None
    newest = log.snapshots.recorder.select_events(agent_id, desc=True, limit=1)
    return newest[0] if newest else None


def _check_head(walk: ChainWalk, version: int, head_hash: str) -> None:
    last = walk.last_version
    if version > last:
        reason = f"the log ends at version {last}; the state view saw version {version}"
        _record(walk, ChainBreak(walk.agent_id, last + 1, None, reason))
    elif walk.digests.get(version) != head_hash:
        reason = "not the head the state view recorded at this version (history rewritten?)"
        _record(walk, ChainBreak(walk.agent_id, version, _topic_at(walk, version), reason))


def _record(walk: ChainWalk, found: ChainBreak) -> None:
    """Keep the earliest break found."""
    if walk.first_break is None or found.version < walk.first_break.version:
        walk.first_break = found


def _topic_at(walk: ChainWalk, version: int) -> str | None:
    rows = walk.log.recorder.select_events(walk.agent_id, gt=version - 1, lte=version)
    return rows[0].topic if rows else None


class _Replay:
    """Replays an agent's events up to its newest snapshot and compares the two."""

    def __init__(self, log: AgentLog, snapshot: StoredEvent | None) -> None:
        self.log, self.snapshot = log, snapshot
        self.mapper = cast(PydanticMapper, log.mapper)
        self.upto = snapshot.originator_version if snapshot else 0
        self.aggregate: Any = None
        self.checked = 0

    def apply(self, walk: ChainWalk, stored: StoredEvent, state: dict[str, Any]) -> None:
        """Apply one chained event if it is at or before the snapshot's version."""
        if stored.originator_version > self.upto or walk.first_break is not None:
            return
        try:
            event: Any = self.mapper.event_from_state(stored, state)
            self.aggregate = event.mutate(self.aggregate)
        except UnknownTopicError:  # an aggregate of the user's own, its module not loaded
            self.snapshot, self.upto = None, 0  # the chain is checked; the snapshot cannot be
        except (AgentError, ValueError, TypeError, AttributeError, KeyError) as e:
            reason = f"cannot be replayed: {getattr(e, 'reason', e)}"
            walk.first_break = ChainBreak(
                walk.agent_id, stored.originator_version, stored.topic, reason
            )

    def finish(self, walk: ChainWalk) -> None:
        """Compare the snapshot with the replay, if the chain held up to the snapshot."""
        snapshot, found = self.snapshot, walk.first_break
        if snapshot is None or (found is not None and found.version <= self.upto):
            return
        last = walk.last_version
        if last < self.upto:  # the events end before the snapshot
            ends = f"the log ends at version {last}; a snapshot is at {self.upto}"
            _record(walk, ChainBreak(walk.agent_id, last + 1, None, ends))
            return
        reason = self._mismatch(snapshot)
        if reason is None:
            self.checked += 1
        elif reason:
            _record(walk, ChainBreak(walk.agent_id, self.upto, snapshot.topic, reason))

    def _mismatch(self, stored: StoredEvent) -> str | None:
        """Why the snapshot differs from the replay; "" for a stale (unchecked) one."""
        try:
            snapshot: Any = self.log.mapper.to_domain_event(stored)
            restored = snapshot.mutate(None)
        except (StaleSnapshotError, UnknownTopicError):
            return ""  # older than the state's schema (loads ignore it too), or not loaded
        except (AgentError, ValueError, TypeError, AttributeError, KeyError) as e:
            return f"the snapshot cannot be read: {getattr(e, 'reason', e)}"
        if restored.state() != self.aggregate.state() or restored.version != self.upto:
            return "the snapshot does not match a replay of the events before it"
        return None
