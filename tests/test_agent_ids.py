"""Short ids resolve through the state view's index; the log is scanned only for agents
the view has not seen yet."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import pytest

from agentlog.adapters.agent_ids import resolve
from agentlog.adapters.views import Store, open_store
from agentlog.domain import AgentLog, AmbiguousAgentError, UnknownAgentError

from conftest import store_url


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    store = open_store(store_url(request.param, tmp_path))
    yield store
    store.close()


def no_scans(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make a scan of the log fail the test."""

    def scan(self: AgentLog, ref: str) -> UUID:
        raise AssertionError(f"scanned the log for {ref!r}")

    monkeypatch.setattr(AgentLog, "resolve", scan)


def agents(store: Store, n: int) -> list[UUID]:
    return [store.log.create_agent(f"a{i}") for i in range(n)]


def test_a_unique_prefix_resolves_through_the_view(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = agents(store, 20)
    no_scans(monkeypatch)
    for agent_id in ids:
        whole = str(agent_id)
        length = next(
            n for n in range(1, 37) if sum(str(i).startswith(whole[:n]) for i in ids) == 1
        )
        assert resolve(store.log, store.views, whole[:length]) == agent_id
        assert resolve(store.log, store.views, whole[:length].upper()) == agent_id
        assert resolve(store.log, store.views, whole) == agent_id


def test_a_shared_prefix_is_ambiguous_and_says_how_many(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = agents(store, 40)  # 40 ids, 16 first characters: some are shared
    no_scans(monkeypatch)
    first, sharing = Counter(str(i)[0] for i in ids).most_common(1)[0]
    with pytest.raises(AmbiguousAgentError) as error:
        resolve(store.log, store.views, first)
    assert error.value.matches == sharing > 1


def test_an_unknown_prefix_is_refused_without_a_scan_when_the_view_is_current(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = agents(store, 5)
    no_scans(monkeypatch)
    absent = next(c for c in "0123456789abcdef" if not any(str(i).startswith(c) for i in ids))
    for ref in (absent, "zz", "", "; drop table", "%"):
        with pytest.raises(UnknownAgentError):
            resolve(store.log, store.views, ref)


def test_an_agent_the_view_has_not_seen_is_found_in_the_log(tmp_path: Path) -> None:
    url = store_url("sqlite", tmp_path)
    seen = open_store(url)
    try:
        agents(seen, 3)
    finally:
        seen.close()
    store = open_store(url, embedded=False, catch_up=False)
    try:
        (new,) = agents(store, 1)
        assert resolve(store.log, store.views, str(new)[:12]) == new
    finally:
        store.close()
