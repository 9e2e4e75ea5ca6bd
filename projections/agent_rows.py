"""Views whose rows are derived from each agent's state, replayed by the domain itself.

Each row keeps the agent's bounded snapshot state, so applying an event is exactly what
the aggregate does on replay (``event.mutate``): the view can never disagree with the
domain's rules.

The agents touched are kept in memory across batches (a staged view): a batch replays
its events onto them, and a flush writes each agent changed since the last flush once,
in two bulk statements (insert for new rows, update for known ones) compiled once.
Agents not in memory are read in one query per batch; from an empty build (a rebuild)
the view knows every row it has, and reads nothing. Memory stays bounded: past
``capacity`` agents, the follower flushes and the agents kept longest are dropped.
Rebuilt in one pass, state and runnable replay the events once for both
(:mod:`agentlog.projections.replay`).
"""

from __future__ import annotations

import json
from abc import abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar
from uuid import UUID

from eventsourcing.utils import TopicError, get_topic, resolve_topic
from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    String,
    Table,
    Text,
    bindparam,
    select,
)

from agentlog.domain import Aggregate, UnknownTopicError
from agentlog.domain.aggregate import id_text
from agentlog.projections.bulk import BulkWrite
from agentlog.projections.replay import Replay
from agentlog.projections.seal import PLAIN, Seal
from agentlog.projections.snapshot_text import TEXTS
from agentlog.projections.view import Positioned, View

_LOAD_CHUNK = 500  # agent ids per query (databases cap the parameters of a statement)


def state_columns() -> list[Column[Any]]:
    """The columns every agent-row table starts with."""
    return [
        Column("agent_id", String(36), primary_key=True),
        Column("topic", Text, nullable=False),
        Column("version", BigInteger, nullable=False),
        Column("state", Text, nullable=False),  # sealed with a cipher key
    ]


class AgentRowsView(View):
    """A view with one row per agent, computed from the agent's replayed state."""

    staged: ClassVar[bool] = True
    own_columns: ClassVar[tuple[str, ...]] = ()
    """The columns :meth:`own_row` makes, in the table's order (none: it makes no row)."""
    capacity: ClassVar[int] = 10_000
    """Agents kept in memory at most (about 2.5 KB each), give or take a batch."""

    rows: Table
    _replay: Replay

    def __init__(self, build: int, seal: Seal = PLAIN) -> None:
        super().__init__(build, seal)
        c = self.rows.c
        keys = [col.key for col in c]
        first = [col.key for col in state_columns()]
        self._keys = None if keys[: len(first)] == first else keys  # None: the usual order
        self._own = keys[len(first) :]  # then the columns of columns_for, in order
        cls = type(self)
        maker = next(c for c in cls.__mro__ if "own_row" in c.__dict__)
        self._direct = (
            bool(cls.own_columns)
            and self._own == list(cls.own_columns)
            and cls.columns_for is maker.__dict__.get("columns_for")
        )
        """Whether :meth:`own_row` gives the row's own columns: the table has them in its
        order, and ``columns_for`` is the one beside it (not overridden)."""
        self._topics: dict[type[Any], str] = {}
        self._insert = BulkWrite.insert(self.rows)
        self._update = BulkWrite.update(self.rows, ["agent_id"])  # the same row as an insert
        self._select = select(c.agent_id, c.topic, c.version, c.state).where(
            c.agent_id.in_(bindparam("ids", expanding=True))
        )
        self.reset(-1)

    @abstractmethod
    def columns_for(self, agent: Any) -> dict[str, Any]:
        """The row's own columns for this agent's state (an aggregate ``keeps`` says yes to)."""

    def keeps(self, aggregate: Aggregate) -> bool:
        """Whether the view has a row for this aggregate (the replay also keeps threads)."""
        return True

    def reset(self, position: int) -> None:
        """Forget the agents kept; at position 0 the table is known to be empty."""
        if hasattr(self, "_replay"):
            self._replay.leave(self)
        self._replay = Replay(complete=position == 0)  # every row of the table is kept
        self._replay.readers.append(self)
        self._stored: set[int] = set()  # agents kept whose row is in the table
        self._dirty: set[int] = set()  # agents changed since the last flush
        self._at = position

    def share_memory_with(self, other: View) -> bool:
        """Read the other agent-row view's replay (both empty, at the same position)."""
        if not (isinstance(other, AgentRowsView) and other.capacity == self.capacity):
            return False
        mine, theirs = self._replay, other._replay
        empty = all(r.complete and not r.agents and r.position is None for r in (mine, theirs))
        if not empty or self._at != other._at:
            return False
        mine.leave(self)
        self._replay = theirs
        theirs.readers.append(self)
        return True

    def process(self, conn: Connection, events: Sequence[Positioned]) -> None:
        """Replay the batch onto the agents it touches, in memory (once, if shared)."""
        if not self._replay.complete:
            self._load(conn, {e.originator_id for _, e in events})
        self._dirty |= self._replay.apply(self._at, events)
        self._at = events[-1][0]

    def skipped(self) -> int:
        """Events of the last batch of aggregates that are not agents (no row)."""
        return self._replay.ignored

    def wants_flush(self) -> bool:
        """Time to write: too many agents kept (else the follower says when)."""
        return len(self._replay.agents) > self.capacity

    def flush(self, conn: Connection) -> None:
        """Write each agent changed since the last flush, once; then keep fewer agents
        if there are too many."""
        inserts: list[tuple[Any, ...]] = []
        updates: list[tuple[Any, ...]] = []
        agents, stored = self._replay.agents, self._stored
        written = set()
        for key in self._dirty:
            if (agent := agents[key]) is not None and self.keeps(agent):
                (updates if key in stored else inserts).append(self._values(agent))
                written.add(key)
        self._insert(conn, inserts)
        self._update(conn, updates)
        stored.update(written)
        self._dirty.clear()
        self._replay.shrink(self.capacity)

    def has_unwritten(self) -> bool:
        """Whether agents changed since the last flush."""
        return bool(self._dirty)

    def part(self) -> None:
        """Keep a replay of its own from now on (everything is written)."""
        self._replay.leave(self)
        self._replay = Replay(complete=False)
        self._replay.readers.append(self)
        self._stored = set()

    def drop(self, keys: set[int]) -> None:
        """Agents no longer kept (all written)."""
        self._stored -= keys

    def own_row(self, agent: Any) -> tuple[Any, ...] | None:
        """The row's own columns as a tuple in the order of ``own_columns`` (no dict per
        agent), or None: then ``columns_for`` gives them. ``columns_for`` beside an
        ``own_row`` is ``dict(zip(own_columns, own_row(agent)))``."""
        return None

    def own_values(self, agent: Any) -> tuple[Any, ...]:
        """The row's own columns (``columns_for``), in the table's order: made directly
        as a tuple by :meth:`own_row` where it can."""
        if self._direct and (row := self.own_row(agent)) is not None:
            return row
        own = self.columns_for(agent)
        return tuple([own[key] for key in self._own])

    def _values(self, agent: Aggregate) -> tuple[Any, ...]:
        """The agent's row: its columns, in the table's order."""
        cls = type(agent)
        topic = self._topics.get(cls)
        if topic is None:
            topic = self._topics[cls] = get_topic(cls)
        state = self.seal.close(TEXTS.text(agent))
        agent_id = id_text(agent.id)
        if self._keys is not None:  # a table of its own order
            values = {"agent_id": agent_id, "topic": topic, "version": agent.version}
            values = {**values, "state": state, **self.columns_for(agent)}
            return tuple(values[key] for key in self._keys)
        return (agent_id, topic, agent.version, state, *self.own_values(agent))

    def _load(self, conn: Connection, agent_ids: set[UUID]) -> None:
        """Read the rows of the agents not kept, in one query per chunk of ids."""
        agents = self._replay.agents
        ids = [str(a) for a in agent_ids if a.int not in agents]
        for start in range(0, len(ids), _LOAD_CHUNK):
            chunk = ids[start : start + _LOAD_CHUNK]
            found = {row.agent_id: row for row in conn.execute(self._select, {"ids": chunk})}
            for agent_id in chunk:
                row = found.get(agent_id)
                agents[UUID(agent_id).int] = None if row is None else agent_of(row, self.seal)
                if row is not None:
                    self._stored.add(UUID(agent_id).int)


def agent_of(row: Any, seal: Seal = PLAIN) -> Aggregate:
    """The agent (or thread) a row keeps, rebuilt from its snapshot state (sealed with a key)."""
    try:
        agent_class: type[Aggregate] = resolve_topic(row.topic)
    except TopicError:  # written by a process that had the user's module, read without it
        raise UnknownTopicError(row.agent_id, row.version, row.topic) from None
    state = json.loads(seal.open(row.state) or "")
    return agent_class.from_snapshot_state(UUID(str(row.agent_id)), row.version, state)
