"""Test tools that count their executions outside the store.

Every execution appends a line to a ledger file, so a test can tell how often a call
really ran whatever the log says, even across processes killed with SIGKILL: each line
is one ``write(2)`` on a file opened with ``O_APPEND``, so it is there or it is not.

* ``pure``: no effect; its runs are counted.
* ``idempotent``: its effect (a line in ``<tool>.effects``) is deduplicated by
  idempotency key under a file lock: running it twice with one key changes nothing.
* ``side_effecting``: every run adds an effect line; ``reconcile(key)`` checks its own
  effects file, so after a crash it can say whether the effect with a key happened.

``slow_*`` variants sleep before and after their effect so that a kill can land
mid-tool: before the effect, or after it but before the outcome is recorded.

``assert_linear_history`` checks the log's side: versions contiguous, hash chain intact.
"""

from __future__ import annotations

import fcntl
import itertools
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, Field, JsonValue

from agentlog.domain import GENESIS, Aggregate, EffectClass, Policy
from agentlog.domain.ports import Tool

SLOW_DELAY = 0.05
"""Seconds a slow tool sleeps before its effect, and again after it."""


class Ledger:
    """Files in a folder that count tool runs and effects, by idempotency key."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def record_run(self, tool: str, key: str) -> None:
        """Count one execution of ``tool`` with ``key`` (and which process ran it)."""
        self._append(self._file(tool, "runs"), f"{key} {os.getpid()}\n")

    def record_effect(self, tool: str, key: str) -> None:
        """Do the side effect: one more line, whatever happened before."""
        self._append(self._file(tool, "effects"), f"{key}\n")

    def record_effect_once(self, tool: str, key: str) -> bool:
        """Do the effect unless one with this key happened already; True if it was done now."""
        with self._file(tool, "effects").open("a+") as f:
            fcntl.flock(f, fcntl.LOCK_EX)  # released when the file closes, or the process dies
            f.seek(0)
            if key in f.read().split():
                return False
            f.write(f"{key}\n")
            f.flush()
            return True

    def runs(self, tool: str | None = None) -> Counter[str]:
        """How many times each key ran (of one tool, or of all)."""
        return self._count("runs", tool, lambda line: line.split()[0])

    def effects(self, tool: str | None = None) -> Counter[str]:
        """How many times each key's effect happened (of one tool, or of all)."""
        return self._count("effects", tool, str.strip)

    def _count(self, kind: str, tool: str | None, key_of: Callable[[str], str]) -> Counter[str]:
        files = [self._file(tool, kind)] if tool else sorted(self.folder.glob(f"*.{kind}"))
        return Counter(key_of(line) for f in files for line in _lines(f))

    def _file(self, tool: str, kind: str) -> Path:
        return self.folder / f"{tool}.{kind}"

    @staticmethod
    def append(path: Path, line: str) -> None:
        """Append one line in one ``write(2)`` (``O_APPEND``: whole, in order, or not at all)."""
        Ledger._append(path, line)

    @staticmethod
    def _append(path: Path, line: str) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)


class CountArgs(BaseModel):
    """What a counting call is about: a label, echoed back in the result."""

    label: str = Field(default="", max_length=40)


class CountingTool:
    """A tool that counts its runs in a ledger; what its effect is depends on its class."""

    description = "Count this call outside the store (a test tool)."
    args_model: ClassVar[type[BaseModel]] = CountArgs

    def __init__(
        self,
        name: str,
        effect: EffectClass,
        ledger: Ledger,
        *,
        policy: Policy = Policy.ALLOW,
        delay: float = 0.0,
        can_reconcile: bool = True,
    ) -> None:
        self.name, self.effect, self.ledger, self.policy = name, effect, ledger, policy
        self.delay, self.can_reconcile = delay, can_reconcile

    def run(self, args: BaseModel, idempotency_key: str) -> JsonValue:
        """Count the run, sleep, do the effect of the tool's class, sleep again."""
        assert isinstance(args, CountArgs)
        self.ledger.record_run(self.name, idempotency_key)
        time.sleep(self.delay)
        if self.effect is EffectClass.SIDE_EFFECTING:
            self.ledger.record_effect(self.name, idempotency_key)
        elif self.effect is EffectClass.IDEMPOTENT:
            self.ledger.record_effect_once(self.name, idempotency_key)
        time.sleep(self.delay)
        return {"label": args.label, "tool": self.name}

    def reconcile(self, idempotency_key: str) -> bool | None:
        """Side-effecting: whether the effect with this key is in the ledger; else None."""
        if self.effect is not EffectClass.SIDE_EFFECTING or not self.can_reconcile:
            return None
        return self.ledger.effects(self.name)[idempotency_key] > 0


def counting_tools(
    ledger: Ledger, *, delay: float = SLOW_DELAY, policies: Mapping[str, Policy] | None = None
) -> dict[str, Tool]:
    """One fast and one slow counting tool per effect class, named after it.

    ``pure``, ``idempotent``, ``side_effecting`` and ``slow_pure``, ``slow_idempotent``,
    ``slow_side_effecting``; every tool's own policy is 'allow' unless ``policies`` says.
    """
    policies = policies or {}
    tools: dict[str, Tool] = {}
    for effect, slow in itertools.product(EffectClass, (False, True)):
        name = f"slow_{effect.value}" if slow else effect.value
        policy = policies.get(name, Policy.ALLOW)
        tools[name] = CountingTool(
            name, effect, ledger, policy=policy, delay=delay if slow else 0.0
        )
    return tools


def assert_linear_history(events: Iterable[Aggregate.Event]) -> int:
    """Versions are 1, 2, 3, ... and each event chains to its predecessor; the length."""
    head, count = GENESIS, 0
    for count, event in enumerate(events, start=1):
        assert event.originator_version == count, f"version {event.originator_version} at {count}"
        assert event.prev_hash == head, f"broken chain at version {count}"
        assert event.compute_digest() == event.digest, f"edited event at version {count}"
        head = event.digest
    return count


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []
