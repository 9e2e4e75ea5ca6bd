"""kill -9 a writer at random moments: nothing that save() returned for is lost."""

from __future__ import annotations

import itertools
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from uuid import UUID

import pytest

from agentlog.adapters.storage import open_log

from conftest import store_url

KILLS = int(os.environ.get("AGENTLOG_CRASH_KILLS", "4"))

WRITER = """
import sys
from agentlog.adapters.storage import open_log
log = open_log(sys.argv[1], snapshot_interval=5)
agent_id = log.create_agent("crash-test")
log.start_task(agent_id, "keep writing")
print(agent_id, flush=True)
while True:
    agent = log.get(agent_id)
    agent.receive_user_message("x" * (agent.version % 50))
    agent.receive_user_message("y")
    log.save(agent)
    print(agent.version, flush=True)
"""


def run_and_kill(url: str, rng: random.Random) -> tuple[UUID, int]:
    """Start a writer, SIGKILL it at a random moment; return the last version it reported."""
    with subprocess.Popen(
        [sys.executable, "-c", WRITER, url], stdout=subprocess.PIPE, text=True
    ) as writer:
        assert writer.stdout is not None
        agent_id = UUID(writer.stdout.readline().strip())
        time.sleep(rng.uniform(0.05, 0.6))
        writer.send_signal(signal.SIGKILL)
        reported = [int(line) for line in writer.stdout.read().split()]
    return agent_id, max(reported, default=2)


@pytest.mark.parametrize("backend", ["sqlite", "sqlite-sqlalchemy", "postgres"])
def test_kill_9_between_saves_loses_nothing_save_returned_for(backend: str, tmp_path: Path) -> None:
    rng = random.Random(backend)
    url = store_url(backend, tmp_path)
    for _ in range(KILLS):
        agent_id, last_reported = run_and_kill(url, rng)
        log = open_log(url, snapshot_interval=5)
        agent = log.get(agent_id)
        events = list(log.events_of(agent_id))
        assert agent.version >= last_reported
        assert agent.version - last_reported in (0, 2)  # at most the save in flight
        assert [e.originator_version for e in events] == list(range(1, agent.version + 1))
        for before, after in itertools.pairwise(events):
            assert after.prev_hash == before.digest
        assert all(e.compute_digest() == e.digest for e in events)
        assert agent.messages == agent.version - 1
        log.close()
