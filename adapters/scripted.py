"""Deterministic models for tests and the demo: no network, no key.

A worker is stateless, so a scripted model decides from its context alone: the n-th
decision of the script answers a context holding n-1 assistant messages. Any worker,
in any process, after any crash, gives the same answer to the same transcript.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from pydantic import TypeAdapter

from agentlog.domain.ports import Context, Decision, ModelCallError

_DECISIONS = TypeAdapter(list[Decision])
SCRIPT_CACHE = 64
"""Script files whose parsed decisions are kept (a worker builds a model every turn)."""
_scripts: dict[tuple[str, int, int], list[Decision]] = {}
_scripts_lock = threading.Lock()


def load_script(path: str | Path) -> list[Decision]:
    """The decisions of a script file, parsed once per file version (its path, size and
    modification time): a worker builds each agent's model at every turn, and
    re-reading the file each time cost more than the step. Decisions are immutable, so
    every model of a file shares the one list's items."""
    file = Path(path)
    stat = file.stat()
    key = (str(file.resolve()), stat.st_mtime_ns, stat.st_size)
    with _scripts_lock:
        cached = _scripts.get(key)
    if cached is not None:
        return cached
    decisions = _DECISIONS.validate_python(json.loads(file.read_text()))
    with _scripts_lock:
        if len(_scripts) >= SCRIPT_CACHE:
            _scripts.pop(next(iter(_scripts)))  # the oldest entry
        _scripts[key] = decisions
    return decisions


class ScriptedModel:
    """Answers the n-th model turn with the n-th decision of a script, after ``latency``
    seconds (a stand-in for a model that takes its time: the wait is a plain sleep that
    releases the GIL, as a real model's HTTP call does)."""

    def __init__(
        self, decisions: Sequence[Decision], name: str = "scripted", *, latency: float = 0.0
    ) -> None:
        if not latency >= 0:  # also refuses NaN
            raise ValueError(f"latency must be a number of seconds >= 0, not {latency}")
        self.decisions = list(decisions)
        self._name = name
        self.latency = latency

    @property
    def name(self) -> str:
        """The model id recorded with each response."""
        return self._name

    @classmethod
    def from_file(cls, path: str | Path, *, latency: float = 0.0) -> ScriptedModel:
        """A script from a JSON file: a list of decisions (text, tool_calls, done, usage)."""
        name = f"scripted:{Path(path).name}"
        return cls(load_script(path), name=name, latency=latency)

    def decide(self, context: Context) -> Decision:
        """The decision for this turn (after the latency); past the end of the script, an error."""
        if self.latency:
            time.sleep(self.latency)
        turn = sum(1 for m in context.messages if m.role == "assistant")
        if turn >= len(self.decisions):
            raise ModelCallError("script_exhausted", f"the script has {len(self.decisions)} turns")
        return self.decisions[turn]


class FunctionModel:
    """A model that is a Python function of the context."""

    def __init__(self, decide: Callable[[Context], Decision], name: str = "function") -> None:
        self._decide = decide
        self._name = name

    @property
    def name(self) -> str:
        """The model id recorded with each response."""
        return self._name

    def decide(self, context: Context) -> Decision:
        """Call the function."""
        return self._decide(context)
