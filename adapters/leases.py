"""Leases: each agent is advanced by one worker at a time, to avoid wasted work.

A lease is a row per agent in ``agentlog_leases``, in the store's database: who holds
it (the worker process, ``host:pid#n``, and its slot, a turn thread) and until when.
Times are the database's clock, never a host's: workers on hosts whose clocks disagree
still agree on whether a lease expired. A lease is taken by one compare-and-set
statement (an upsert that only overwrites a lease that expired or is this process's
own), renewed while the turn runs, and deleted when it ends (with the worker's next take,
in the same transaction). A lease whose expiry passed
is taken over; so is one whose holder ran on this host and whose process is gone
(``adapters/liveness.py``), at once. The row of a lease nobody gave back (its worker was
killed) is deleted by a sweep once it has been expired for a grace period: workers sweep
when they start and every few minutes (``LeaseKeeper``), operators with ``agentlog
workers --sweep``.

Leases are operational, not facts about an agent: they are not in the event log, and
nothing that must be true depends on them. Two workers that both think they hold an
agent (a lease expired under a holder that still runs) save through the log's
optimistic concurrency, and a tool call runs only after its ``ToolStarted`` claim was
saved: at most once holds without leases; leases only keep workers off each other's
agents.

Every lease transaction locks its rows in one order, by agent id: a take releases the
leases given back and takes its agent in that order, a renewal or a sweep of many
leases locks them through an ordered ``SELECT ... FOR UPDATE`` (:func:`in_key_order`).
Two transactions that each wait for a row the other holds cannot happen, so PostgreSQL
never has a deadlock to break among them; should one lose such a race anyway (a
deadlock, a serialization failure), it is tried again (``adapters/retry_deadlocks.py``).
"""

from __future__ import annotations

import functools
import itertools
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from uuid import NAMESPACE_URL, UUID, uuid5

from sqlalchemy import (
    ClauseElement,
    Column,
    ColumnElement,
    Double,
    Engine,
    Executable,
    Integer,
    MetaData,
    String,
    Table,
    bindparam,
    cast,
    delete,
    extract,
    func,
    inspect,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from agentlog.adapters.lease_writes import EngineWrites, Execute, LeaseWrites, Prepared
from agentlog.adapters.liveness import worker_gone, worker_id
from agentlog.adapters.retry_deadlocks import retrying
from agentlog.domain.claims import WorkerGone

VIEWS_LEASE = uuid5(NAMESPACE_URL, "agentlog:views")
"""Not an agent's lease: the store's view follower's (``adapters/view_follower.py``)."""
LEASE_SECONDS = 30.0
"""How long a lease lasts unless renewed (renewed every third of it while a turn runs)."""
SWEEP_GRACE = 300.0
"""How long an expired lease's row stays (``agentlog workers`` shows it) before a sweep
deletes it."""
SWEEP_EVERY = 300.0
"""Seconds between a worker's sweeps (it also sweeps when it starts)."""

metadata = MetaData()
LEASES = Table(
    "agentlog_leases",
    metadata,
    Column("agent_id", String(36), primary_key=True),
    Column("owner", String(300), nullable=False),  # host:pid#n, the worker process
    Column("slot", Integer, nullable=False),  # which of its turn threads
    Column("taken_at", Double, nullable=False),  # seconds since the epoch, database clock
    Column("expires_at", Double, nullable=False),
)
_instances = itertools.count(1)

__all__ = [
    "LEASES",
    "LEASE_SECONDS",
    "SWEEP_EVERY",
    "SWEEP_GRACE",
    "VIEWS_LEASE",
    "Lease",
    "Leases",
    "new_owner",
    "owner_gone",
]


def new_owner() -> str:
    """A lease owner unique among live processes: ``host:pid#n``, n counting the
    workers made in this process."""
    return f"{worker_id()}#{next(_instances)}"


def owner_gone(owner: str, taken_at: float, gone: WorkerGone = worker_gone) -> bool:
    """Whether the process that holds a lease is known to be gone."""
    return gone(owner.partition("#")[0], datetime.fromtimestamp(taken_at, UTC))


@dataclass
class Lease:
    """One agent, held by one slot of this worker, while its turn runs."""

    agent_id: UUID
    slot: int
    until: float  # time.monotonic() by which it expires, as far as this process knows
    lost: threading.Event = field(default_factory=threading.Event)

    @property
    def held(self) -> bool:
        """Whether the turn may go on: renewed in time, and not taken by another."""
        return not self.lost.is_set() and time.monotonic() < self.until


def now(engine: Engine) -> ColumnElement[float]:
    """The database's clock, in seconds since the epoch."""
    if engine.dialect.name == "sqlite":
        return (func.julianday("now") - 2440587.5) * 86400.0
    return cast(extract("epoch", func.clock_timestamp()), Double)


class Leases:
    """The leases of one worker process (``owner``) on one store's database."""

    def __init__(
        self,
        engine: Engine,
        owner: str | None = None,
        seconds: float = LEASE_SECONDS,
        *,
        gone: WorkerGone = worker_gone,
        writes: LeaseWrites | None = None,
    ) -> None:
        self.engine, self.seconds, self.gone = engine, seconds, gone
        self.writes = writes or EngineWrites(engine)
        """Where its statements run (on SQLite, best the event store's own writer)."""
        self.owner = owner or new_owner()
        self._given_back: list[Lease] = []
        self._lock = threading.Lock()
        create_table(engine)

    def take(self, agent_id: UUID, slot: int) -> Lease | None:
        """The agent's lease for this slot, or None while another live worker holds it.
        Leases given back since the last take are released in the same transaction."""
        started = time.monotonic()
        with self._releasing() as given:
            taken = retrying("lease take", partial(self._take, agent_id, slot, given))
        return Lease(agent_id, slot, started + self.seconds) if taken else None

    def _take(self, agent_id: UUID, slot: int, given: list[Lease]) -> bool:
        """One transaction: release ``given`` and take the lease, every row in agent-id
        order (those before the agent's, the agent's, those after it)."""
        key = str(agent_id)
        with self.writes.transaction() as execute:
            self._release(execute, [lease for lease in given if str(lease.agent_id) <= key])
            taken = self._take_in(execute, agent_id, slot)
            self._release(execute, [lease for lease in given if str(lease.agent_id) > key])
        return taken

    def _take_in(self, execute: Execute, agent_id: UUID, slot: int) -> bool:
        if execute(self._statements.take, agent_id=str(agent_id), slot=slot):
            return True
        rows = execute(self._statements.holder, agent_id=str(agent_id))
        if not rows or not owner_gone(rows[0]["owner"], rows[0]["taken_at"], self.gone):
            return False
        return bool(execute(self._take_over(agent_id, slot, rows[0]["owner"], rows[0]["taken_at"])))

    def renew(self, lease: Lease) -> bool:
        """Push the lease's expiry on; False (and ``lost`` set) if another took it."""
        return not self.renew_all([lease])

    def renew_all(self, leases: Sequence[Lease]) -> list[Lease]:
        """Push the expiry of all these leases on, in one statement; those another took
        (their ``lost`` set)."""
        if not leases:
            return []
        started = time.monotonic()
        statement, size = self._statements.renewal(len(leases))
        pairs = [(str(lease.agent_id), lease.slot) for lease in leases]
        pairs += [pairs[-1]] * (size - len(pairs))  # padded: one statement per size
        values: dict[str, str | int] = {f"a{n}": agent for n, (agent, _) in enumerate(pairs)}
        values.update({f"s{n}": slot for n, (_, slot) in enumerate(pairs)})
        renewed = retrying("lease renewal", partial(self._renew, statement, values))
        lost = []
        for lease in leases:
            if (str(lease.agent_id), lease.slot) in renewed:
                lease.until = started + self.seconds
            else:
                lease.lost.set()
                lost.append(lease)
        return lost

    def _renew(self, statement: Prepared, values: dict[str, str | int]) -> set[tuple[str, int]]:
        with self.writes.transaction() as execute:
            return {(row["agent_id"], row["slot"]) for row in execute(statement, **values)}

    def release(self, lease: Lease) -> None:
        """Give the lease up now (if it is still this slot's)."""
        retrying("lease release", partial(self._release_now, [lease]))

    def _release_now(self, given: list[Lease]) -> None:
        with self.writes.transaction() as execute:
            self._release(execute, given)

    def give_back(self, lease: Lease) -> None:
        """Give the lease up with the next take or :meth:`flush` (one transaction fewer
        per turn: a worker takes its next agent and releases its last one together)."""
        with self._lock:
            self._given_back.append(lease)

    def flush(self) -> None:
        """Release the leases given back (before a worker waits, and when it stops)."""
        with self._releasing() as given:
            if given:
                retrying("lease release", partial(self._release_now, given))

    def sweep(self, older_than: float = SWEEP_GRACE) -> int:
        """Delete, in one statement, the leases that expired more than ``older_than``
        seconds ago by the database's clock (rows of workers that died); how many. A live
        lease is never deleted, nor one taken over meanwhile: the condition is checked on
        the row as it is when deleted."""
        if not older_than >= 0:  # also refuses NaN
            raise ValueError(f"older_than must be a number of seconds >= 0, not {older_than}")
        stale = LEASES.c.expires_at < now(self.engine) - older_than
        rows = in_key_order(self.engine, stale, skip_locked=True)  # one taken now: not stale
        statement = delete(LEASES).where(rows).returning(LEASES.c.agent_id)
        return retrying("lease sweep", partial(self._sweep, statement))

    def _sweep(self, statement: Executable) -> int:
        with self.writes.transaction() as execute:
            return len(execute(statement))

    @contextmanager
    def _releasing(self) -> Iterator[list[Lease]]:
        """The leases given back, to release; if the transaction they are released in
        fails, they stay to be given back."""
        with self._lock:
            given, self._given_back = self._given_back, []
        try:
            yield given
        except BaseException:
            with self._lock:
                self._given_back[:0] = given
            raise

    def _release(self, execute: Execute, given: list[Lease]) -> None:
        for lease in in_order(given):  # mostly one: the last turn's
            execute(self._statements.release, agent_id=str(lease.agent_id), slot=lease.slot)

    @functools.cached_property
    def _statements(self) -> _Statements:
        return _Statements(self)

    def _upsert(self) -> ClauseElement:
        """Insert the lease (``agent_id``, ``slot``), or overwrite one that expired or is
        this process's own."""
        clock = now(self.engine)
        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        insert = dialect.insert(LEASES).values(
            agent_id=bindparam("agent_id", type_=String),
            owner=self.owner,
            slot=bindparam("slot", type_=Integer),
            taken_at=clock,
            expires_at=clock + self.seconds,
        )
        fresh = insert.excluded
        upsert: ClauseElement = insert.on_conflict_do_update(
            index_elements=[LEASES.c.agent_id],
            set_={c: fresh[c] for c in ("owner", "slot", "taken_at", "expires_at")},
            where=or_(LEASES.c.expires_at < clock, LEASES.c.owner == literal(self.owner)),
        ).returning(LEASES.c.agent_id)
        return upsert

    def _take_over(self, agent_id: UUID, slot: int, owner: str, taken_at: float) -> Executable:
        """Overwrite the lease of a process known to be gone, if it is still that lease."""
        clock = now(self.engine)
        return (
            update(LEASES)
            .where(
                LEASES.c.agent_id == str(agent_id),
                LEASES.c.owner == owner,
                LEASES.c.taken_at == taken_at,
            )
            .values(owner=self.owner, slot=slot, taken_at=clock, expires_at=clock + self.seconds)
            .returning(LEASES.c.agent_id)
        )


class _Statements:
    """A worker's lease statements, compiled once (see :class:`Prepared`)."""

    def __init__(self, leases: Leases) -> None:
        self.leases = leases
        self.renewals: dict[int, Prepared] = {}
        self.take = Prepared(leases._upsert())
        self.holder = Prepared(select(LEASES).where(LEASES.c.agent_id == bindparam("agent_id")))
        mine = (LEASES.c.owner == leases.owner) & (LEASES.c.slot == bindparam("slot"))
        self.release = Prepared(
            delete(LEASES).where(LEASES.c.agent_id == bindparam("agent_id"), mine)
        )

    def renewal(self, count: int) -> tuple[Prepared, int]:
        """The renewal of ``count`` leases, and how many (agent, slot) pairs it takes: the
        next power of two (pad with a repeated pair), so a worker compiles a handful of
        renewals in all, not one per call (a statement with an ``OR`` of one condition
        per lease had SQLAlchemy build its cache key anew every time)."""
        size = 1 << max(0, count - 1).bit_length()
        if size not in self.renewals:
            engine = self.leases.engine
            pairs = [
                (LEASES.c.agent_id == bindparam(f"a{n}", type_=String))
                & (LEASES.c.slot == bindparam(f"s{n}", type_=Integer))
                for n in range(size)
            ]
            self.renewals[size] = Prepared(
                update(LEASES)
                .where(in_key_order(engine, (LEASES.c.owner == self.leases.owner) & or_(*pairs)))
                .values(expires_at=now(engine) + self.leases.seconds)
                .returning(LEASES.c.agent_id, LEASES.c.slot)
            )
        return self.renewals[size], size


def in_order(leases: Sequence[Lease]) -> list[Lease]:
    """The leases in the order every lease transaction locks rows: by agent id (as text,
    byte by byte: PostgreSQL's ``COLLATE "C"``)."""
    return sorted(leases, key=lambda lease: str(lease.agent_id))


def in_key_order(
    engine: Engine, where: ColumnElement[bool], *, skip_locked: bool = False
) -> ColumnElement[bool]:
    """``where``, for an UPDATE or DELETE of many leases: on PostgreSQL, the rows it
    matches are first locked in agent-id order (a subselect ``ORDER BY agent_id FOR
    UPDATE``), not in the order a scan meets them, so two statements that lock some of
    the same rows cannot deadlock; with ``skip_locked``, rows another transaction holds
    are left out instead of waited for. SQLite locks the whole file: ``where`` as is."""
    if engine.dialect.name != "postgresql":
        return where
    rows = (
        select(LEASES.c.agent_id)
        .where(where)
        .order_by(LEASES.c.agent_id.collate("C"))
        .with_for_update(skip_locked=skip_locked)
    )
    return LEASES.c.agent_id.in_(rows)


def create_table(engine: Engine) -> None:
    """Create the leases table if there is none (two workers may race to create it)."""
    try:
        metadata.create_all(engine)
    except SQLAlchemyError:
        if not inspect(engine).has_table(LEASES.name):
            raise
