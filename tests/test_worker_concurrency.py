"""``agentlog worker --concurrency K``: up to K agents advance at once in one worker, every
side effect still happens once, and every agent's events stay one gapless chain.

Real stores (SQLite file, PostgreSQL), the real ``Worker.work`` loop, counting tools
that count what really ran outside the store, and the scripted model with latency
(``scripted:FILE?latency=SECONDS``) standing in for a model's wait.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import pytest
from cli_checks import invoke, ok
from click.testing import CliRunner
from sqlalchemy import select

from agentlog.adapters.leases import LEASES
from agentlog.adapters.scripted import ScriptedModel
from agentlog.adapters.tools import ToolRegistry
from agentlog.adapters.views import Store, open_store
from agentlog.adapters.worker import Worker
from agentlog.domain import AgentConfig, Status, ToolCallRequest
from agentlog.domain.ports import Context, Decision
from agentlog.domain.runtime import Step

from conftest import store_url
from counting_tools import Ledger, assert_linear_history, counting_tools

AGENTS = 40
K = 8


def _turn(text: str, *calls: tuple[str, str]) -> Decision:
    requests = (ToolCallRequest(call_id=c, tool=t, args={"label": c}) for c, t in calls)
    return Decision(text=text, tool_calls=tuple(requests))


SCRIPT = [
    _turn("post", ("s1", "side_effecting"), ("p1", "pure")),
    _turn("post again", ("s2", "slow_side_effecting"), ("i1", "idempotent")),
    Decision(text="done", done=True),
]
SIDE_EFFECTS = 2  # per agent


def write_script(folder: Path, script: list[Decision], latency: float = 0.0) -> str:
    """The model spec of a script file in ``folder``."""
    path = folder / "script.json"
    path.write_text(json.dumps([d.model_dump(mode="json") for d in script]))
    return f"scripted:{path}" + (f"?latency={latency}" if latency else "")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh store on each backend."""
    return store_url(request.param, tmp_path)


@pytest.fixture(params=[True, False], ids=["group-commit", "no-group-commit"])
def store(url: str, request: pytest.FixtureRequest) -> Iterator[Store]:
    """The store, opened as `agentlog worker --concurrency K` opens it (views not
    embedded; group commit, unless --no-group-commit)."""
    opened = open_store(url, embedded=False, catch_up=False, group_commit=request.param)
    yield opened
    opened.close()


def agents(store: Store, spec: str, n: int) -> list[UUID]:
    """``n`` agents with a task, running the model ``spec``."""
    config = AgentConfig(model=spec, tool_timeout=30.0)
    made = [store.log.create_agent(f"a{i}", config) for i in range(n)]
    for agent_id in made:
        store.log.start_task(agent_id, "post twice")
    return made


def work(store: Store, tools: ToolRegistry, concurrency: int) -> list[Step]:
    """Run a worker with that concurrency until no agent is runnable; its steps."""
    steps: list[Step] = []
    worker = Worker(store, tools, concurrency=concurrency)
    worker.work(poll=0.05, exit_when_idle=True, on_step=steps.append)
    return steps


def test_k_threads_finish_every_agent_with_each_side_effect_once_and_a_log_that_verifies(
    url: str, store: Store, tmp_path: Path
) -> None:
    ledger = Ledger(tmp_path / "ledger")
    made = agents(store, write_script(tmp_path, SCRIPT), AGENTS)
    work(store, ToolRegistry(counting_tools(ledger, delay=0.02)), K)
    for agent_id in made:
        agent = store.log.get(agent_id)
        assert agent.status is Status.COMPLETED, agent.last_error
        assert assert_linear_history(store.log.events_of(agent_id)) == agent.version
    for tool in ("side_effecting", "slow_side_effecting"):
        effects = ledger.effects(tool)
        assert len(effects) == AGENTS, tool
        assert set(effects.values()) == {1}, tool
        assert set(ledger.runs(tool).values()) == {1}, tool  # and none ran twice
    with store.views.engine.connect() as conn:
        assert conn.execute(select(LEASES)).all() == []  # every lease given back
    verified = invoke(CliRunner(), "--db", url, "verify", "--all")
    assert verified.exit_code == 0, verified.output
    assert f"OK: {AGENTS} agent(s)" in verified.output


class Overlap:
    """Counts how many model answers are being waited for at once (the real waits of
    the scripted model with latency)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now = self.peak = 0
        self.lock = threading.Lock()
        decide = ScriptedModel.decide

        def counted(model: ScriptedModel, context: Context) -> Decision:
            with self.lock:
                self.now += 1
                self.peak = max(self.peak, self.now)
            try:
                return decide(model, context)
            finally:
                with self.lock:
                    self.now -= 1

        monkeypatch.setattr(ScriptedModel, "decide", counted)


def test_k_threads_wait_for_k_models_at_once(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    latency, n, steps_each = 0.2, 16, 2
    script = [Decision(text="thinking"), Decision(text="done", done=True)]
    overlap = Overlap(monkeypatch)
    store = open_store(sqlite_url, embedded=False, catch_up=False)
    try:
        made = agents(store, write_script(tmp_path, script, latency), n)
        started = time.monotonic()
        work(store, ToolRegistry(), K)
        took = time.monotonic() - started
        assert all(store.log.get(a).status is Status.COMPLETED for a in made)
    finally:
        store.close()
    serial = n * steps_each * latency  # 6.4 s: one model wait after another
    print(f"{n} agents x {steps_each} steps of {latency}s with K={K}: {took:.2f}s "
          f"(serial {serial:.1f}s), up to {overlap.peak} model waits at once")  # fmt: skip
    assert overlap.peak >= K - 2  # ~K agents waited for their models at once
    assert took < serial / 2  # ideal: serial / K = 0.8 s


def test_concurrency_below_one_is_refused(sqlite_url: str) -> None:
    store = open_store(sqlite_url)
    try:
        with pytest.raises(ValueError, match="concurrency must be at least 1"):
            Worker(store, ToolRegistry(), concurrency=0)
    finally:
        store.close()


def test_worker_command_takes_concurrency(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTLOG_DB", sqlite_url)
    monkeypatch.chdir(tmp_path)
    cli = CliRunner()
    spec = write_script(tmp_path, [Decision(text="done", done=True)], latency=0.05)
    made = [ok(cli, "new", "--name", f"a{i}", "--model", spec, "--goal", "g") for i in range(6)]
    out = ok(cli, "worker", "--concurrency", "4", "--exit-when-idle", "--poll", "0.05")
    assert out.count("model") >= 6, out
    for line in made:
        assert "completed" in ok(cli, "show", line.split()[-1])
    bad = invoke(cli, "worker", "--concurrency", "0")
    assert bad.exit_code == 2
    assert "--concurrency" in bad.output


def test_ctrl_c_lets_every_threads_step_finish_and_gives_the_leases_back(
    sqlite_url: str, tmp_path: Path
) -> None:
    script = [Decision(text="first"), Decision(text="done", done=True)]
    store = open_store(sqlite_url)
    try:
        made = agents(store, write_script(tmp_path, script, latency=3.0), 4)
        worker = subprocess.Popen(
            [sys.executable, "-m", "agentlog.cli", "--db", sqlite_url, "worker", "-k", "4"],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 30
            while len(held(store)) < 4:  # every agent's turn has started
                assert time.monotonic() < deadline, "the turns never started"
                time.sleep(0.02)
            # A lease is taken just before its turn loads the agent and asks the model: a
            # SIGINT in between rightly starts nothing. Give each turn time to be inside its
            # model call (3 s long) before the signal.
            time.sleep(1.0)
            worker.send_signal(signal.SIGINT)
            _, err = worker.communicate(timeout=10)
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
        assert worker.returncode == 130, err
        assert "SIGINT: stopping after the current step" in err
        assert "Traceback" not in err
        for agent_id in made:  # the answers waited for are recorded; nothing more
            texts = [e.text for e in store.log.events_of(agent_id) if hasattr(e, "text")]
            assert texts == ["first"], texts
        assert held(store) == []
    finally:
        store.close()


def held(store: Store) -> list[str]:
    """The agents whose leases are held."""
    with store.views.engine.connect() as conn:
        if not store.views.engine.dialect.has_table(conn, LEASES.name):
            return []
        return [row.agent_id for row in conn.execute(select(LEASES.c.agent_id))]
