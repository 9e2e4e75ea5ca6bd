"""A worker's lease statements: renewing all its leases in one statement reports lost
exactly those another worker (or another slot) took, leaves them as they are and moves
the others' expiry on; renewals and the candidates query are compiled once (a handful
of renewal statements in all), not once per call. Real SQLite files and a real
PostgreSQL server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from sqlalchemy import ClauseElement, select, update
from sqlalchemy.sql import cache_key, compiler
from sqlalchemy.sql.util import find_tables

from agentlog.adapters.group_commit import unwrapped
from agentlog.adapters.lease_queries import candidates
from agentlog.adapters.lease_writes import writes_for
from agentlog.adapters.leases import LEASES, Lease, Leases
from agentlog.adapters.views import Store, open_store
from agentlog.domain.claims import never_gone

from conftest import store_url

AGENTS = 40


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A fresh store on each backend."""
    opened = open_store(store_url(request.param, tmp_path), embedded=False, catch_up=False)
    yield opened
    opened.close()


def worker_leases(store: Store) -> Leases:
    """A worker's leases, written as a worker writes them (on SQLite, through the store)."""
    engine = store.views.engine
    return Leases(engine, writes=writes_for(engine, unwrapped(store.log.recorder)))


def rows(store: Store) -> dict[str, tuple[str, int, float]]:
    with store.views.engine.connect() as conn:
        found = conn.execute(
            select(LEASES.c.agent_id, LEASES.c.owner, LEASES.c.slot, LEASES.c.expires_at)
        )
        return {r.agent_id: (r.owner, r.slot, r.expires_at) for r in found}  # fmt: skip


def expire(store: Store, agent_ids: list[UUID]) -> None:
    """Make these leases expired, as if their holder had stopped renewing them."""
    ids = [str(a) for a in agent_ids]
    with store.views.engine.begin() as conn:
        conn.execute(update(LEASES).where(LEASES.c.agent_id.in_(ids)).values(expires_at=0.0))


def test_renewing_many_leases_reports_exactly_those_taken_by_others(store: Store) -> None:
    mine, theirs = worker_leases(store), worker_leases(store)
    held = [mine.take(UUID(int=n), slot=n) for n in range(1, AGENTS + 1)]
    assert all(lease is not None for lease in held)
    leases: list[Lease] = [lease for lease in held if lease is not None]
    taken = [leases[n].agent_id for n in (0, 7, 8, 30, AGENTS - 1)]
    expire(store, taken)
    for agent_id in taken:
        assert theirs.take(agent_id, slot=0) is not None
    moved = leases[12]  # this worker took it again in another slot: lost for slot 13
    assert mine.take(moved.agent_id, slot=99) is not None
    before = rows(store)
    lost = mine.renew_all(leases)
    after = rows(store)
    assert sorted(lease.agent_id for lease in lost) == sorted([*taken, moved.agent_id])
    for lease in leases:
        key = str(lease.agent_id)
        if lease in lost:
            assert lease.lost.is_set()
            assert not lease.held
            assert after[key] == before[key]  # another's lease is left as it was
        else:
            assert lease.held
            assert after[key][2] >= before[key][2]
    assert {after[str(a)][0] for a in taken} == {theirs.owner}


def test_renewals_compile_once_per_size_and_build_no_cache_key(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An ``OR`` of one condition per lease had SQLAlchemy build the statement's cache
    key at every renewal (a worker's lease keeper renews K leases every few seconds)."""
    mine = worker_leases(store)
    leases = [mine.take(UUID(int=n), slot=n) for n in range(1, AGENTS + 1)]
    held = [lease for lease in leases if lease is not None]
    compiled, keyed = _count(monkeypatch)
    for count in range(1, AGENTS + 1):
        assert mine.renew_all(held[:count]) == []
    assert len(compiled) <= 7  # sizes 1, 2, 4, ..., 64
    compiled.clear()
    keyed.clear()
    for count in range(1, AGENTS + 1):
        assert mine.renew_all(held[:count]) == []
    assert compiled == []
    assert keyed == []


def test_the_candidates_query_is_compiled_once(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker reads it at every pass."""
    mine, theirs = worker_leases(store), worker_leases(store)
    agents = [store.log.create_agent(f"a{n}", goal="g") for n in range(4)]  # running
    store.views.catch_up_quietly()
    assert theirs.take(agents[0], slot=0) is not None

    def look(limit: int = 10) -> tuple[list[UUID], list[UUID]]:
        with store.views.engine.connect() as conn:
            table = store.views.table(conn, "runnable")
            found = candidates(
                conn, table, store.views.engine, owner=mine.owner, limit=limit, gone=never_gone
            )
        return found.free, found.held

    first = look()
    assert first == (agents[1:], [agents[0]])  # oldest first, those held elsewhere last
    assert look(limit=2) == (agents[1:3], [])
    compiled, keyed = _count(monkeypatch)
    assert look() == first
    assert compiled == []
    assert not [k for k in keyed if _on_leases(k)]


def _count(monkeypatch: pytest.MonkeyPatch) -> tuple[list[object], list[object]]:
    """Statements on the leases table compiled, and cache keys built, from now on."""
    compiled: list[object] = []
    keyed: list[object] = []
    init = compiler.SQLCompiler.__init__
    generate = cache_key.HasCacheKey._generate_cache_key

    def counting_init(self: Any, dialect: Any, statement: Any, *args: Any, **kwargs: Any) -> None:
        if (
            LEASES in getattr(statement, "_from_objects", ())
            or getattr(statement, "table", None) is LEASES
        ):
            compiled.append(statement)  # fmt: skip
        init(self, dialect, statement, *args, **kwargs)

    def counting_key(self: Any) -> Any:
        if isinstance(self, ClauseElement):
            keyed.append(self)
        return generate(self)

    monkeypatch.setattr(compiler.SQLCompiler, "__init__", counting_init)
    monkeypatch.setattr(cache_key.HasCacheKey, "_generate_cache_key", counting_key)
    return compiled, keyed


def _on_leases(statement: object) -> bool:
    """Whether a statement reads or writes the leases table."""
    if not isinstance(statement, ClauseElement):
        return False
    return LEASES in find_tables(statement, include_joins=True, include_crud=True)
