"""The workload every system in bench_peers.py records, and the registry of those systems.

One **step** is what agentlog's runtime records for one round of an agent: the model's
response (about 500 bytes of text and one tool call with about 200 bytes of JSON
arguments), the claim on the call (saved before the tool runs) and the tool's result
(about 1 KB). Each system records it its own way (see each one's docstring) and must
have it on disk when ``step`` returns.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

TOOL = "grep_file"
TEXT = (
    "The old loader is still imported in the settings package. I'll search the loader "
    "module for every call of load_config so I can see which call sites pass an "
    "environment name and which pass a path; the ones that pass a path need the new "
    "Settings.from_file constructor, the others can use Settings.for_env. After that I "
    "will rewrite the imports, run the package's tests, and move on to the next module "
    "in alphabetical order, keeping a list of anything that needs a person to review."
)
ARGS: dict[str, Any] = {
    "path": "src/app/settings/loader.py",
    "pattern": "load_config\\(",
    "context_lines": 3,
    "include": ["*.py", "*.toml", "*.cfg"],
    "reason": "find every call site of the old config loader before rewriting them",
}
ARGS_JSON = json.dumps(ARGS)
RESULT = (
    "src/app/settings/loader.py:12: cfg = load_config(os.environ['APP_ENV'])\n"
    "src/app/settings/loader.py:13-    if cfg.get('debug'):\n"
    "src/app/settings/loader.py:14-        logging.basicConfig(level=logging.DEBUG)\n"
) * 5 + "15 matches in 1 file; the loader module has 214 lines.\n" * 3
SUMMARY = "Migrated the modules read so far off the old config loader; their tests pass. " * 3


def importable(module: str) -> bool:
    """Whether ``module`` (maybe dotted) can be imported here."""
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # its parent package is missing
        return False


def call_id(step: int) -> str:
    """The tool call id of step ``step`` (unique in a conversation)."""
    return f"call_{step:08d}"


class System(Protocol):
    """One way of recording the workload in one SQLite file."""

    path: Path  # the database file

    def build(self, steps: int) -> None:
        """Record a history of ``steps`` steps (untimed, as fast as the system allows)."""
        ...

    def step(self) -> None:
        """Record one more step; durable when this returns."""
        ...

    def between(self) -> None:
        """Untimed work between two steps (agentlog: a summarizer's compaction)."""
        ...

    def resume_key(self) -> str:
        """What a fresh process needs besides the file to find the conversation."""
        ...

    def close(self) -> None:
        """Close every connection."""
        ...


@dataclass(frozen=True)
class Spec:
    """A system: how to make it, and how a fresh process resumes its conversation."""

    key: str
    label: str
    needs: tuple[str, ...]  # importable modules it needs (peers come from the bench extra)
    module: str  # the bench module holding ``make`` and ``resume``
    make: str  # name of a callable (Path) -> System in that module
    resume: str  # name of a callable (Path, key) -> int (items loaded) in that module

    @property
    def installed(self) -> bool:
        """Whether everything it needs can be imported here."""
        return all(importable(name) for name in self.needs)

    def factory(self) -> Callable[[Path], System]:
        """The callable that makes it."""
        return getattr(importlib.import_module(self.module), self.make)  # type: ignore[no-any-return]

    def resumer(self) -> Callable[[Path, str], int]:
        """The callable a fresh process runs to open the file and load the conversation."""
        return getattr(importlib.import_module(self.module), self.resume)  # type: ignore[no-any-return]


SPECS = (
    Spec("sqlite1", "sqlite3, 1 commit/step", (), "peer_sqlite", "RawOne", "resume_raw"),
    Spec("sqlite3", "sqlite3, 3 commits/step", (), "peer_sqlite", "RawThree", "resume_raw"),
    Spec(
        "eventsourcing",
        "eventsourcing.sqlite, plain aggregate",
        ("eventsourcing",),
        "peer_sqlite",
        "PlainAggregate",
        "resume_plain",
    ),
    Spec(
        "openai-agents",
        "OpenAI Agents SDK SQLiteSession",
        ("agents",),
        "peer_agents_sdk",
        "AgentsSession",
        "resume_session",
    ),
    Spec(
        "langgraph",
        "LangGraph SqliteSaver (2-node graph)",
        ("langgraph.checkpoint.sqlite", "langchain_core"),
        "peer_frameworks",
        "GraphCheckpoints",
        "resume_graph",
    ),
    Spec("agentlog-log", "agentlog, log only", (), "peer_agentlog", "LogOnly", "resume_log"),
    Spec("agentlog-worker", "agentlog, worker", (), "peer_agentlog", "WorkerPath", "resume_worker"),
)
KEYS = tuple(spec.key for spec in SPECS)


def spec_of(key: str) -> Spec:
    """The system named ``key``."""
    return next(spec for spec in SPECS if spec.key == key)
