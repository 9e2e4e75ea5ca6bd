"""AgentLogSaver against LangGraph's own checkpointer conformance suite, on SQLite and
PostgreSQL: every base capability and every extended one it implements."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from itertools import count
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.capabilities import ALL_CAPABILITIES
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from agentlog.adapters.graph_values import load
from agentlog.adapters.langgraph import AgentLogSaver
from agentlog.adapters.storage import open_log
from agentlog.adapters.thread_keys import SUFFIX, ShreddedError, ThreadCipher, ThreadKeys
from agentlog.adapters.verify import verify_agent
from agentlog.domain.graph_thread import ChannelBlob, GraphThread, thread_uuid
from agentlog.domain.values import Lineage

from conftest import store_url
from langgraph_child import CALLS, FINAL_ANSWER, build_graph


@pytest.mark.parametrize(
    ("backend", "erasable"), [("sqlite", False), ("postgres", False), ("sqlite", True)]
)
def test_saver_passes_langgraph_conformance_suite(
    backend: str, erasable: bool, tmp_path: Path
) -> None:
    stores = count()

    @checkpointer_test(name=f"AgentLogSaver-{backend}")
    async def saver() -> AsyncIterator[AgentLogSaver]:
        folder = tmp_path / str(next(stores))  # a fresh store for each capability
        folder.mkdir()
        with AgentLogSaver(store_url(backend, folder), erasable=erasable) as fresh:
            yield fresh

    report = asyncio.run(validate(saver))
    failures = {
        name: result.failures for name, result in report.results.items() if not result.passed
    }
    assert failures == {}
    assert set(report.results) == {c.value for c in ALL_CAPABILITIES}


def _put_messages(saver: AgentLogSaver, thread: str, rounds: int) -> list[list[Any]]:
    """Grow a message list by one message a checkpoint; return each stored value."""
    config: RunnableConfig = {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}
    value: list[Any] = []
    stored = []
    for n in range(rounds):
        value = [*value, HumanMessage(f"q{n}") if n % 2 else AIMessage(f"a{n}", id=str(n))]
        checkpoint = empty_checkpoint()
        checkpoint["channel_values"] = {"messages": value}
        checkpoint["channel_versions"] = {"messages": n + 1}
        config = saver.put(config, checkpoint, {"step": n}, {"messages": n + 1})
        stored.append(value)
    return stored


def _blobs(sqlite_url: str, thread: str) -> list[ChannelBlob]:
    log = open_log(sqlite_url)
    try:
        events = list(log.events_of(thread_uuid(thread)))
    finally:
        log.close()
    return [b for e in events if isinstance(e, GraphThread.CheckpointPut) for b in e.blobs]


def test_growing_message_list_is_stored_as_deltas_and_read_back_exactly(sqlite_url: str) -> None:
    with AgentLogSaver(sqlite_url) as saver:
        stored = _put_messages(saver, "t", rounds=12)
    blobs = _blobs(sqlite_url, "t")
    assert [b.base is None for b in blobs] == [True] + [False] * 11
    tails = [load(JsonPlusSerializer(), b.value) for b in blobs[1:] if b.value]
    assert tails == [[m[-1]] for m in stored[1:]]  # each step stores its new message only
    with AgentLogSaver(sqlite_url) as fresh:  # a cold read, from the log alone
        read = [t.checkpoint["channel_values"]["messages"] for t in fresh.list(None)]
    assert read[::-1] == stored
    assert [[type(m) for m in v] for v in read[::-1]] == [[type(m) for m in v] for v in stored]


def test_a_list_that_only_looks_extended_is_stored_whole(sqlite_url: str) -> None:
    config: RunnableConfig = {"configurable": {"thread_id": "t", "checkpoint_ns": ""}}
    values: list[list[Any]] = [[1], [True, 2], [True], [True, 2.0]]
    with AgentLogSaver(sqlite_url) as saver:
        for n, value in enumerate(values):
            checkpoint = empty_checkpoint()
            checkpoint["channel_values"] = {"xs": value}
            checkpoint["channel_versions"] = {"xs": n + 1}
            config = saver.put(config, checkpoint, {}, {"xs": n + 1})
            got = saver.get_tuple(config)
            assert got is not None
            assert got.checkpoint["channel_values"]["xs"] == value
            assert [type(x) for x in got.checkpoint["channel_values"]["xs"]] == [
                type(x) for x in value
            ]
    assert [b.base is None for b in _blobs(sqlite_url, "t")] == [True, True, True, False]


def test_deleted_thread_is_gone_for_readers_and_its_chain_still_verifies(
    sqlite_url: str,
) -> None:
    with AgentLogSaver(sqlite_url) as saver:
        _put_messages(saver, "t", rounds=3)
        saver.delete_thread("t")
        assert saver.get_tuple({"configurable": {"thread_id": "t"}}) is None
        assert list(saver.list(None)) == []
    with AgentLogSaver(sqlite_url) as fresh:
        assert fresh.get_tuple({"configurable": {"thread_id": "t"}}) is None
        again = _put_messages(fresh, "t", rounds=2)  # the id can be used again
        latest = fresh.get_tuple({"configurable": {"thread_id": "t"}})
    assert latest is not None
    assert latest.checkpoint["channel_values"]["messages"] == again[-1]
    log = open_log(sqlite_url)
    try:
        report = verify_agent(log, thread_uuid("t"))
    finally:
        log.close()
    assert report.ok
    assert report.events == 1 + 3 + 1 + 2


def test_copy_is_a_fork_that_records_its_source(sqlite_url: str) -> None:
    with AgentLogSaver(sqlite_url) as saver:
        stored = _put_messages(saver, "a", rounds=4)
        saver.copy_thread("a", "b")
        copy = saver.get_tuple({"configurable": {"thread_id": "b"}})
        source = saver.load_thread("a")
        target = saver.load_thread("b")
    assert copy is not None
    assert source is not None
    assert target is not None
    assert copy.checkpoint["channel_values"]["messages"] == stored[-1]
    assert target.copied_from == Lineage(
        parent_id=source.id, parent_version=source.version, parent_digest=source.head_hash
    )


def test_async_graph_runs_on_the_saver_and_reads_back(sqlite_url: str, tmp_path: Path) -> None:
    config: RunnableConfig = {"configurable": {"thread_id": "async"}}

    async def go() -> Any:
        with AgentLogSaver(sqlite_url) as saver:
            graph = build_graph(saver, tmp_path / "ran.txt")
            await graph.ainvoke({"messages": [HumanMessage("add up")]}, config)
            states = [s async for s in graph.aget_state_history(config)]
            return states, await saver.aget_tuple(config)

    states, latest = asyncio.run(go())
    messages = latest.checkpoint["channel_values"]["messages"]
    assert messages[-1].content == FINAL_ANSWER
    assert len(states) == len({s.config["configurable"]["checkpoint_id"] for s in states})
    assert [len(s.values["messages"]) for s in states] == sorted(
        (len(s.values["messages"]) for s in states), reverse=True
    )
    assert (tmp_path / "ran.txt").read_text().count("add") == CALLS


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_deleting_an_erasable_thread_destroys_its_payloads(backend: str, tmp_path: Path) -> None:
    url = store_url(backend, tmp_path)
    with AgentLogSaver(url, erasable=True) as saver:
        _put_messages(saver, "t", rounds=3)
        saver.delete_thread("t")
        again = _put_messages(saver, "t", rounds=2)
        latest = saver.get_tuple({"configurable": {"thread_id": "t"}})
        thread = saver.load_thread("t")
    assert latest is not None
    assert thread is not None
    assert latest.checkpoint["channel_values"]["messages"] == again[-1]
    log, keys = open_log(url), ThreadKeys(url)
    try:
        puts = [e for e in log.events_of(thread.id) if isinstance(e, GraphThread.CheckpointPut)]
        assert all(p.checkpoint.type.endswith(SUFFIX) for p in puts)
        before = ThreadCipher(JsonPlusSerializer(), keys, f"{thread.id}:0")
        with pytest.raises(ShreddedError):
            load(before, puts[0].metadata)
        after = ThreadCipher(JsonPlusSerializer(), keys, f"{thread.id}:{thread.generation}")
        assert load(after, puts[-1].metadata)["step"] == 1
        assert verify_agent(log, thread.id).ok
    finally:
        log.close()
        keys.close()


def test_threads_evicted_from_memory_are_read_again_from_the_log(sqlite_url: str) -> None:
    with AgentLogSaver(sqlite_url, cached_threads=1) as saver:
        _put_messages(saver, "a", rounds=3)
        b = _put_messages(saver, "b", rounds=2)
        more_a = _put_messages(saver, "a", rounds=1)  # "a" was evicted by "b"
        read = {t: saver.get_tuple({"configurable": {"thread_id": t}}) for t in ("a", "b")}
        assert len(saver._threads) == 1
    assert read["b"] is not None
    assert read["b"].checkpoint["channel_values"]["messages"] == b[-1]
    assert read["a"] is not None
    assert read["a"].checkpoint["channel_values"]["messages"] == more_a[-1]
