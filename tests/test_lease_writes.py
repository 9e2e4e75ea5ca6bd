"""Lease writes on SQLite go through the event store's own writer (in turn with event
inserts, in the process) and keep every guarantee of leases written through the engine;
a worker renews all its leases in one statement."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from uuid import UUID

import pytest
from sqlalchemy import select

from agentlog.adapters.group_commit import unwrapped
from agentlog.adapters.lease_keeper import LeaseKeeper
from agentlog.adapters.lease_writes import Execute, LeaseWrites, StoreWrites, writes_for
from agentlog.adapters.leases import LEASES, Leases
from agentlog.adapters.tools import ToolRegistry
from agentlog.adapters.views import Store, open_store
from agentlog.adapters.worker import Worker


@pytest.fixture(params=[False, True], ids=["plain", "group-commit"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    opened = open_store(
        f"sqlite:///{tmp_path / 'agentlog.db'}",
        embedded=False,
        catch_up=False,
        create=True,
        group_commit=request.param,
    )
    yield opened
    opened.close()


def store_writes(store: Store) -> StoreWrites:
    writes = writes_for(store.views.engine, unwrapped(store.log.recorder))
    assert isinstance(writes, StoreWrites)
    return writes


def holders(store: Store) -> dict[UUID, tuple[str, int]]:
    with store.views.engine.connect() as conn:
        rows = conn.execute(select(LEASES.c.agent_id, LEASES.c.owner, LEASES.c.slot))
        return {UUID(r.agent_id): (r.owner, r.slot) for r in rows}


def test_a_sqlite_worker_writes_leases_through_the_store(store: Store) -> None:
    writes = Worker(store, ToolRegistry.of([])).leases().writes
    assert isinstance(writes, StoreWrites)
    assert writes.datastore is store_writes(store).datastore


def test_leases_through_the_store_keep_their_guarantees(store: Store) -> None:
    writes, agent_id = store_writes(store), UUID(int=7)
    first = Leases(store.views.engine, seconds=0.5, writes=writes)
    second = Leases(store.views.engine, seconds=0.5, writes=writes)
    held = first.take(agent_id, 0)
    assert held is not None
    assert second.take(agent_id, 0) is None  # live, and not its own
    assert first.take(agent_id, 1) is not None  # its own process's
    time.sleep(0.6)
    taken = second.take(agent_id, 3)
    assert taken is not None  # expired: taken over
    assert not first.renew(held)
    assert held.lost.is_set()
    first.release(held)  # not its own any more: nothing released
    assert holders(store) == {agent_id: (second.owner, 3)}
    other = second.take(UUID(int=8), 4)
    assert other is not None
    second.give_back(taken)
    second.flush()
    assert holders(store) == {UUID(int=8): (second.owner, 4)}


def test_a_lease_take_waits_its_turn_behind_the_stores_writer(store: Store) -> None:
    """While the store's writer connection is in use, a take waits in the process (not
    on SQLite's lock: an open ``BEGIN`` without writes holds no lock), then goes on."""
    writes = store_writes(store)
    leases = Leases(store.views.engine, writes=writes)
    done = threading.Event()

    def take() -> None:
        leases.take(UUID(int=1), 0)
        done.set()

    with writes.datastore.transaction(commit=True):
        thread = threading.Thread(target=take)
        thread.start()
        assert not done.wait(0.3)
    assert done.wait(5)
    thread.join()
    assert set(holders(store)) == {UUID(int=1)}


class CountedWrites:
    """Lease writes that count their transactions."""

    def __init__(self, inner: LeaseWrites) -> None:
        self.inner, self.transactions = inner, 0

    def transaction(self) -> AbstractContextManager[Execute]:
        self.transactions += 1
        return self.inner.transaction()


def test_the_keeper_renews_every_lease_in_one_statement(store: Store) -> None:
    counted = CountedWrites(store_writes(store))
    leases = Leases(store.views.engine, seconds=5, writes=counted)
    other = Leases(store.views.engine, seconds=5)
    mine = [lease for n in range(5) if (lease := leases.take(UUID(int=n), n)) is not None]
    assert len(mine) == 5
    keeper = LeaseKeeper(leases)
    for lease in mine:
        keeper.hold(lease)
    stolen = mine[2]
    with store.views.engine.begin() as conn:  # it expired; another worker took it
        expired = LEASES.update().where(LEASES.c.agent_id == str(stolen.agent_id))
        conn.execute(expired.values(expires_at=0.0))
    assert other.take(stolen.agent_id, 9) is not None
    before = [lease.until for lease in mine]
    counted.transactions = 0
    keeper.renew_all()
    assert counted.transactions == 1
    assert [lease.lost.is_set() for lease in mine] == [False, False, True, False, False]
    assert all(
        lease.until > was for lease, was in zip(mine, before, strict=True) if lease is not stolen
    )
    assert holders(store)[stolen.agent_id] == (other.owner, 9)
