"""A process saving through group commit from several threads, for the crash test.

``python tests/group_commit_child.py URL LEDGER THREADS AGENT_ID...`` opens the store
with group commit on; each thread takes its share of the agents and, round after round,
loads one, records ``PARTS`` messages (``save N part P``) and saves them together. Only
after a save returns does it append ``AGENT_ID VERSION`` to LEDGER and fsync it, so every
line there names a save that returned. Prints ``ready`` (flushed) once the store is open;
runs until killed.
"""

from __future__ import annotations

import os
import sys
import threading
from uuid import UUID

from eventsourcing.persistence import IntegrityError

from agentlog.adapters.storage import open_log
from agentlog.domain import AgentLog

PARTS = 3


def saves(log: AgentLog, ledger: int, lock: threading.Lock, agent_ids: list[UUID]) -> None:
    """Save rounds of messages to the agents, forever; note each save that returned."""
    while True:
        for agent_id in agent_ids:
            agent = log.get(agent_id)
            n = (agent.version - 2) // PARTS
            for part in range(PARTS):
                agent.receive_user_message(f"save {n} part {part}")
            try:
                log.save(agent)
            except IntegrityError:  # not expected: each agent has one thread
                os.write(2, f"conflict {agent_id}\n".encode())
                continue
            with lock:
                os.write(ledger, f"{agent_id} {agent.version}\n".encode())
                os.fsync(ledger)


def main(url: str, ledger_path: str, threads: int, agent_ids: list[UUID]) -> None:
    """Open the store with group commit and let the threads save until killed."""
    log = open_log(url, group_commit=True)
    ledger = os.open(ledger_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    lock = threading.Lock()
    for i in range(threads):
        share = agent_ids[i::threads]
        threading.Thread(target=saves, args=(log, ledger, lock, share), daemon=True).start()
    print("ready", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), [UUID(a) for a in sys.argv[4:]])
