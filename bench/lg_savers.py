"""The LangGraph checkpointers bench_langgraph.py compares, and the graph they all run.

Each saver kind opens a fresh store (a SQLite file or a PostgreSQL database of its own),
says how many bytes the store holds, and can be opened again in a fresh process to load
the thread's latest checkpoint. ``SqliteSaver`` and ``PostgresSaver`` come from the
``bench`` extra; a kind whose package (or server) is missing is skipped.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import settled_bytes
from langchain_core.messages import BaseMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from lg_graph import THREAD, graph, open_sqlite_saver, tool_step

from agentlog.adapters.langgraph import AgentLogSaver

sys.path.append(str(Path(__file__).resolve().parent.parent / "tests"))
from pg_server import fresh_database, postgres_url

TEXT = "x" * 100  # the assistant's words and the tool's result, each step


def step_messages(step: int) -> list[BaseMessage]:
    """A step's messages: the assistant's reply with one tool call, then the result."""
    return tool_step(step, "lookup", {"step": step}, TEXT, TEXT)


def steps(saver: BaseCheckpointSaver[Any]) -> Iterator[None]:
    """Run the agent in one long run (as LangGraph runs an agent loop), pausing after
    each step; every checkpoint is written before the run goes on (``durability="sync"``)."""
    config: RunnableConfig = {**THREAD, "recursion_limit": 10**9}
    start = {"messages": [HumanMessage("go")]}
    loop = graph(saver, step_messages, [0], loop=True)
    for update in loop.stream(start, config, durability="sync", stream_mode="updates"):
        if "tool" in update:
            yield


# --- where the savers keep their data -------------------------------------------------


def libpq(url: str) -> str:
    """A SQLAlchemy URL (``postgresql+psycopg://``) as libpq takes it."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def postgres_bytes(url: str) -> int:
    """``pg_total_relation_size`` (rows, TOAST, indexes) of every table in the database."""
    import psycopg

    query = (
        "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
    )
    with psycopg.connect(libpq(url), autocommit=True) as conn:
        row = conn.execute(query).fetchone()
    return int(row[0]) if row else 0


# --- the savers -----------------------------------------------------------------------


@dataclass
class Store:
    """One saver on its own fresh store."""

    saver: BaseCheckpointSaver[Any]
    where: str  # the file or database URL a fresh process opens
    size: Callable[[], int]
    close: Callable[[], None]


def open_agentlog(where: str) -> AgentLogSaver:
    """agentlog's saver on a store URL."""
    return AgentLogSaver(where)


def open_postgres_saver(where: str) -> Any:
    """LangGraph's ``PostgresSaver`` on a database, tables set up (its own settings)."""
    import psycopg
    from langgraph.checkpoint.postgres import PostgresSaver
    from psycopg.rows import dict_row

    conn = psycopg.connect(where, autocommit=True, prepare_threshold=0, row_factory=dict_row)
    saver = PostgresSaver(conn)
    saver.setup()
    return saver


def close_saver(saver: Any) -> None:
    """Release a saver's connection or store."""
    if isinstance(saver, AgentLogSaver):
        saver.close()
    else:
        saver.conn.close()


@dataclass(frozen=True)
class Kind:
    """A saver on a backend."""

    key: str
    label: str
    opener: Callable[[str], Any]
    backend: str  # "sqlite" or "postgres"
    module: str  # what must be importable

    def missing(self) -> str | None:
        """Why this kind cannot run here, or None."""
        if importlib.util.find_spec(self.module) is None:
            return f"`{self.module}` not installed (`pip install -e '.[bench]'`)"
        if self.backend == "postgres" and postgres_url() is None:
            return "no PostgreSQL server could be started"
        return None

    def fresh(self, folder: Path) -> Store:
        """The saver on a fresh, empty store."""
        if self.backend == "sqlite":
            path = folder / f"{self.key}.db"
            where = f"sqlite:///{path}" if self.opener is open_agentlog else str(path)
            saver = self.opener(where)
            return Store(saver, where, lambda: settled_bytes(path), lambda: close_saver(saver))
        base = postgres_url()
        assert base is not None
        url = fresh_database(base, "lg")
        where = url if self.opener is open_agentlog else libpq(url)
        saver = self.opener(where)
        return Store(saver, where, lambda: postgres_bytes(url), lambda: close_saver(saver))


KINDS = (
    Kind("agentlog-sqlite", "AgentLogSaver (SQLite)", open_agentlog, "sqlite", "agentlog"),
    Kind("agentlog-postgres", "AgentLogSaver (PostgreSQL)", open_agentlog, "postgres", "psycopg"),
    Kind("sqlite-saver", "SqliteSaver", open_sqlite_saver, "sqlite", "langgraph.checkpoint.sqlite"),
    Kind(
        "postgres-saver",
        "PostgresSaver",
        open_postgres_saver,
        "postgres",
        "langgraph.checkpoint.postgres",
    ),
)


def kind_of(key: str) -> Kind:
    """The kind with this key."""
    return next(k for k in KINDS if k.key == key)


def resume(key: str, where: str) -> int:
    """Open the store and load the thread's latest checkpoint: its message count."""
    saver = kind_of(key).opener(where)
    try:
        found = saver.get_tuple(THREAD)
        return len(found.checkpoint["channel_values"]["messages"]) if found else 0
    finally:
        close_saver(saver)
