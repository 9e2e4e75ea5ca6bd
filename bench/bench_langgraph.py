"""Cost of a LangGraph step as the message list grows: AgentLogSaver vs SqliteSaver.

Each step puts one checkpoint whose ``messages`` channel is the previous list plus an
assistant message and a tool result (~300 bytes each), as a tool-calling agent does.
LangGraph's savers store each new channel version whole (O(history) per step);
AgentLogSaver stores the appended messages only. Prints, per saver, the time and the
bytes a step costs around step 100, 1/2 N and N.

    .venv/bin/python bench/bench_langgraph.py [--steps 1000]

Needs the ``langgraph`` extra (and ``langgraph-checkpoint-sqlite`` for the peer).
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common import db_bytes, fmt, log, markdown_table, median
from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver, empty_checkpoint

from agentlog.adapters.langgraph import AgentLogSaver

WINDOW = 20
TEXT = "x" * 250


def settled_bytes(db: Path) -> int:
    """The database's size with its write-ahead log folded in (the WAL is reused, so
    its size says nothing about what a step added)."""
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return db_bytes(db)


def run(
    saver: BaseCheckpointSaver[Any], db: Path, steps: int, marks: list[int]
) -> tuple[list[float], dict[int, float]]:
    """Milliseconds of each step, and bytes a step added in the window before each mark."""
    config: RunnableConfig = {"configurable": {"thread_id": "t", "checkpoint_ns": ""}}
    messages: list[Any] = []
    costs, sizes, per_step = [], {}, {}
    for n in range(steps):
        if n + WINDOW in marks:
            sizes[n + WINDOW] = settled_bytes(db)
        call = {"name": "add", "args": {"a": n}, "id": f"call-{n}"}
        messages = [
            *messages,
            AIMessage(TEXT, id=f"a{n}", tool_calls=[call]),
            ToolMessage(TEXT, tool_call_id=f"call-{n}", id=f"t{n}"),
        ]
        checkpoint = empty_checkpoint()
        checkpoint["channel_values"] = {"messages": messages}
        checkpoint["channel_versions"] = {"messages": n + 1}
        start = time.perf_counter()
        config = saver.put(config, checkpoint, {"step": n, "source": "loop"}, {"messages": n + 1})
        costs.append((time.perf_counter() - start) * 1000)
        if n + 1 in sizes:
            per_step[n + 1] = (settled_bytes(db) - sizes[n + 1]) / WINDOW
    return costs, per_step


def sqlite_saver(db: Path) -> BaseCheckpointSaver[Any] | None:
    """LangGraph's SqliteSaver on a file, if installed."""
    try:
        from langgraph.checkpoint.sqlite import SqliteSaver
    except ImportError:
        return None
    saver = SqliteSaver(sqlite3.connect(db, check_same_thread=False))
    saver.setup()
    found: BaseCheckpointSaver[Any] = saver
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    steps = parser.parse_args().steps
    marks = sorted({min(100, steps), steps // 2, steps})
    assert marks[0] >= WINDOW, f"--steps must be at least {WINDOW}"
    savers: dict[str, Callable[[Path], BaseCheckpointSaver[Any] | None]] = {
        "AgentLogSaver (sqlite)": lambda db: AgentLogSaver(f"sqlite:///{db}"),
        "SqliteSaver": sqlite_saver,
    }
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for i, (name, make) in enumerate(savers.items()):
            db = Path(folder) / f"{i}.db"
            saver = make(db)
            if saver is None:
                log(f"{name}: not installed, skipped")
                continue
            log(f"{name}: {steps} steps")
            costs, per_step = run(saver, db, steps, marks)
            for mark in marks:
                ms = median(costs[mark - WINDOW : mark])
                rows.append([name, str(mark), fmt(ms, 2), fmt(per_step[mark] / 1024, 1)])
    print(markdown_table(["saver", "step", "ms / step", "KB / step"], rows))


if __name__ == "__main__":
    main()
