"""Stopping a worker: SIGINT/SIGTERM finish or abandon the current step cleanly, and a
worker killed outright (SIGKILL) or stopped mid side effect is taken over at once by the
next worker on the same host (it sees the claiming process is gone).

Real worker processes (``worker_child.py --views --signals``: ``Worker.work`` with the
worker command's signal handling, and counting tools that record every run and effect
outside the store), and the real ``agentlog worker`` command for exit codes and
``--processes``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from uuid import UUID

import pytest

from agentlog.adapters.liveness import process_start, worker_gone
from agentlog.adapters.scripted import FunctionModel, ScriptedModel
from agentlog.adapters.views import Store, open_store
from agentlog.domain import Agent, AgentConfig, Aggregate, CallStage, Status, ToolCallRequest
from agentlog.domain.ports import Context, Decision
from agentlog.domain.runtime import Runtime, StepKind

from counting_tools import Ledger, assert_linear_history, counting_tools
from worker_child import Workers

RESUME_WITHIN = 2.0  # seconds: the next worker takes over a dead worker's claim by then
CONFIG = AgentConfig(tool_timeout=60.0)  # waiting out the timeout would take a minute


def _script(tool: str) -> list[Decision]:
    call = ToolCallRequest(call_id="c1", tool=tool, args={"label": "c1"})
    return [Decision(text="go", tool_calls=(call,)), Decision(text="done", done=True)]


@pytest.fixture
def store(sqlite_url: str) -> Iterator[Store]:
    """The store the workers share (SQLite file)."""
    opened = open_store(sqlite_url)
    yield opened
    opened.close()


def _workers(url: str, folder: Path, tool: str, delay: float) -> Workers:
    options = ["--views", "--signals", "--worker-id", "host:pid", "--delay", str(delay)]
    return Workers(url, folder, _script(tool), options)


def _agent(store: Store, workers: Workers) -> UUID:
    config = CONFIG.model_copy(update={"model": f"scripted:{workers.script}"})
    agent_id = store.log.create_agent("a", config)
    store.log.start_task(agent_id, "run one call")
    return agent_id


def _wait_for(what: str, check: Callable[[], object], timeout: float = 15.0) -> float:
    """Poll ``check()`` until it is true; the seconds it took."""
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < timeout, f"timed out waiting for {what}"
        time.sleep(0.01)
    return time.monotonic() - start


def _events(store: Store, agent_id: UUID) -> list[Aggregate.Event]:
    events = list(store.log.events_of(agent_id))
    assert_linear_history(events)
    return events


def _outcomes(events: list[Aggregate.Event]) -> list[str]:
    return [type(e).__name__ for e in events if type(e).__name__.startswith("Tool")]


def test_sigint_mid_pure_call_records_it_interrupted_and_exits_130(
    store: Store, sqlite_url: str, tmp_path: Path
) -> None:
    workers = _workers(sqlite_url, tmp_path, "slow_pure", delay=5.0)
    agent_id = _agent(store, workers)
    try:
        first = workers.spawn([agent_id])
        workers.go(first)
        _wait_for("the call to start", lambda: workers.ledger.runs("slow_pure"))
        first.send_signal(signal.SIGINT)
        assert first.wait(5) == 130
        stderr = workers.stderr(first)
        assert "SIGINT: stopping after the current step" in stderr
        assert "Traceback" not in stderr
        failed = [e for e in _events(store, agent_id) if isinstance(e, Agent.ToolFailed)]
        assert [e.error for e in failed] == ["interrupted"]
        assert store.log.get(agent_id).calls == {}  # closed: the model may ask again
        workers.finish(_go(workers, workers.spawn([agent_id])))
    finally:
        workers.close()
    assert store.log.get(agent_id).status is Status.COMPLETED
    assert sum(workers.ledger.runs("slow_pure").values()) == 1  # never re-run blindly


@pytest.mark.parametrize("how", ["SIGINT", "SIGKILL"])
def test_next_worker_settles_a_dead_workers_side_effect_at_once_and_only_once(
    store: Store, sqlite_url: str, tmp_path: Path, how: str
) -> None:
    workers = _workers(sqlite_url, tmp_path, "slow_side_effecting", delay=0.8)
    agent_id = _agent(store, workers)
    try:
        first, second = workers.spawn([agent_id]), workers.spawn([agent_id])
        workers.go(first)
        workers.wait_ready(second)
        _wait_for("the call to start", lambda: workers.ledger.runs("slow_side_effecting"))
        first.send_signal(signal.Signals[how])
        assert first.wait(5) == (130 if how == "SIGINT" else -signal.SIGKILL)
        assert "Traceback" not in workers.stderr(first)
        (call,) = store.log.get(agent_id).calls.values()
        assert call.stage is CallStage.STARTED  # left to the outcome-unknown path
        let_go = datetime.now(UTC)
        workers.go(second)
        workers.finish(second)
    finally:
        workers.close()
    events = _events(store, agent_id)
    assert _outcomes(events)[:3] == ["ToolCalled", "ToolStarted", "ToolOutcomeUnknown"]
    (unknown,) = (e for e in events if isinstance(e, Agent.ToolOutcomeUnknown))
    took = (unknown.timestamp - let_go).total_seconds()
    print(f"{how}: the next worker took the call over {took:.2f}s after it started")
    assert took < RESUME_WITHIN, f"took {took:.2f}s"  # not the call's 60 s timeout
    assert store.log.get(agent_id).status is Status.COMPLETED
    effects = workers.ledger.effects("slow_side_effecting")
    assert list(effects.values()) == [1]  # it happened once: before or after the stop


def test_a_step_under_way_finishes_and_a_call_not_started_never_starts(
    store: Store, tmp_path: Path
) -> None:
    stop, ledger = threading.Event(), Ledger(tmp_path / "ledger")

    def decide(context: Context) -> Decision:
        stop.set()  # the signal arrives while the model answers
        (decision,) = _script("pure")[:1]
        return decision

    agent_id = store.log.create_agent("a", CONFIG)
    store.log.start_task(agent_id, "g")
    tools = counting_tools(ledger)
    runtime = Runtime(store.log, FunctionModel(decide), tools, worker_id="w", interrupt=stop)
    last = runtime.run(agent_id, 10)
    assert last.kind is StepKind.INTERRUPTED
    agent = store.log.get(agent_id)
    assert agent.calls["c1"].stage is CallStage.REQUESTED  # the response was recorded
    assert not ledger.runs()  # and its call never started
    again = Runtime(store.log, ScriptedModel(_script("pure")), tools, worker_id="w2")
    assert again.run(agent_id, 10).kind is StepKind.FINISHED
    assert sum(ledger.runs().values()) == 1


def test_a_claim_is_dead_only_when_its_process_is_known_gone() -> None:
    host, now = socket.gethostname(), datetime.now(UTC)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], check=True,
                          capture_output=True, text=True)  # fmt: skip
    assert worker_gone(f"{host}:{dead.stdout.strip()}", now)
    assert not worker_gone(f"{host}:{os.getpid()}", now)  # this very process
    assert not worker_gone(f"{host}:{os.getppid()}", now)  # alive, started before
    assert not worker_gone(f"other-{host}:99999999", now)  # another host: cannot tell
    assert not worker_gone("w1", now)  # not host:pid
    started = process_start(os.getppid())
    assert started is not None
    # The parent's pid, claimed long before it started: the pid was reused.
    assert worker_gone(f"{host}:{os.getppid()}", datetime.fromtimestamp(started - 60, UTC))


def _go(workers: Workers, worker: subprocess.Popen[str]) -> subprocess.Popen[str]:
    workers.go(worker)
    return worker


def _agentlog(url: str, tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "agentlog.cli", "--db", url, "--sandbox", str(tmp_path), *args],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a shell job has
    )


def _working(url: str, tmp_path: Path, store: Store, *args: str) -> subprocess.Popen[str]:
    """``agentlog worker ARGS`` on a store with one agent it works on; returns once it has
    taken a step (so its signal handlers are in place)."""
    script = tmp_path / "script.json"
    script.write_text(json.dumps([{"text": "done", "done": True}]))
    config = CONFIG.model_copy(update={"model": f"scripted:{script}"})
    agent_id = store.log.create_agent("a", config)
    store.log.start_task(agent_id, "g")
    worker = _agentlog(url, tmp_path, "worker", "--poll", "0.05", *args)
    _wait_for("a step", lambda: store.log.get(agent_id).status is Status.COMPLETED, 30)
    time.sleep(0.3)  # past its first idle look
    return worker


@pytest.mark.parametrize(("sent", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_agentlog_worker_exits_with_the_signals_code_and_no_traceback(
    store: Store, sqlite_url: str, tmp_path: Path, sent: signal.Signals, code: int
) -> None:
    worker = _working(sqlite_url, tmp_path, store)
    worker.send_signal(sent)
    out, err = worker.communicate(timeout=10)
    assert worker.returncode == code, err
    assert f"{sent.name}: stopping after the current step" in err
    assert "worker stopped" in err
    assert "Traceback" not in err + out


def test_ctrl_c_stops_every_worker_process_once(
    store: Store, sqlite_url: str, tmp_path: Path
) -> None:
    worker = _working(sqlite_url, tmp_path, store, "--processes", "2")
    children = _children(worker.pid)
    assert len(children) == 2
    for child in children:  # each has its SIGTERM handler in place
        _wait_for("a child's handler", partial(_catches, child, signal.SIGTERM), 30)
    os.killpg(worker.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    out, err = worker.communicate(timeout=20)
    assert worker.returncode == 130, err
    assert "Traceback" not in err + out
    assert err.count("SIGTERM: stopping after the current step") == 2  # each child, once
    assert "again: stopping now" not in err
    assert err.count("worker stopped") == 1
    assert not [pid for pid in children if Path(f"/proc/{pid}").exists()]


def _catches(pid: int, sent: signal.Signals) -> bool:
    """Whether the process has a handler for that signal (its SigCgt mask says so)."""
    status = Path(f"/proc/{pid}/status").read_text()
    (mask,) = (line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:"))
    return bool(int(mask, 16) & (1 << (sent - 1)))


def _children(pid: int) -> list[int]:
    """The worker processes a parent started (not multiprocessing's resource tracker)."""
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    pids = [int(p) for p in text.split()]
    return [p for p in pids if b"spawn_main" in Path(f"/proc/{p}/cmdline").read_bytes()]
