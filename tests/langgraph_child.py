"""A real LangGraph tool-calling agent on AgentLogSaver, with a scripted LangChain fake
chat model; run as a script it runs one thread until done (or until it is killed).

``python langgraph_child.py URL THREAD_ID RAN_FILE [PAUSE_AT]``: every tool run appends
``add N`` to RAN_FILE (the side effect a test counts). With PAUSE_AT the process stops
at that point of the run, writes it to RAN_FILE + ``.paused`` and waits there to be
killed (``model:N``: in the model's N-th turn; ``tool:N``: in call N, after its side
effect; ``writes:N``: once call N's result is saved as a pending write, before the
checkpoint that would hold it). Without it, a thread that has checkpoints is resumed.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
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


class Pause:
    """Where the run stops to be killed (nowhere if ``at`` is None)."""

    def __init__(self, at: str | None, ran_file: Path) -> None:
        self.at, self.file = at, ran_file.with_name(ran_file.name + ".paused")

    def here(self, point: str) -> None:
        """Stop for good if ``point`` is where this run pauses (any thread)."""
        if point == self.at:
            self.file.write_text(point)
            self.wait()

    def wait(self) -> None:
        """Block this thread until the process is killed."""
        while True:
            time.sleep(60)


def build_graph(saver: AgentLogSaver, ran_file: Path, pause: Pause | None = None) -> Any:
    """The agent: model -> tools -> model ... until the model answers without calls."""
    stop = pause or Pause(None, ran_file)

    @tool
    def add(a: int, b: int) -> int:
        """Add two numbers (slowly, so a test can kill the process mid-run)."""
        time.sleep(TOOL_SECONDS)
        with ran_file.open("a") as f:
            f.write(f"add {a}\n")
        stop.here(f"tool:{a}")
        return a + b

    def model(state: MessagesState) -> dict[str, list[BaseMessage]]:
        # The scripted reply depends on the state only, so a resumed process continues
        # the script where the log says it is.
        turn = sum(isinstance(m, AIMessage) for m in state["messages"])
        stop.here(f"model:{turn}")
        chat = FakeMessagesListChatModel(responses=[script()[turn]])
        return {"messages": [chat.invoke(state["messages"])]}

    builder = StateGraph(MessagesState)
    builder.add_node("model", model)
    builder.add_node("tools", ToolNode([add]))
    builder.add_edge(START, "model")
    builder.add_conditional_edges("model", tools_condition)
    builder.add_edge("tools", "model")
    return builder.compile(checkpointer=saver)


def _results(values: Any) -> set[str]:
    """The call ids of the tool results among messages (or lists of them)."""
    flat = [m for v in values for m in (v if isinstance(v, list) else [v])]
    return {m.tool_call_id for m in flat if isinstance(m, ToolMessage)}


def pause_after_writes(saver: AgentLogSaver, pause: Pause) -> None:
    """For ``writes:N``: stop once call N's result is saved as a pending write, and never
    save the checkpoint that would hold that result (LangGraph saves writes and
    checkpoints from background threads, so both are held here)."""
    if pause.at is None or not pause.at.startswith("writes:"):
        return
    call = f"call-{pause.at.split(':')[1]}"
    put, put_writes = saver.put, saver.put_writes

    def held_put(*args: Any, **kwargs: Any) -> Any:
        if call in _results(args[1]["channel_values"].get("messages", [])):
            pause.wait()
        return put(*args, **kwargs)

    def pausing_put_writes(*args: Any, **kwargs: Any) -> None:
        put_writes(*args, **kwargs)
        if call in _results(value for _, value in args[1]):
            pause.here(pause.at or "")

    setattr(saver, "put", held_put)  # noqa: B010  (mypy: no assigning to methods)
    setattr(saver, "put_writes", pausing_put_writes)  # noqa: B010


def run(url: str, thread_id: str, ran_file: Path, pause_at: str | None = None) -> None:
    """Start the thread (or resume it, if it has checkpoints) and run it to the end.

    Checkpoints are saved before the next step runs (``durability="sync"``), so a
    paused run holds still: nothing after the pause point reaches the store."""
    config: RunnableConfig = {"configurable": {"thread_id": thread_id}}
    with AgentLogSaver(url) as saver:
        pause = Pause(pause_at, ran_file)
        pause_after_writes(saver, pause)
        graph = build_graph(saver, ran_file, pause)
        started = saver.get_tuple(config) is not None
        start = None if started else {"messages": [HumanMessage("add up")]}
        graph.invoke(start, config, durability="sync")


if __name__ == "__main__":
    run(sys.argv[1], sys.argv[2], Path(sys.argv[3]), sys.argv[4] if len(sys.argv) > 4 else None)
