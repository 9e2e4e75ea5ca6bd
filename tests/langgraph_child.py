"""A real LangGraph tool-calling agent on AgentLogSaver, with a scripted LangChain fake
chat model; run as a script it runs one thread until done (or until it is killed).

``python langgraph_child.py URL THREAD_ID RAN_FILE``: every tool run appends its call id
to RAN_FILE, so a test can tell how far the graph got and what ran twice.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import tool
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition

from agentlog.adapters.langgraph import AgentLogSaver

CALLS = 5
TOOL_SECONDS = 0.15
FINAL_ANSWER = "the total is 15"


def script() -> list[AIMessage]:
    """What the model says: one add call per turn, then the answer."""
    calls = [
        AIMessage(
            content="",
            tool_calls=[{"name": "add", "args": {"a": n, "b": 1}, "id": f"call-{n}"}],
        )
        for n in range(CALLS)
    ]
    return [*calls, AIMessage(content=FINAL_ANSWER)]


def build_graph(saver: AgentLogSaver, ran_file: Path) -> Any:
    """The agent: model -> tools -> model ... until the model answers without calls."""

    @tool
    def add(a: int, b: int) -> int:
        """Add two numbers (slowly, so a test can kill the process mid-run)."""
        time.sleep(TOOL_SECONDS)
        with ran_file.open("a") as f:
            f.write(f"add {a}\n")
        return a + b

    def model(state: MessagesState) -> dict[str, list[BaseMessage]]:
        # The scripted reply depends on the state only, so a resumed process continues
        # the script where the log says it is.
        turn = sum(isinstance(m, AIMessage) for m in state["messages"])
        chat = FakeMessagesListChatModel(responses=[script()[turn]])
        return {"messages": [chat.invoke(state["messages"])]}

    builder = StateGraph(MessagesState)
    builder.add_node("model", model)
    builder.add_node("tools", ToolNode([add]))
    builder.add_edge(START, "model")
    builder.add_conditional_edges("model", tools_condition)
    builder.add_edge("tools", "model")
    return builder.compile(checkpointer=saver)


def run(url: str, thread_id: str, ran_file: Path) -> None:
    """Start the thread (or resume it, if it has checkpoints) and run it to the end."""
    config: RunnableConfig = {"configurable": {"thread_id": thread_id}}
    with AgentLogSaver(url) as saver:
        graph = build_graph(saver, ran_file)
        started = saver.get_tuple(config) is not None
        graph.invoke(None if started else {"messages": [HumanMessage("add up")]}, config)


if __name__ == "__main__":
    run(sys.argv[1], sys.argv[2], Path(sys.argv[3]))
