"""A real LangGraph agent on AgentLogSaver, SIGKILLed mid-run at chosen points (and at a
random moment), resumes in a fresh process that has only the store URL and the thread
id, and finishes with every tool's side effect happening as often as LangGraph promises.

What LangGraph promises for a step interrupted by a crash: each task's writes are saved
as *pending writes* against the step's checkpoint as soon as the task finishes
(``put_writes``), before the next checkpoint. On resume the graph loads the latest
checkpoint and its pending writes; a task whose writes are there is not run again, a
task without them is. So a tool call is never repeated once its result is saved, and the
call that was running when the process died (its side effect done or not, its result not
saved) runs again: at least once, exactly once for every call that got its result saved.
"""

from __future__ import annotations

import random
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from langchain_core.messages import AIMessage, ToolMessage

from agentlog.adapters.langgraph import AgentLogSaver
from agentlog.adapters.storage import open_log
from agentlog.adapters.verify import verify_agent
from agentlog.domain.graph_thread import thread_uuid

from conftest import store_url
from langgraph_child import CALLS, FINAL_ANSWER

CHILD = Path(__file__).with_name("langgraph_child.py")
THREAD = "t-1"


def _ran(ran_file: Path) -> Counter[str]:
    return Counter(ran_file.read_text().splitlines() if ran_file.exists() else [])


def _child(url: str, ran_file: Path, *pause_at: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, str(CHILD), url, THREAD, str(ran_file), *pause_at])


def _kill_when(child: subprocess.Popen[bytes], ready: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 60
    try:
        while not ready() and child.poll() is None:
            assert time.monotonic() < deadline, "the child never got that far"
            time.sleep(0.01)
    finally:
        child.kill()  # SIGKILL
        child.wait()
    assert child.returncode == -9, "the child finished before it could be killed"


def _resume_in_a_fresh_process(url: str, ran_file: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(CHILD), url, THREAD, str(ran_file)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]


def _assert_finished_with_a_verified_chain(url: str) -> None:
    with AgentLogSaver(url) as saver:
        done = saver.get_tuple({"configurable": {"thread_id": THREAD}})
    assert done is not None
    messages = done.checkpoint["channel_values"]["messages"]
    results = [m for m in messages if isinstance(m, ToolMessage)]
    assert [m.tool_call_id for m in results] == [f"call-{n}" for n in range(CALLS)]
    assert [m.content for m in results] == [str(n + 1) for n in range(CALLS)]
    assert isinstance(messages[-1], AIMessage)
    assert messages[-1].content == FINAL_ANSWER
    log = open_log(url)
    try:
        report = verify_agent(log, thread_uuid(THREAD))
    finally:
        log.close()
    assert report.ok, report


ONCE = dict.fromkeys((f"add {n}" for n in range(CALLS)), 1)


@pytest.mark.parametrize(
    ("pause_at", "expected"),
    [
        # In the model's turn: no tool is running, none runs again.
        ("model:2", ONCE),
        # Inside call 1, its side effect done, its result not saved: it runs again.
        ("tool:1", {**ONCE, "add 1": 2}),
        # Call 3's result saved as a pending write, the checkpoint after it not:
        # the resumed graph takes the result from the pending writes, never re-runs it.
        ("writes:3", ONCE),
    ],
)
@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_agent_killed_at_a_point_resumes_in_a_fresh_process(
    backend: str, pause_at: str, expected: dict[str, int], tmp_path: Path
) -> None:
    url, ran_file = store_url(backend, tmp_path), tmp_path / "ran.txt"
    paused = ran_file.with_name(ran_file.name + ".paused")
    _kill_when(_child(url, ran_file, pause_at), paused.exists)
    assert paused.read_text() == pause_at
    before = _ran(ran_file)

    _resume_in_a_fresh_process(url, ran_file)

    _assert_finished_with_a_verified_chain(url)
    assert _ran(ran_file) == expected
    assert sum(before.values()) < CALLS


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_agent_killed_at_a_random_moment_resumes_in_a_fresh_process(
    backend: str, tmp_path: Path
) -> None:
    url, ran_file = store_url(backend, tmp_path), tmp_path / "ran.txt"
    delay = random.uniform(0.0, 0.4)  # after the first side effect; the run needs ~0.6 s more
    child = _child(url, ran_file)
    _kill_when(child, lambda: bool(_ran(ran_file)) and _sleep(delay))

    _resume_in_a_fresh_process(url, ran_file)

    _assert_finished_with_a_verified_chain(url)
    ran = _ran(ran_file)
    assert set(ran) == set(ONCE), f"killed {delay:.2f} s after the first tool ran"
    assert sorted(ran.values()) in ([1] * CALLS, [1] * (CALLS - 1) + [2])  # only the one in flight


def _sleep(seconds: float) -> bool:
    time.sleep(seconds)
    return True
