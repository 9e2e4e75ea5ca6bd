"""The peer frameworks: the OpenAI Agents SDK's ``SQLiteSession`` and LangGraph's
``SqliteSaver``, recording the workload of ``peers.py``. Both come from the ``bench``
extra; bench_peers.py imports this module only when they are installed."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

from agents import SQLiteSession
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.graph.state import CompiledStateGraph
from peers import ARGS, ARGS_JSON, RESULT, TEXT, TOOL, call_id

SESSION_ID = "bench"
THREAD_ID = "bench"
THREAD: RunnableConfig = {"configurable": {"thread_id": THREAD_ID}}
BUILD_STEPS = 1_000  # steps per untimed add_items


def session_items(step: int) -> list[Any]:
    """The step's items as the SDK's Runner stores them (Responses API input items)."""
    cid = call_id(step)
    return [
        {
            "id": f"msg_{step:08d}",
            "type": "message",
            "role": "assistant",
            "status": "completed",
            "content": [{"type": "output_text", "text": TEXT, "annotations": []}],
        },
        {
            "id": f"fc_{step:08d}",
            "type": "function_call",
            "call_id": cid,
            "name": TOOL,
            "arguments": ARGS_JSON,
            "status": "completed",
        },
        {"type": "function_call_output", "call_id": cid, "output": RESULT},
    ]


class AgentsSession:
    """``agents.SQLiteSession`` on a file: one ``add_items`` of the step's three items
    (the SDK records no claim: a call is not durable before its tool runs)."""

    def __init__(self, workdir: Path) -> None:
        self.path = workdir / "openai-agents.db"
        self.loop = asyncio.new_event_loop()
        self.session = SQLiteSession(SESSION_ID, self.path)
        self.steps = 0

    def build(self, steps: int) -> None:
        """Add ``steps`` steps' items, ``BUILD_STEPS`` steps per call."""
        while steps > 0:
            batch = min(steps, BUILD_STEPS)
            items = [i for s in range(self.steps, self.steps + batch) for i in session_items(s)]
            self.loop.run_until_complete(self.session.add_items(items))
            self.steps += batch
            steps -= batch

    def step(self) -> None:
        """One ``add_items``."""
        self.loop.run_until_complete(self.session.add_items(session_items(self.steps)))
        self.steps += 1

    def between(self) -> None:
        """Nothing between steps."""

    def resume_key(self) -> str:
        """The session id."""
        return SESSION_ID

    def close(self) -> None:
        """Close the session and the event loop."""
        self.session.close()
        self.loop.close()


def resume_session(path: Path, key: str) -> int:
    """Open the session and get every item, as the Runner does before a run."""
    loop = asyncio.new_event_loop()
    session = SQLiteSession(key, path)
    try:
        return len(loop.run_until_complete(session.get_items()))
    finally:
        session.close()
        loop.close()


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
