"""AgentLogSaver against LangGraph's own checkpointer conformance suite, on SQLite and
PostgreSQL: every base capability and every extended one it implements."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from itertools import count
from pathlib import Path

import pytest
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.capabilities import ALL_CAPABILITIES

from agentlog.adapters.langgraph import AgentLogSaver

from conftest import store_url


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_saver_passes_langgraph_conformance_suite(backend: str, tmp_path: Path) -> None:
    stores = count()

    @checkpointer_test(name=f"AgentLogSaver-{backend}")
    async def saver() -> AsyncIterator[AgentLogSaver]:
        folder = tmp_path / str(next(stores))  # a fresh store for each capability
        folder.mkdir()
        with AgentLogSaver(store_url(backend, folder)) as fresh:
            yield fresh

    report = asyncio.run(validate(saver))
    failures = {
        name: result.failures for name, result in report.results.items() if not result.passed
    }
    assert failures == {}
    assert set(report.results) == {c.value for c in ALL_CAPABILITIES}
