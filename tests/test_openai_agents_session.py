"""The OpenAI Agents SDK's Session kept in agentlog: the SDK's own SQLiteSession is the
oracle for the protocol, and a real Runner with an offline model keeps its session here,
which the CLI then lists, audits, verifies, forks and exports."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from agents import Agent as SdkAgent
from agents import RunConfig, Runner, function_tool
from agents.items import ModelResponse, TResponseInputItem
from agents.memory import SQLiteSession
from agents.memory.session_settings import SessionSettings
from agents.models.interface import Model
from agents.usage import Usage
from cli_checks import ok
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openai.types.responses import (
    ResponseFunctionToolCall,
    ResponseOutputMessage,
    ResponseOutputText,
)

from agentlog.adapters.openai_agents import AgentlogSession
from agentlog.adapters.storage import open_log
from agentlog.domain import (
    AgentFinishedError,
    AgentLog,
    InvalidEventDataError,
    ItemSession,
    SessionCommandError,
    session_uuid,
)

from conftest import store_url

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
)
items = st.one_of(
    st.builds(lambda text: {"role": "user", "content": text}, st.text(max_size=10)),
    st.builds(
        lambda cid, args: {
            "type": "function_call",
            "call_id": cid,
            "name": "f",
            "arguments": json.dumps(args),
        },
        st.text(min_size=1, max_size=4),
        json_values,
    ),
    st.dictionaries(st.text(max_size=6), json_values, max_size=4),  # anything (reasoning, ...)
)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.lists(items, max_size=4)),
        st.tuples(st.just("pop"), st.none()),
        st.tuples(st.just("clear"), st.none()),
        st.tuples(st.just("get"), st.none() | st.integers(-2, 6)),
    ),
    max_size=25,
)


async def _apply(session: Any, op: str, arg: Any) -> Any:
    if op == "add":
        return await session.add_items(arg)
    if op == "pop":
        return await session.pop_item()
    if op == "clear":
        return await session.clear_session()
    return await session.get_items(arg)


def _check_against_sqlite_session(log: AgentLog, ops: list[tuple[str, Any]]) -> None:
    session_id = str(uuid4())
    ours, oracle = AgentlogSession(session_id, log), SQLiteSession(session_id)

    async def run() -> None:
        for op, arg in [*ops, ("get", None)]:
            expected = await _apply(oracle, op, arg)
            assert await _apply(ours, op, arg) == expected, (op, arg)

    try:
        asyncio.run(run())
    finally:
        oracle.close()


@pytest.fixture(params=["sqlite", "postgres"])
def log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AgentLog]:
    """An AgentLog on a fresh SQLite file, then on a fresh PostgreSQL database."""
    app = open_log(store_url(request.param, tmp_path))
    yield app
    app.close()


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=operations)
def test_session_answers_as_the_sdks_sqlite_session_does(
    log: AgentLog, ops: list[tuple[str, Any]]
) -> None:
    _check_against_sqlite_session(log, ops)  # a fresh session id per example


def test_session_limit_comes_from_its_settings(app: AgentLog) -> None:
    session = AgentlogSession("s", app, session_settings=SessionSettings(limit=2))

    async def run() -> tuple[list[TResponseInputItem], list[TResponseInputItem]]:
        await session.add_items([{"role": "user", "content": str(i)} for i in range(5)])
        return await session.get_items(), await session.get_items(4)

    tail, explicit = asyncio.run(run())
    assert [i["content"] for i in tail] == ["3", "4"]  # type: ignore[typeddict-item]
    assert len(explicit) == 4


def test_get_items_with_a_limit_reads_only_the_tail(app: AgentLog) -> None:
    session = AgentlogSession("long", app)
    batch = [{"role": "user", "content": str(i)} for i in range(100)]

    async def fill() -> None:
        for _ in range(20):
            await session.add_items(batch)  # type: ignore[arg-type]
        await session.pop_item()

    asyncio.run(fill())
    read: list[int] = []
    events_get = app.events.get

    def counting(*args: Any, **kwargs: Any) -> Iterator[Any]:
        for event in events_get(*args, **kwargs):
            read.append(event.originator_version)
            yield event

    app.events.get = counting  # type: ignore[method-assign]
    newest = asyncio.run(session.get_items(limit=3))
    assert [i["content"] for i in newest] == ["96", "97", "98"]  # type: ignore[typeddict-item]
    # Of 2,002 events: the load's tail after its snapshot, and one page of 3 + 8.
    assert len(read) <= 12
    assert min(read) > 1990


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_concurrent_writers_lose_no_item(backend: str, tmp_path: Path) -> None:
    url = store_url(backend, tmp_path)
    logs = [open_log(url) for _ in range(3)]  # as three processes would: no shared cache
    per_writer = 15

    def write(w: int) -> None:
        session = AgentlogSession("shared", logs[w])
        for i in range(per_writer):
            asyncio.run(session.add_items([{"role": "user", "content": f"{w}:{i}"}]))

    try:
        threads = [threading.Thread(target=write, args=(w,)) for w in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        got = asyncio.run(AgentlogSession("shared", logs[0]).get_items())
    finally:
        for log in logs:
            log.close()
    texts = [str(i["content"]) for i in got]  # type: ignore[typeddict-item]
    assert sorted(texts) == sorted(f"{w}:{i}" for w in range(3) for i in range(per_writer))
    for w in range(3):  # each writer's items in the order it added them
        assert [t for t in texts if t.startswith(f"{w}:")] == [f"{w}:{i}" for i in range(15)]


def test_agentlog_commands_are_refused_on_a_session(app: AgentLog) -> None:
    asyncio.run(AgentlogSession("s", app).add_items([{"role": "user", "content": "hi"}]))
    with pytest.raises(SessionCommandError):
        app.start_task(session_uuid("s"), "do something else")


def test_cancelled_session_takes_no_more_items_and_still_reads(tmp_path: Path) -> None:
    url = store_url("sqlite", tmp_path)
    log = open_log(url)
    try:
        session = AgentlogSession("s", log)
        asyncio.run(session.add_items([{"role": "user", "content": "hi"}]))
        ok(CliRunner(), "--db", url, "cancel", str(session.agent_id), "--reason", "leaked key")
        for change in (
            session.add_items([{"role": "user", "content": "more"}]),
            session.pop_item(),
            session.clear_session(),
        ):
            with pytest.raises(AgentFinishedError):
                asyncio.run(change)
        assert asyncio.run(session.get_items()) == [{"role": "user", "content": "hi"}]
    finally:
        log.close()


def test_item_that_is_no_json_is_refused_and_nothing_is_stored(app: AgentLog) -> None:
    session = AgentlogSession("s", app)
    good = {"role": "user", "content": "kept"}
    with pytest.raises(InvalidEventDataError, match="ItemAdded"):
        asyncio.run(session.add_items([good, {"x": float("nan")}]))  # type: ignore[list-item]
    assert asyncio.run(session.get_items()) == []


class OfflineModel(Model):
    """A model that needs no network: canned responses, and the inputs it was given."""

    def __init__(self, outputs: list[list[Any]]) -> None:
        self.outputs = outputs
        self.inputs: list[list[TResponseInputItem]] = []

    async def get_response(self, *args: Any, **kwargs: Any) -> ModelResponse:
        given = args[1] if len(args) > 1 else kwargs["input"]
        self.inputs.append(list(given) if isinstance(given, list) else [])
        return ModelResponse(output=self.outputs.pop(0), usage=Usage(), response_id=None)

    def stream_response(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        raise NotImplementedError("the tests do not stream")


def _say(text: str, n: int) -> ResponseOutputMessage:
    part = ResponseOutputText(text=text, type="output_text", annotations=[])
    return ResponseOutputMessage(
        id=f"msg_{n}", role="assistant", status="completed", type="message", content=[part]
    )


def _call(city: str) -> ResponseFunctionToolCall:
    arguments = json.dumps({"city": city})
    return ResponseFunctionToolCall(
        id="fc_1", call_id="call_1", name="weather", arguments=arguments, type="function_call"
    )


@function_tool
def weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


def _two_turns(url: str) -> tuple[OfflineModel, list[TResponseInputItem]]:
    """A Runner over two turns whose session is in the store at ``url``."""
    model = OfflineModel(
        [[_call("Oslo")], [_say("Sunny in Oslo.", 1)], [_say("You asked about Oslo.", 2)]]
    )
    agent = SdkAgent(name="forecaster", instructions="Be brief.", model=model, tools=[weather])
    config = RunConfig(tracing_disabled=True)
    session = AgentlogSession("conversation-1", url)

    async def run() -> list[TResponseInputItem]:
        first = await Runner.run(agent, "Weather in Oslo?", session=session, run_config=config)
        assert first.final_output == "Sunny in Oslo."
        second = await Runner.run(agent, "What did I ask?", session=session, run_config=config)
        assert second.final_output == "You asked about Oslo."
        return await session.get_items()

    try:
        return model, asyncio.run(run())
    finally:
        session.close()


def test_sdk_runner_keeps_its_session_in_agentlog(tmp_path: Path) -> None:
    url = store_url("sqlite", tmp_path)
    model, stored = _two_turns(url)
    kinds = [i.get("type", i.get("role")) for i in stored]
    assert kinds == [
        "user", "function_call", "function_call_output", "message", "user", "message"
    ]  # fmt: skip
    # The second turn's model saw the first turn, read back from agentlog.
    assert model.inputs[2][:4] == stored[:4]
    assert stored[2]["output"] == "sunny in Oslo"  # type: ignore[typeddict-item]

    log = open_log(url)  # another process's view of the same store
    try:
        again = asyncio.run(AgentlogSession("conversation-1", log).get_items())
        assert again == stored
        assert isinstance(log.get(session_uuid("conversation-1")), ItemSession)
    finally:
        log.close()


def test_cli_lists_audits_verifies_forks_and_exports_an_sdk_session(tmp_path: Path) -> None:
    url = store_url("sqlite", tmp_path)
    _, stored = _two_turns(url)
    agent_id = str(session_uuid("conversation-1"))
    cli = CliRunner()

    listed = json.loads(ok(cli, "--db", url, "ls", "--json"))
    assert [(a["id"], a["name"], a["kind"]) for a in listed] == [
        (agent_id, "conversation-1", "session")
    ]
    assert "ItemAdded" in ok(cli, "--db", url, "log", agent_id)
    audit = json.loads(ok(cli, "--db", url, "audit", "--agent", agent_id, "--json"))
    calls = [(r["call_id"], r["tool"], r["args"], r["outcome"]) for r in audit]
    assert calls == [("call_1", "weather", {"city": "Oslo"}, "succeeded")]
    assert audit[0]["result_size"] == len("sunny in Oslo")
    assert "ok" in ok(cli, "--db", url, "verify", agent_id).lower()

    exported = json.loads(ok(cli, "--db", url, "export", agent_id, "--format", "openai"))
    messages = exported["messages"] if isinstance(exported, dict) else exported
    roles = [m["role"] for m in messages]
    assert roles == ["user", "assistant", "tool", "assistant", "user", "assistant"]
    dump = tmp_path / "session.jsonl"
    ok(cli, "--db", url, "export", agent_id, "-o", str(dump))
    elsewhere = store_url("sqlite", tmp_path / "elsewhere")
    ok(cli, "--db", elsewhere, "import", str(dump))
    log = open_log(elsewhere)
    try:  # the imported session reads as the SDK wrote it
        assert asyncio.run(AgentlogSession("conversation-1", log).get_items()) == stored
    finally:
        log.close()

    fork_out = ok(cli, "--db", url, "fork", agent_id, "--at", "4")
    fork_id = UUID(next(w for w in fork_out.split() if len(w) == 36))
    log = open_log(url)
    try:
        fork = AgentlogSession.of_agent(log, fork_id)
        assert asyncio.run(fork.get_items()) == stored[:3]  # the parent's items at version 4
        asyncio.run(fork.add_items([{"role": "user", "content": "and Bergen?"}]))
        assert asyncio.run(fork.get_items(2)) == [
            stored[2],
            {"role": "user", "content": "and Bergen?"},
        ]
        assert asyncio.run(AgentlogSession("conversation-1", log).get_items()) == stored
    finally:
        log.close()
