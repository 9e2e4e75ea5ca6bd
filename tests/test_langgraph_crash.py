"""A real LangGraph agent on AgentLogSaver, SIGKILLed mid-run, resumes from the log."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from langchain_core.messages import AIMessage, ToolMessage

from agentlog.adapters.langgraph import AgentLogSaver
from agentlog.adapters.storage import open_log
from agentlog.adapters.verify import verify_agent
from agentlog.domain.graph_thread import thread_uuid

from conftest import store_url
from langgraph_child import CALLS, FINAL_ANSWER, run

CHILD = Path(__file__).with_name("langgraph_child.py")


def _ran(ran_file: Path) -> list[str]:
    return ran_file.read_text().splitlines() if ran_file.exists() else []


def _kill_after_tools(url: str, ran_file: Path, tools: int) -> None:
    child = subprocess.Popen([sys.executable, str(CHILD), url, "t-1", str(ran_file)])
    deadline = time.monotonic() + 60
    while len(_ran(ran_file)) < tools and child.poll() is None:
        assert time.monotonic() < deadline, "the child never got that far"
        time.sleep(0.01)
    child.kill()  # SIGKILL
    child.wait()
    assert child.returncode == -9, "the child finished before it could be killed"


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_killed_graph_resumes_from_the_log_and_finishes(backend: str, tmp_path: Path) -> None:
    url, ran_file = store_url(backend, tmp_path), tmp_path / "ran.txt"
    _kill_after_tools(url, ran_file, tools=2)
    before = len(_ran(ran_file))
    assert before < CALLS

    run(url, "t-1", ran_file)  # a new process's worth of saver and graph

    with AgentLogSaver(url) as saver:
        done = saver.get_tuple({"configurable": {"thread_id": "t-1"}})
    assert done is not None
    messages = done.checkpoint["channel_values"]["messages"]
    results = [m for m in messages if isinstance(m, ToolMessage)]
    assert [m.tool_call_id for m in results] == [f"call-{n}" for n in range(CALLS)]
    assert [m.content for m in results] == [str(n + 1) for n in range(CALLS)]
    assert isinstance(messages[-1], AIMessage)
    assert messages[-1].content == FINAL_ANSWER
    # Checkpointed tool runs are not repeated; only the one in flight may run again.
    ran = _ran(ran_file)
    assert sorted(set(ran)) == [f"add {n}" for n in range(CALLS)]
    assert len(ran) <= CALLS + 1
    log = open_log(url)
    try:
        report = verify_agent(log, thread_uuid("t-1"))
    finally:
        log.close()
    assert report.ok, report
