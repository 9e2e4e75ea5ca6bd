"""Holding one agent's lease outside a worker's loop: ``agentlog step`` and ``agentlog
run``, or a program's own ``Worker.step(..., lease=True)`` / ``Worker.run(..., lease=True)``.

The lease is taken as a worker's turn takes it (one compare-and-set statement), renewed
by a keeper thread of its own while the block runs, and deleted when the block ends,
however it ends (a return, an error, Ctrl-C's ``KeyboardInterrupt``). An agent whose
lease a live worker holds is refused at once (:class:`AgentLeasedError`, naming the
holder): a person running an agent by hand and a worker advancing it would only waste
each other's model calls. A process killed while it holds a lease leaves it to expire,
or to be taken over at once by a worker on its host, as a worker's would.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from agentlog.adapters.lease_keeper import LeaseKeeper
from agentlog.adapters.leases import LEASES, Lease, Leases
from agentlog.domain.lease_errors import AgentLeasedError, LeaseLostError
from agentlog.domain.runtime import Step

TAKES = 3
"""Tries to take a lease whose holder gives it back meanwhile (then there is no one to name)."""
log = logging.getLogger(__name__)


@contextmanager
def holding(leases: Leases, agent_id: UUID, slot: int = 0) -> Iterator[Lease]:
    """The agent's lease, held (and renewed) while the block runs, released after it;
    :class:`AgentLeasedError` if a live lease of another worker holds the agent."""
    lease = _take(leases, agent_id, slot)
    try:
        with LeaseKeeper(leases, sweep_every=None) as keeper:
            keeper.hold(lease)
            yield lease
    finally:
        _release(leases, lease)


def _release(leases: Leases, lease: Lease) -> None:
    """Give the lease back; if the database cannot be reached, it expires instead."""
    try:
        leases.release(lease)
    except SQLAlchemyError as e:
        log.warning("agent %s: lease not given back (it expires): %s", lease.agent_id, e)


def _take(leases: Leases, agent_id: UUID, slot: int) -> Lease:
    for _ in range(TAKES):
        lease = leases.take(agent_id, slot)
        if lease is not None:
            return lease
        held = holder(leases, agent_id)
        if held is not None:
            raise AgentLeasedError(agent_id, *held)
    raise AgentLeasedError(agent_id)  # taken and given back between our looks, every time


def holder(leases: Leases, agent_id: UUID) -> tuple[str, float] | None:
    """Who holds the agent's lease (``host:pid#n/slot``) and until when (seconds since
    the epoch, database clock); None if nobody does."""
    query = select(LEASES.c.owner, LEASES.c.slot, LEASES.c.expires_at).where(
        LEASES.c.agent_id == str(agent_id)
    )
    with leases.engine.connect() as conn:
        row = conn.execute(query).first()
    return None if row is None else (f"{row.owner}/{row.slot}", row.expires_at)


def while_held(lease: Lease, on_step: Callable[[Step], None]) -> Callable[[Step], None]:
    """``on_step``, then :class:`LeaseLostError` if the lease was lost (expired unrenewed,
    or taken by another worker): a run stops after the step under way, as a worker's turn
    does (raised after the step was saved, so nothing is half done)."""
    steps = 0

    def checked(step: Step) -> None:
        nonlocal steps
        steps += 1
        on_step(step)
        if not lease.held:
            raise LeaseLostError(lease.agent_id, steps)

    return checked


__all__ = ["TAKES", "holder", "holding", "while_held"]
