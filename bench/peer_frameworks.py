"""LangGraph's ``SqliteSaver``, recording the workload of ``peers.py`` (the OpenAI
Agents SDK's session is in ``peer_agents_sdk``). It comes from the ``bench`` extra;
bench_peers.py imports this module only when it is installed."""

from __future__ import annotations

from pathlib import Path

from langchain_core.messages import BaseMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.sqlite import SqliteSaver
from lg_graph import THREAD, THREAD_ID, graph, open_sqlite_saver, tool_step
from peers import ARGS, RESULT, TEXT, TOOL


def graph_messages(step: int) -> list[BaseMessage]:
    """The step's messages in LangChain's types: the response with its call, the result."""
    return tool_step(step, TOOL, ARGS, TEXT, RESULT)


class GraphCheckpoints:
    """A two-node LangGraph graph with ``SqliteSaver``: one ``invoke`` a step, checkpoints
    written before it returns (``durability="sync"``); the message list grows in state."""

    def __init__(self, workdir: Path) -> None:
        self.path = workdir / "langgraph.db"
        self.saver: SqliteSaver = open_sqlite_saver(self.path)
        self.counter = [0]
        self.graph = graph(self.saver, graph_messages, self.counter, loop=False)

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
    saver = open_sqlite_saver(path)
    try:
        config: RunnableConfig = {"configurable": {"thread_id": key}}
        state = graph(saver, graph_messages, [0], loop=False).get_state(config)
        return len(state.values["messages"])
    finally:
        saver.conn.close()
