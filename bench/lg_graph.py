"""The LangGraph agent both LangGraph benchmarks run (``lg_savers.py`` for
bench_langgraph.py, ``peer_frameworks.py`` for bench_peers.py): a model node and a tool
node over ``MessagesState``, each adding one message a step, and LangGraph's
``SqliteSaver`` (from the ``bench`` extra, imported only when opened)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.graph.state import CompiledStateGraph

THREAD_ID = "bench"
THREAD: RunnableConfig = {"configurable": {"thread_id": THREAD_ID}}


def tool_step(
    step: int, tool: str, args: dict[str, Any], text: str, result: str
) -> list[BaseMessage]:
    """A step's messages: the assistant's ``text`` with one call of ``tool``, then its result."""
    cid = f"call_{step:08d}"
    call = {"name": tool, "args": args, "id": cid, "type": "tool_call"}
    return [
        AIMessage(content=text, tool_calls=[call], id=f"ai_{step:08d}"),
        ToolMessage(content=result, tool_call_id=cid, id=f"tool_{step:08d}"),
    ]


def graph(
    saver: BaseCheckpointSaver[Any],
    messages: Callable[[int], list[BaseMessage]],
    counter: list[int],
    *,
    loop: bool,
) -> CompiledStateGraph[Any, Any, Any, Any]:
    """START -> model -> tool, then back to model (``loop``: an agent loop without end)
    or to END (one step an ``invoke``); step ``counter[0]``'s ``messages``, one a node."""

    def model(state: MessagesState) -> dict[str, Any]:
        return {"messages": [messages(counter[0])[0]]}

    def tool(state: MessagesState) -> dict[str, Any]:
        message = messages(counter[0])[1]
        counter[0] += 1
        return {"messages": [message]}

    builder = StateGraph(MessagesState)
    builder.add_node("model", model)
    builder.add_node("tool", tool)
    builder.add_edge(START, "model")
    builder.add_edge("model", "tool")
    builder.add_edge("tool", "model" if loop else END)
    return builder.compile(checkpointer=saver)


def open_sqlite_saver(path: str | Path) -> Any:
    """LangGraph's ``SqliteSaver`` on a file, its tables set up."""
    from langgraph.checkpoint.sqlite import SqliteSaver

    saver = SqliteSaver(sqlite3.connect(path, check_same_thread=False))
    saver.setup()
    return saver
