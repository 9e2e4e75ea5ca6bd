"""SIGKILL worker processes that each advance K agents at once, at random moments; fresh
workers take over, a last one drains: no event lost, no side effect twice, every agent
finished, no two turns of one agent at once, and the views equal a rebuild.

Two worker processes x K = 4 (``worker_child.py --views --concurrency 4 --group-commit``:
the loop of ``agentlog worker --concurrency 4``, saves sharing transactions) share a
PostgreSQL store of agents that call pure, idempotent and side-effecting tools (slow
ones, so that kills land mid-tool). At random moments one of them is killed and a fresh
one started in its place; after the last kill, every worker still running is killed too
and one fresh worker drains the store alone. Leases of the killed workers are taken over
at once (their processes are gone on this host). The checks are those of the
single-agent crash test (``test_runtime_crash.check_agent``), plus the turn log
(``turn_log.check_turns``).

``AGENTLOG_CONCURRENT_CRASH_POINTS`` kills (default 6); ``AGENTLOG_CRASH_SEED`` replays a
run's kill times (the seed is printed).
"""

from __future__ import annotations

import os
import random
import subprocess
import time
from collections import Counter
from pathlib import Path
from uuid import UUID

import pytest
from cli_checks import invoke
from click.testing import CliRunner
from test_runtime_crash import CONFIG, SCRIPT, check_agent, check_reported
from test_view_process_kill import assert_equal_to_a_rebuild
from test_worker_leases import leases

from agentlog.adapters.views import Store, open_store

from conftest import store_url
from turn_log import check_turns, mark_killing
from worker_child import Workers

POINTS = int(os.environ.get("AGENTLOG_CONCURRENT_CRASH_POINTS", "6"))
SEED = int(os.environ.get("AGENTLOG_CRASH_SEED", random.randrange(10**6)))
AGENTS, PROCESSES, K = 24, 2, 4
KILL_WINDOW = (0.1, 0.6)  # seconds between two kills
DELAY = 0.15  # seconds a slow tool sleeps before its effect, and again after it


def start(workers: Workers, agents: list[UUID], ready: subprocess.Popen[str]) -> tuple[
    subprocess.Popen[str], subprocess.Popen[str]
]:  # fmt: skip
    """Let the ready worker go; the next one, started and waiting."""
    workers.go(ready)
    return ready, workers.spawn(agents)


def kill(workers: Workers, turns: Path, worker: subprocess.Popen[str]) -> bool:
    """SIGKILL a worker (said in the turn log first); False if it had exited."""
    mark_killing(turns, worker.pid)
    return workers.kill(worker)


def killed_pids(turns: Path) -> set[int]:
    """The workers the test killed (or tried to)."""
    lines = (line.split() for line in turns.read_text().splitlines())
    return {int(words[2]) for words in lines if words[0] == "killing"}


@pytest.mark.slow
@pytest.mark.postgres
def test_killed_k_worker_processes_lose_nothing_and_repeat_no_side_effect(
    tmp_path: Path,
) -> None:
    url, rng = store_url("postgres", tmp_path), random.Random(f"{SEED}:concurrent")
    print(f"AGENTLOG_CRASH_SEED={SEED} kills={POINTS} workers={PROCESSES} x K={K}")
    turns = tmp_path / "turns.log"
    options = ["--views", "--concurrency", str(K), "--group-commit", "--worker-id", "host:pid"]
    options += ["--turns", str(turns), "--poll", "0.02", "--delay", str(DELAY)]
    store = open_store(url, embedded=False, catch_up=False)
    workers = Workers(url, tmp_path, SCRIPT, options)
    # A killed worker's claims end at once (its process is gone): no need for a short timeout.
    config = CONFIG.model_copy(update={"model": f"scripted:{workers.script}", "tool_timeout": 10})
    agents = [store.log.create_agent(f"a{n}", config) for n in range(AGENTS)]
    for agent_id in agents:
        store.log.start_task(agent_id, "call every kind of tool")
    kills, started = 0, time.monotonic()
    try:
        ready = workers.spawn(agents)
        running = []
        for _ in range(PROCESSES):
            worker, ready = start(workers, agents, ready)
            running.append(worker)
        while kills < POINTS and any(w.poll() is None for w in running):
            time.sleep(rng.uniform(*KILL_WINDOW))
            victim = rng.choice(running)
            kills += kill(workers, turns, victim)
            worker, ready = start(workers, agents, ready)
            running[running.index(victim)] = worker
        kills += sum(kill(workers, turns, worker) for worker in running)
        workers.go(ready)  # the last worker drains the store alone
        workers.finish(ready)
        tally = check_everything(store, workers, agents, url)
        assert workers.errors() == []
    finally:
        workers.close()
        store.close()
    seconds = time.monotonic() - started
    print(f"{kills} kills, {len(workers.spawned)} workers, {seconds:.1f}s")
    print("\n".join(f"  {n:4d}  {what}" for what, n in sorted(tally.items())))
    assert kills >= POINTS // 2, "the workers finished before most kills: widen the window"
    assert tally["start without outcome"] > 0, "no kill landed mid-tool"


def check_everything(store: Store, workers: Workers, agents: list[UUID], url: str) -> Counter[str]:
    """Every agent finished as the script says, each call resolved by its effect class,
    no turn overlapped another of its agent, what workers reported is in the log, the
    views equal a rebuild, the log verifies, and no live lease is left."""
    tally, keys = Counter[str](), set[str]()
    for agent_id in agents:
        tally += check_agent(store.log, workers.ledger, agent_id, keys)
    tally += check_turns(workers.folder / "turns.log")
    tally["steps reported and found in the log"] += check_reported(store.log, workers.steps())
    store.views.catch_up()
    assert_equal_to_a_rebuild(store.views, url)
    verified = invoke(CliRunner(), "--db", url, "verify", "--all")
    assert verified.exit_code == 0, verified.output
    left = leases(store)  # a killed worker's lease on an agent it had just finished
    owners = {int(owner.partition("#")[0].rpartition(":")[2]) for owner, _ in left.values()}
    assert owners <= killed_pids(workers.folder / "turns.log"), left
    return tally
