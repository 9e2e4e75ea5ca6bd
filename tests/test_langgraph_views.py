"""LangGraph threads in agentlog's views and tools: a real tool-calling graph
(``StateGraph`` + ``ToolNode`` + LangChain's fake chat model) on ``AgentLogSaver``, then
``agentlog ls``, ``audit``, ``log``, ``verify`` and ``export --format openai`` through
the real CLI; deletion, rewritten message lists, erasable threads; and, for random
thread histories, rebuilt views == incremental views == what the log says."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from histories import embedded_views
from hypothesis import given, settings
from hypothesis import strategies as st
from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    RemoveMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import tool
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition
from sqlalchemy import MetaData, select

from agentlog.adapters.graph_chat import thread_messages
from agentlog.adapters.langgraph import AgentLogSaver
from agentlog.adapters.storage import open_log
from agentlog.adapters.views import engine_for
from agentlog.cli import main
from agentlog.domain import AgentLog, GraphThread, args_hash
from agentlog.domain.graph_thread import thread_uuid
from agentlog.projections import DEFAULT_VIEWS, Projections, queries
from agentlog.projections.graph_messages import messages_blob
from agentlog.projections.thread_marks import ThreadMarks
from agentlog.projections.transcript import message_from_row

from langgraph_child import CALLS, FINAL_ANSWER, run

SECRET = "zebra-umbrella-7731"
"""A text that must not be found in the database file of an erasable store."""


@tool
def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


@tool
def fail(reason: str) -> str:
    """Always fails."""
    raise ValueError(reason)


def _model(state: MessagesState) -> dict[str, list[BaseMessage]]:
    """Asks for one tool call per user message, then answers with the tool's result."""
    messages = state["messages"]
    last = messages[-1]
    turn = sum(isinstance(m, HumanMessage) for m in messages)
    if isinstance(last, HumanMessage):
        tool_name = "fail" if "fail" in str(last.content) else "add"
        args: dict[str, Any] = {"reason": str(last.content)} if tool_name == "fail" else {}
        args = args or {"a": turn, "b": 10}
        call_id = "call-again" if "again" in str(last.content) else f"call-{turn}"
        call = {"name": tool_name, "args": args, "id": call_id}
        reply = AIMessage(content="", tool_calls=[call])
    else:
        reply = AIMessage(content=f"answer {turn}: {last.content}")
    chat = FakeMessagesListChatModel(responses=[reply])
    return {"messages": [chat.invoke(messages)]}


def build(saver: AgentLogSaver) -> Any:
    """model -> tools -> model, until the model answers without calls."""
    builder = StateGraph(MessagesState)
    builder.add_node("model", _model)
    builder.add_node("tools", ToolNode([add, fail], handle_tool_errors=True))
    builder.add_edge(START, "model")
    builder.add_conditional_edges("model", tools_condition)
    builder.add_edge("tools", "model")
    return builder.compile(checkpointer=saver)


def config(thread_id: str) -> RunnableConfig:
    return {"configurable": {"thread_id": thread_id}}


def ask(url: str, thread_id: str, text: str, **saver: Any) -> None:
    """One turn, with a saver of its own (as a new process would have)."""
    with AgentLogSaver(url, **saver) as fresh:
        build(fresh).invoke({"messages": [HumanMessage(text)]}, config(thread_id))


def cli(url: str, *args: str, code: int = 0) -> str:
    result = CliRunner().invoke(main, ["--db", url, *args])
    assert result.exit_code == code, result.output
    return result.stdout if code == 0 else result.output


def cli_json(url: str, *args: str) -> Any:
    return json.loads(cli(url, *args, "--json"))


def audit_of(url: str, thread_id: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = cli_json(url, "audit", "--agent", f"thread:{thread_id}")
    return rows


def transcript_rows(url: str, thread_id: str) -> list[dict[str, Any]]:
    """The thread's transcript-view messages, as OpenAI dicts like the export's."""
    app = open_log(url)
    views = Projections(app, engine_for(url), DEFAULT_VIEWS)
    try:
        views.catch_up()
        with views.engine.connect() as conn:
            table = views.table(conn, "transcript")
            query = select(table).where(table.c.agent_id == str(thread_uuid(thread_id)))
            rows = list(conn.execute(query.order_by(table.c.seq)))
        return [_plain(message_from_row(row)) for row in rows]
    finally:
        app.close()
        views.engine.dispose()


def _plain(message: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        out["tool_calls"] = [
            {
                "id": c.call_id,
                "type": "function",
                "function": {"name": c.tool, "arguments": json.dumps(c.args)},
            }
            for c in message.tool_calls
        ]
    if message.call_id is not None:
        out["tool_call_id"] = message.call_id
    return out


# -- The real CLI on a real graph ---------------------------------------------------------


def test_ls_audit_log_verify_and_export_show_a_langgraph_thread(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    run(url, "t-1", tmp_path / "ran.txt")  # langgraph_child's agent: CALLS add calls
    (listed,) = cli_json(url, "ls")
    assert (listed["id"], listed["name"], listed["kind"]) == (
        str(thread_uuid("t-1")),
        "t-1",
        "langgraph",
    )
    assert listed["status"] == "idle"
    table = cli(url, "ls").splitlines()[1].split()
    assert table[1:3] == ["t-1", "idle"]
    assert table[5] == "langgraph"

    calls = audit_of(url, "t-1")
    assert [c["call_id"] for c in calls] == [f"call-{n}" for n in range(CALLS)]
    assert [c["args"] for c in calls] == [{"a": n, "b": 1} for n in range(CALLS)]
    assert [c["args_hash"] for c in calls] == [args_hash({"a": n, "b": 1}) for n in range(CALLS)]
    assert {(c["tool"], c["outcome"], c["result_size"]) for c in calls} == {("add", "succeeded", 1)}
    assert {c["decision"] for c in calls} == {None}  # LangGraph ran them: no agentlog policy
    assert cli_json(url, "audit", "--tool", "add", "--outcome", "succeeded") == calls
    assert "call-0" in cli(url, "audit")

    exported = json.loads(cli(url, "export", "--format", "openai", "thread:t-1"))
    assert exported[0] == {"role": "user", "content": "add up"}
    assert exported[-1] == {"role": "assistant", "content": FINAL_ANSWER}
    tool_results = [m for m in exported if m["role"] == "tool"]
    assert [(m["tool_call_id"], m["content"]) for m in tool_results] == [
        (f"call-{n}", str(n + 1)) for n in range(CALLS)
    ]
    asked = [m["tool_calls"][0] for m in exported if m.get("tool_calls")]
    assert [(c["id"], json.loads(c["function"]["arguments"])) for c in asked] == [
        (f"call-{n}", {"a": n, "b": 1}) for n in range(CALLS)
    ]
    assert transcript_rows(url, "t-1") == exported  # the view says what the log says

    log = cli(url, "log", "thread:t-1")
    assert log.count("CheckpointPut") >= 2 * CALLS
    assert cli(url, "verify", "thread:t-1").startswith("OK: 1 agent(s)")
    assert cli(url, "show", "thread:t-1").split()[1] == str(thread_uuid("t-1"))


def test_a_thread_is_never_runnable_for_agentlog_workers(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    ask(url, "t-1", "hello")
    cli(url, "new", "--name", "worked", "--goal", "something")
    app = open_log(url)
    views = Projections(app, engine_for(url), DEFAULT_VIEWS)
    try:
        views.catch_up()
        with views.engine.connect() as conn:
            table = views.table(conn, "runnable")
            rows = {r.agent_id for r in conn.execute(select(table.c.agent_id))}
            runnable = queries.runnable(conn, table)
    finally:
        app.close()
        views.engine.dispose()
    assert str(thread_uuid("t-1")) not in rows
    assert len(runnable) == 1  # the agent only
    (before,) = [t for t in cli_json(url, "ls") if t["kind"] == "langgraph"]
    cli(url, "worker", "--exit-when-idle", "--quiet", "--poll", "0.05")
    assert [t for t in cli_json(url, "ls") if t["kind"] == "langgraph"] == [before]
    assert {t["status"] for t in cli_json(url, "ls") if t["kind"] == "agent"} == {"failed"}


def test_a_new_saver_appends_only_new_messages_and_calls(tmp_path: Path) -> None:
    """A saver in a new process stores the message list whole: the views see that it
    extends what they have and take only the rest."""
    url = f"sqlite:///{tmp_path / 'a.db'}"
    ask(url, "t-1", "first")
    ask(url, "t-1", "second")  # another saver: its first put of the list is whole
    ask(url, "t-1", "please fail")
    ask(url, "t-1", "again")  # models may use a call id again once its call closed
    ask(url, "t-1", "and again")
    calls = audit_of(url, "t-1")
    assert [(c["call_id"], c["tool"], c["outcome"]) for c in calls] == [
        ("call-1", "add", "succeeded"),
        ("call-2", "add", "succeeded"),
        ("call-3", "fail", "failed"),
        ("call-again", "add", "succeeded"),
        ("call-again", "add", "succeeded"),
    ]
    assert "please fail" in (calls[2]["detail"] or "")
    assert [c["args"] for c in calls[3:]] == [{"a": 4, "b": 10}, {"a": 5, "b": 10}]
    exported = json.loads(cli(url, "export", "--format", "openai", "thread:t-1"))
    assert [m["role"] for m in exported] == ["user", "assistant", "tool", "assistant"] * 5
    assert transcript_rows(url, "t-1") == exported


def test_a_whole_list_that_extends_what_the_view_took_adds_only_its_new_messages(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    ask(url, "t-1", "first")
    ask(url, "t-1", "second")  # a new saver: its first put of the list is whole
    with AgentLogSaver(url) as saver:
        graph = build(saver)
        first = graph.get_state(config("t-1")).values["messages"][0]
        graph.update_state(config("t-1"), {"messages": [RemoveMessage(id=first.id)]})
    marks = ThreadMarks("marks", MetaData())
    log = open_log(url)
    try:
        puts = [
            e
            for e in log.events_of(thread_uuid("t-1"))
            if isinstance(e, GraphThread.CheckpointPut) and messages_blob(e) is not None
        ]
        blobs = [messages_blob(put) for put in puts]
        taken = [
            (marks.take("t-1", p), b is not None and b.base is None)
            for p, b in zip(puts, blobs, strict=True)
        ]
    finally:
        log.close()
    whole = [(t.start, len(t.messages), t.replaced) for t, is_whole in taken if t and is_whole]
    assert whole == [(0, 1, False), (4, 1, False), (0, 7, True)]
    deltas = [(t.start, len(t.messages)) for t, is_whole in taken if t and not is_whole]
    assert deltas == [(1, 1), (2, 1), (3, 1), (5, 1), (6, 1), (7, 1)]


def test_a_rewritten_message_list_replaces_the_transcript_and_keeps_the_calls(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    ask(url, "t-1", "first")
    ask(url, "t-1", "second")
    with AgentLogSaver(url) as saver:
        graph = build(saver)
        messages = graph.get_state(config("t-1")).values["messages"]
        first_answer = messages[3]
        graph.update_state(config("t-1"), {"messages": [RemoveMessage(id=first_answer.id)]})
    exported = json.loads(cli(url, "export", "--format", "openai", "thread:t-1"))
    assert len(exported) == 7
    assert first_answer.content not in [m["content"] for m in exported]
    assert transcript_rows(url, "t-1") == exported
    assert [c["call_id"] for c in audit_of(url, "t-1")] == ["call-1", "call-2"]


def test_a_deleted_thread_leaves_the_views_and_its_id_can_be_used_again(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    ask(url, "t-1", "first")
    ask(url, "t-2", "other")
    assert [t["name"] for t in cli_json(url, "ls")] == ["t-1", "t-2"]  # the views saw t-1
    assert transcript_rows(url, "t-1") != []
    with AgentLogSaver(url) as saver:
        saver.delete_thread("t-1")
    assert [t["name"] for t in cli_json(url, "ls")] == ["t-2"]
    assert audit_of(url, "t-1") == []
    assert transcript_rows(url, "t-1") == []
    assert cli(url, "export", "--format", "openai", "thread:t-1") == "[]\n"
    (deleted,) = cli_json(url, "ls", "--status", "deleted")
    assert (deleted["name"], deleted["steps"]) == ("t-1", 0)
    assert cli(url, "verify").startswith("OK: 2 agent(s)")

    ask(url, "t-1", "once more")  # a new history under the same thread id
    assert [t["name"] for t in cli_json(url, "ls")] == ["t-1", "t-2"]
    assert [c["call_id"] for c in audit_of(url, "t-1")] == ["call-1"]
    exported = json.loads(cli(url, "export", "--format", "openai", "thread:t-1"))
    assert exported[0] == {"role": "user", "content": "once more"}
    assert transcript_rows(url, "t-1") == exported


def test_the_state_view_witnesses_a_threads_deleted_last_event(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "a.db"
    url = f"sqlite:///{path}"
    ask(url, "t-1", "first")
    cli(url, "ls")  # the state view saw the whole thread
    with sqlite3.connect(path) as db:
        (last,) = db.execute("SELECT max(originator_version) FROM stored_events").fetchone()
        db.execute("DELETE FROM stored_events WHERE originator_version = ?", (last,))
    found = cli(url, "verify", "thread:t-1", code=1)
    assert f"the log ends at version {last - 1}; the state view saw version {last}" in found


def test_an_erasable_thread_leaves_no_plaintext_in_the_views(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    url = f"sqlite:///{path}"
    ask(url, "t-1", f"first {SECRET}", erasable=True)
    (listed,) = cli_json(url, "ls")
    assert (listed["name"], listed["kind"]) == ("t-1", "langgraph")
    assert audit_of(url, "t-1") == []  # its content is not the views' to copy
    assert transcript_rows(url, "t-1") == []
    error = cli(url, "export", "--format", "openai", "thread:t-1", code=1)
    assert error.startswith("Error: thread 't-1': its payloads are encrypted")
    with AgentLogSaver(url, erasable=True) as saver:
        saver.delete_thread("t-1")
    cli(url, "ls")
    for file in path.parent.iterdir():
        assert SECRET.encode() not in file.read_bytes(), file.name


# -- Rebuilt == incremental, for random thread histories -----------------------------------

VIEWS = [cls.name for cls in DEFAULT_VIEWS]
RAM_DISK = "/dev/shm" if Path("/dev/shm").is_dir() else None
THREADS = ("a", "b")


class Histories:
    """Random operations on two threads through a real graph's ``update_state``."""

    def __init__(self, app: AgentLog, data: st.DataObject) -> None:
        self.app, self.data = app, data
        self.saver = AgentLogSaver(log=app)
        self.graph = self._graph()
        self.calls = 0

    def _graph(self) -> Any:
        builder = StateGraph(MessagesState)
        builder.add_node("noop", lambda state: {})
        builder.add_edge(START, "noop")
        return builder.compile(checkpointer=self.saver)

    def step(self) -> None:
        thread = self.data.draw(st.sampled_from(THREADS), "thread")
        op = self.data.draw(
            st.sampled_from(
                ["say", "say", "call", "result", "remove", "restart", "delete", "copy"]
            ),
            "operation",
        )
        getattr(self, op)(thread)

    def _update(self, thread: str, messages: list[BaseMessage]) -> None:
        self.graph.update_state(config(thread), {"messages": messages})

    def _messages(self, thread: str) -> list[BaseMessage]:
        if self.saver.get_tuple(config(thread)) is None:
            return []
        found: list[BaseMessage] = self.graph.get_state(config(thread)).values.get("messages", [])
        return found

    def say(self, thread: str) -> None:
        kind = self.data.draw(st.sampled_from([HumanMessage, AIMessage, SystemMessage]), "kind")
        text = self.data.draw(st.text(st.characters(exclude_characters="\x00"), max_size=6))
        self._update(thread, [kind(content=text)])

    def call(self, thread: str) -> None:
        self.calls += 1
        n = self.data.draw(st.integers(1, 2), "calls in one message")
        ids = [f"c{self.calls}-{i}" for i in range(n)]
        calls = [{"name": "add", "args": {"a": i}, "id": call_id} for i, call_id in enumerate(ids)]
        self._update(thread, [AIMessage(content="", tool_calls=calls)])

    def result(self, thread: str) -> None:
        asked = [c["id"] for m in self._messages(thread) for c in getattr(m, "tool_calls", [])]
        if asked:
            call_id = self.data.draw(st.sampled_from(asked), "call answered")
            status = self.data.draw(st.sampled_from(["success", "error"]), "status")
            self._update(thread, [ToolMessage(content="r", tool_call_id=call_id, status=status)])

    def remove(self, thread: str) -> None:
        messages = self._messages(thread)
        if messages:
            gone = self.data.draw(st.sampled_from(messages), "message removed")
            assert gone.id is not None
            self._update(thread, [RemoveMessage(id=gone.id)])

    def restart(self, thread: str) -> None:
        self.saver = AgentLogSaver(log=self.app)  # forgets the lists: the next put is whole
        self.graph = self._graph()

    def delete(self, thread: str) -> None:
        self.saver.delete_thread(thread)

    def copy(self, thread: str) -> None:
        other = next(t for t in THREADS if t != thread)
        if self.saver.get_tuple(config(other)) is None:
            self.saver.copy_thread(thread, other)


def all_rows(views: Projections) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every serving build (and the threads' marks), in key order."""
    found: dict[str, list[tuple[Any, ...]]] = {}
    with views.engine.connect() as conn:
        for name, part in [(v, "") for v in VIEWS] + [
            ("transcript", "threads"),
            ("audit", "threads"),
        ]:
            table = views.table(conn, name, part)
            query = select(table).order_by(*table.primary_key.columns)
            found[f"{name} {part}"] = [tuple(row) for row in conn.execute(query)]
    return found


def assert_transcripts_are_the_threads_messages(app: AgentLog, views: Projections) -> None:
    with views.engine.connect() as conn:
        table = views.table(conn, "transcript")
        for thread in THREADS:
            thread_id = thread_uuid(thread)
            query = select(table).where(table.c.agent_id == str(thread_id)).order_by(table.c.seq)
            rows = [message_from_row(row) for row in conn.execute(query)]
            stored = app.recorder.select_events(thread_id, limit=1)
            expected = thread_messages(app, thread_id) if stored else []
            assert rows == expected, thread


@settings(max_examples=max(5, settings().max_examples // 4), deadline=None)
@given(st.data())
def test_rebuilt_thread_views_equal_incremental_ones_and_the_log(data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory(dir=RAM_DISK) as tmp:
        url = f"sqlite:///{Path(tmp) / 'a.db'}"
        with embedded_views(url, data.draw(st.integers(1, 5), "batch size")) as (app, views):
            histories = Histories(app, data)
            for _ in range(data.draw(st.integers(1, 25), "steps")):
                histories.step()
            views.catch_up()
            incremental = all_rows(views)
            assert_transcripts_are_the_threads_messages(app, views)
            batch = data.draw(st.sampled_from([1, 3, 1000]), "rebuild batch size")
            rebuilder = Projections(app, views.engine, DEFAULT_VIEWS, batch_size=batch)
            rebuilder.rebuild_many(VIEWS)
            assert all_rows(views) == incremental


@pytest.mark.parametrize("name", ["runnable"])
def test_the_runnable_view_does_not_decode_thread_events(name: str) -> None:
    (view,) = [v for v in DEFAULT_VIEWS if v.name == name]
    assert not view.handles(GraphThread.CheckpointPut)
    assert not view.handles(GraphThread.WritesPut)
