"""Four real worker processes advance the same agents at once.

Every worker is given every agent and advances them all, one step each in turn, until
all are finished; the processes start work at the same moment. A save that loses a race
raises IntegrityError; the runtime reloads and re-decides. The counting tools count
executions outside the store, so a call that ran twice would show even if the log hid it.
The tool timeout is long: no call may look dead, so every call must run exactly once.

``AGENTLOG_RACE_ROUNDS`` repeats the race (default 1 per backend).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from uuid import UUID

import pytest

from agentlog.adapters.storage import open_log
from agentlog.domain import Agent, AgentConfig, AgentLog, EffectClass, Status, ToolCallRequest
from agentlog.domain.ports import Decision

from conftest import store_url
from counting_tools import Ledger, assert_linear_history
from worker_child import Workers

ROUNDS = int(os.environ.get("AGENTLOG_RACE_ROUNDS", "1"))
WORKERS, AGENTS = 4, 6
CONFIG = AgentConfig(tool_timeout=30)


def _turn(text: str, *calls: tuple[str, str]) -> Decision:
    requests = (ToolCallRequest(call_id=c, tool=t, args={"label": c}) for c, t in calls)
    return Decision(text=text, tool_calls=tuple(requests))


SCRIPT = [
    _turn("all at once", ("p1", "slow_pure"), ("i1", "slow_idempotent"), ("s1", "side_effecting")),
    _turn("post", ("s2", "slow_side_effecting"), ("i2", "idempotent"), ("s3", "side_effecting")),
    _turn("tidy", ("p2", "pure"), ("s4", "slow_side_effecting")),
    Decision(text="done", done=True),
]
CALLS = [call for decision in SCRIPT for call in decision.tool_calls]


def race(url: str, folder: Path, log: AgentLog) -> tuple[list[UUID], int, list[str]]:
    """Start the workers together on fresh agents, wait for all: agents, lost races, errors."""
    agents = [log.create_agent(f"raced-{n}", CONFIG) for n in range(AGENTS)]
    for agent_id in agents:
        log.start_task(agent_id, "race")
    workers = Workers(url, folder, SCRIPT, ["--poll", "0.005"])
    try:
        spawned = []
        for _ in range(WORKERS):  # one at a time: opening a store at once is another matter
            spawned.append(workers.spawn(agents))
            workers.wait_ready(spawned[-1])
        for worker in spawned:  # they start work together
            workers.go(worker)
        outputs = [workers.finish(worker) for worker in spawned]
    finally:
        workers.close()
    return agents, sum(int(out[-1].split()[1]) for out in outputs), workers.errors()


def check_raced_agent(log: AgentLog, ledger: Ledger, agent_id: UUID) -> list[str]:
    """One linear history; each call started once and ran once; the workers that ran tools."""
    agent = log.get(agent_id)
    assert agent.status is Status.COMPLETED, agent.last_error
    events = list(log.events_of(agent_id))
    assert assert_linear_history(events) == agent.version
    assert [e.text for e in events if isinstance(e, Agent.ModelResponded)] == [
        d.text for d in SCRIPT
    ]
    runs, effects, runners = ledger.runs(), ledger.effects(), list[str]()
    for call in CALLS:
        history = [e for e in events if getattr(e, "call_id", None) == call.call_id]
        kinds = [type(e) for e in history]
        assert kinds == [Agent.ToolCalled, Agent.ToolStarted, Agent.ToolSucceeded], call
        called, started = history[0], history[1]
        assert isinstance(called, Agent.ToolCalled)
        assert isinstance(started, Agent.ToolStarted)
        key = started.idempotency_key
        assert runs[key] == 1, f"{key} ran {runs[key]} times"
        assert effects[key] == (0 if called.effect is EffectClass.PURE else 1), key
        runners.append(started.worker_id)
    return runners


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_racing_workers_keep_history_linear_and_run_each_call_once(
    backend: str, tmp_path: Path
) -> None:
    url = store_url(backend, tmp_path)
    log, started = open_log(url), time.monotonic()
    lost, runners, errors = 0, Counter[str](), list[str]()
    try:
        for n in range(ROUNDS):
            agents, lost_now, errors_now = race(url, tmp_path / f"round{n}", log)
            lost, errors = lost + lost_now, errors + errors_now
            ledger = Ledger(tmp_path / f"round{n}" / "ledger")
            for agent_id in agents:
                runners.update(check_raced_agent(log, ledger, agent_id))
    finally:
        log.close()
    print(f"{backend}: {ROUNDS} round(s) of {WORKERS} workers on {AGENTS} agents")
    print(f"  {lost} saves lost a race; tool calls run by worker: {dict(runners)}")
    print(f"  {len(errors)} AgentErrors escaped advance; {time.monotonic() - started:.1f}s")
    assert len(runners) > 1, "one worker did all the work: the processes did not race"
    assert errors == [], errors  # no AgentError escapes advance, even for the race's loser


OPENER = """
import sys
from agentlog.adapters.storage import open_log
for _ in range(int(sys.argv[2])):
    open_log(sys.argv[1]).close()
"""


def test_workers_opening_one_postgres_store_at_once_all_start(postgres_url: str) -> None:
    open_log(postgres_url).close()  # the tables exist: opening it again changes nothing
    openers = [
        subprocess.Popen(
            [sys.executable, "-c", OPENER, postgres_url, "25"], stderr=subprocess.PIPE, text=True
        )
        for _ in range(WORKERS)
    ]
    failures = [
        err.strip().splitlines()[-1] for _, err in (p.communicate() for p in openers) if err
    ]
    assert failures == []
