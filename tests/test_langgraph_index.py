"""Listing every thread and deleting by run read only the threads they return or change:
the saver's store index (folded from the graph events) says which threads those are."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from langgraph.checkpoint.base import empty_checkpoint

from agentlog.adapters.langgraph import AgentLogSaver

THREADS = 200


def _put(saver: AgentLogSaver, thread: str, run_id: str, n: int = 0) -> None:
    checkpoint = empty_checkpoint()
    checkpoint["channel_values"] = {"xs": [n]}
    checkpoint["channel_versions"] = {"xs": n + 1}
    config: Any = {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}
    saver.put(config, checkpoint, {"run_id": run_id, "step": n}, {"xs": n + 1})


def _fill(url: str) -> None:
    """THREADS threads, thread i in run ``run-{i}``; runs ``shared`` spans threads 3 and 150."""
    with AgentLogSaver(url) as saver:
        for i in range(THREADS):
            _put(saver, f"t{i}", f"run-{i}")
        _put(saver, "t3", "shared", 1)
        _put(saver, "t150", "shared", 1)


def _count_thread_reads(saver: AgentLogSaver) -> list[object]:
    """Every read of one thread's events from the store, recorded as it happens."""
    reads: list[object] = []
    events = saver.log.events
    get: Callable[..., Any] = events.get

    def counted(originator_id: object, *args: Any, **kwargs: Any) -> Any:
        reads.append(originator_id)
        return get(originator_id, *args, **kwargs)

    events.get = counted  # type: ignore[method-assign]
    return reads


def test_delete_for_runs_reads_only_the_threads_of_those_runs(sqlite_url: str) -> None:
    _fill(sqlite_url)
    with AgentLogSaver(sqlite_url) as saver:  # cold: nothing of the store in memory
        reads = _count_thread_reads(saver)
        saver.delete_for_runs(["shared", "run-7"])
        assert len(set(reads)) == 3  # t3, t7, t150 of 200 threads
        left = {t.config["configurable"]["thread_id"] for t in saver.list(None)}
    assert left == {f"t{i}" for i in range(THREADS)} - {"t7"}
    with AgentLogSaver(sqlite_url) as fresh:
        runs = {t.metadata["run_id"] for t in fresh.list(None)}
    assert "shared" not in runs
    assert "run-3" in runs
    assert "run-7" not in runs


def test_listing_by_run_reads_only_the_threads_of_that_run(sqlite_url: str) -> None:
    _fill(sqlite_url)
    with AgentLogSaver(sqlite_url) as saver:
        reads = _count_thread_reads(saver)
        found = list(saver.list(None, filter={"run_id": "shared"}))
    assert sorted(t.config["configurable"]["thread_id"] for t in found) == ["t150", "t3"]
    assert len(set(reads)) == 2


@pytest.mark.parametrize("limit", [1, 5])
def test_listing_with_a_limit_reads_no_more_threads_than_it_returns(
    sqlite_url: str, limit: int
) -> None:
    _fill(sqlite_url)
    with AgentLogSaver(sqlite_url) as saver:
        reads = _count_thread_reads(saver)
        found = list(saver.list(None, limit=limit))
    assert len(found) == limit
    assert 1 <= len(set(reads)) <= limit  # t3 holds two checkpoints


def test_listing_skips_deleted_and_emptied_threads_without_reading_them(sqlite_url: str) -> None:
    _fill(sqlite_url)
    with AgentLogSaver(sqlite_url) as saver:
        for i in range(10, THREADS):
            saver.delete_thread(f"t{i}")
        saver.prune(["t0"], strategy="delete")
    with AgentLogSaver(sqlite_url) as saver:
        reads = _count_thread_reads(saver)
        found = {t.config["configurable"]["thread_id"] for t in saver.list(None)}
    assert found == {f"t{i}" for i in range(1, 10)}
    assert len(set(reads)) == 9


def test_the_index_follows_writes_of_other_savers(sqlite_url: str) -> None:
    with AgentLogSaver(sqlite_url) as mine, AgentLogSaver(sqlite_url) as other:
        _put(mine, "a", "r1")
        assert [t.metadata["run_id"] for t in mine.list(None)] == ["r1"]
        _put(other, "b", "r2")  # after mine caught up
        other.delete_thread("a")
        assert [t.metadata["run_id"] for t in mine.list(None)] == ["r2"]
        _put(other, "c", "r2")
        mine.delete_for_runs(["r2"])
        assert list(other.list(None)) == []
