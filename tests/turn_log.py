"""Checking a turn log (``worker_child.py --turns FILE``): no agent ever had two turns
at once, across every worker process.

Workers append ``start AGENT PID SLOT`` once a turn holds its agent's lease and
``end AGENT PID SLOT`` before giving it back; the test appends ``killing PID`` before it
sends SIGKILL. The file orders all of them (one ``write(2)`` each, ``O_APPEND``). A
turn of a killed worker never ends: from its ``killing`` line on, another worker may
take its agents over (it can only once the process is gone).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from counting_tools import Ledger


def mark_killing(path: Path, pid: int) -> None:
    """Say in the turn log that ``pid`` is about to be killed."""
    Ledger.append(path, f"killing - {pid} -\n")


def check_turns(path: Path) -> Counter[str]:
    """Assert that no two turns of one agent overlapped; how many turns, takeovers."""
    open_turns: dict[str, tuple[str, str]] = {}  # agent -> (pid, slot) of its open turn
    dying: set[str] = set()
    tally = Counter[str]()
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        word, agent, pid, slot = line.split()
        if word == "killing":
            dying.add(pid)
        elif word == "start":
            holder = open_turns.get(agent)
            assert holder is None or holder[0] in dying, f"line {number}: {line} while {holder}"
            tally["taken over from a killed worker" if holder else "turns"] += 1
            open_turns[agent] = (pid, slot)
        else:
            assert open_turns.pop(agent, None) == (pid, slot), f"line {number}: {line}"
    return tally
