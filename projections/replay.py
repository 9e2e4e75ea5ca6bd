"""Agents replayed in memory by the agent-row views, shared by those that stand together.

The state and runnable views both keep each agent's replayed state; rebuilt in one pass,
they would replay every event twice. Views that start together, empty, at the same
position (a rebuild of both) read one :class:`Replay` instead: the first to get a batch
applies it, the others take the agents it touched. They part as soon as one of them
must start over (a rollback, another follower moved it) or the replay drops agents
(past its capacity): each then keeps its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from eventsourcing.domain import OriginatorVersionError

from agentlog.domain import Agent, Aggregate, DamagedHistoryError, GraphThread
from agentlog.domain.history import MISSING
from agentlog.projections.view import Positioned


class Reader(Protocol):
    """A view that reads a replay: what the replay needs to know of it."""

    def has_unwritten(self) -> bool:
        """Whether it changed agents it has not written yet."""

    def part(self) -> None:
        """Stop reading the shared replay: keep a fresh one of its own."""

    def drop(self, keys: set[int]) -> None:
        """The replay dropped these agents (all written)."""


KEPT = (Agent, GraphThread)
"""The aggregates a replay keeps: agents, and LangGraph threads (the state view's rows)."""


class Replay:
    """Agents and threads (keyed by their id's int) as replayed up to ``position``."""

    def __init__(self, *, complete: bool) -> None:
        self.agents: dict[int, Aggregate | None] = {}  # None: not kept (no row)
        self.complete = complete  # every agent the view's table has is here
        self.position: int | None = None  # the last event applied
        self.start: int | None = None  # where the last batch applied started
        self.touched: set[int] = set()  # the agents the last batch changed
        self.ignored = 0  # events of the last batch that are not an agent's
        self.readers: list[Reader] = []

    def apply(self, start: int, events: Sequence[Positioned]) -> set[int]:
        """Apply a batch that starts after ``start`` (once: a second reader of the same
        batch gets the agents the first changed); the agents it changed."""
        last = events[-1][0]
        if self.position == last and len(self.readers) > 1:
            if self.start != start:
                msg = f"a shared replay is at {last} from {self.start}, not from {start}"
                raise RuntimeError(msg)
            return self.touched
        agents, touched, ignored = self.agents, set(), 0
        for _, event in events:
            key = event.originator_id.int
            agent = agents.get(key)
            if agent is None and not isinstance(event, Aggregate.Created):
                ignored += 1  # not an agent (another aggregate in the same log)
                continue
            try:
                result = event.mutate(agent)  # the same agent, changed (or a new one)
            except OriginatorVersionError:
                assert agent is not None  # only a second event can be out of sequence
                if event.originator_version <= agent.version:
                    raise  # applied twice: this replay is out of step, the log is not damaged
                raise DamagedHistoryError(event.originator_id, agent.version + 1, MISSING) from None
            if result is not agent:
                agents[key] = result if isinstance(result, KEPT) else None
                ignored += agents[key] is None
            touched.add(key)
        self.start, self.position, self.touched = start, last, touched
        self.ignored = ignored
        return touched

    def shrink(self, capacity: int) -> set[int]:
        """Past ``capacity``, drop the agents kept longest, once no reader has unwritten
        changes; the agents dropped (the other readers then keep their own)."""
        excess = len(self.agents) - capacity
        if excess <= 0 or any(reader.has_unwritten() for reader in self.readers):
            return set()
        dropped = set(list(self.agents)[: excess + capacity // 2])
        for key in dropped:
            del self.agents[key]
        self.complete = False
        keeper, *others = self.readers
        keeper.drop(dropped)
        for reader in others:
            reader.part()
        return dropped

    def leave(self, reader: Reader) -> None:
        """``reader`` no longer reads this replay."""
        if reader in self.readers:
            self.readers.remove(reader)
