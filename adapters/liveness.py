"""Is the worker that claimed a call still running? Known only on the same host.

A worker's id is ``host:pid`` (``agentlog worker``). A claim by a worker of this host
whose process is gone is dead at once; so is one whose pid now belongs to a process that
started after the claim was made (the pid was reused). Anything else (another host, a
worker named otherwise, a process we may not signal) cannot be told: the call's timeout
decides, as before.
"""

from __future__ import annotations

import os
import socket
from datetime import datetime
from pathlib import Path

REUSE_MARGIN = 2.0
"""Seconds a process must have started after a claim for its pid to count as reused
(process start times are known to a clock tick, boot time to a second)."""


def worker_id() -> str:
    """host:pid, so the log says which process did what (and whether it still runs)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def worker_gone(worker: str, claimed_at: datetime) -> bool:
    """True if ``worker`` ran on this host and its process is gone since ``claimed_at``."""
    host, _, pid_text = worker.rpartition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False  # this process: its own claims are alive while it runs
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # it exists, owned by someone else: look at when it started
    started = process_start(pid)
    return started is not None and started > claimed_at.timestamp() + REUSE_MARGIN


def process_start(pid: int) -> float | None:
    """When a process started (seconds since the epoch), from /proc; None if unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        boot = next(
            float(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime ")
        )
    except (OSError, StopIteration, ValueError, IndexError):
        return None
    fields = stat.rpartition(")")[2].split()  # the name in parentheses may hold spaces
    ticks = int(fields[19])  # field 22 of stat: start time in clock ticks after boot
    return boot + ticks / os.sysconf("SC_CLK_TCK")


__all__ = ["process_start", "worker_gone", "worker_id"]
