"""LangGraph's ``SqliteSaver``, recording the workload of ``peers.py`` (the OpenAI
Agents SDK's session is in ``peer_agents_sdk``). It comes from the ``bench`` extra;
bench_peers.py imports this module only when it is installed."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.graph.state import CompiledStateGraph
from peers import ARGS, RESULT, TEXT, TOOL, call_id

THREAD_ID = "bench"
THREAD: RunnableConfig = {"configurable": {"thread_id": THREAD_ID}}


def graph_messages(step: int) -> list[BaseMessage]:
    """The step's messages in LangChain's types: the response with its call, the result."""
    cid = call_id(step)
    call = {"name": TOOL, "args": ARGS, "id": cid, "type": "tool_call"}
    return [
        AIMessage(content=TEXT, tool_calls=[call], id=f"ai_{step:08d}"),
        ToolMessage(content=RESULT, tool_call_id=cid, id=f"tool_{step:08d}"),
    ]


def graph(saver: SqliteSaver, counter: list[int]) -> CompiledStateGraph[Any, Any, Any, Any]:
    """START -> model -> tool -> END over ``MessagesState``, checkpointed by ``saver``."""

    def model(state: MessagesState) -> dict[str, Any]:
        return {"messages": [graph_messages(counter[0])[0]]}

    def tool(state: MessagesState) -> dict[str, Any]:
        message = graph_messages(counter[0])[1]
        counter[0] += 1
        return {"messages": [message]}

    builder = StateGraph(MessagesState)
    builder.add_node("model", model)
    builder.add_node("tool", tool)
    builder.add_edge(START, "model")
    builder.add_edge("model", "tool")
    builder.add_edge("tool", END)
    return builder.compile(checkpointer=saver)


def open_saver(path: Path) -> SqliteSaver:
    """A ``SqliteSaver`` on a file, its tables set up."""
    saver = SqliteSaver(sqlite3.connect(path, check_same_thread=False))
    saver.setup()
    return saver


class GraphCheckpoints:
    """A two-node LangGraph graph with ``SqliteSaver``: one ``invoke`` a step, checkpoints
    written before it returns (``durability="sync"``); the message list grows in state."""

    def __init__(self, workdir: Path) -> None:
        self.path = workdir / "langgraph.db"
        self.saver = open_saver(self.path)
        self.counter = [0]
        self.graph = graph(self.saver, self.counter)

    def build(self, steps: int) -> None:
        """One checkpoint holding ``steps`` steps' messages, as if the graph had run."""
        messages = [m for s in range(steps) for m in graph_messages(s)]
        self.graph.update_state(THREAD, {"messages": messages}, as_node="tool")
        self.counter[0] = steps

    def step(self) -> None:
        """One run of the graph: model node, tool node."""
        self.graph.invoke({"messages": []}, THREAD, durability="sync")

    def between(self) -> None:
        """Nothing between steps."""

    def resume_key(self) -> str:
        """The thread id."""
        return THREAD_ID

    def close(self) -> None:
        """Close the saver's connection."""
        self.saver.conn.close()


def resume_graph(path: Path, key: str) -> int:
    """Open the saver and get the thread's state (its latest checkpoint)."""
    saver = open_saver(path)
    try:
        config: RunnableConfig = {"configurable": {"thread_id": key}}
        state = graph(saver, [0]).get_state(config)
        return len(state.values["messages"])
    finally:
        saver.conn.close()
