"""The OpenAI-compatible model adapter against a real local server speaking the protocol."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import pytest

from agentlog.adapters.openai_model import NO_KEY, OpenAIChatModel
from agentlog.adapters.storage import open_log
from agentlog.adapters.tools import CalcArgs, PathArgs, builtin_tools
from agentlog.domain import Agent, AgentConfig, Status, TokenUsage, ToolCallRequest
from agentlog.domain.ports import Context, Decision, Message, ModelCallError, ToolSpec
from agentlog.domain.runtime import Runtime, StepKind, tool_spec

from fake_chat_server import (
    FakeChatServer,
    Reply,
    error_reply,
    json_reply,
    raw_reply,
    slow_reply,
    text_reply,
    tool_call,
    tool_calls_reply,
)


@pytest.fixture
def server() -> Iterator[FakeChatServer]:
    """A fresh fake chat-completions server."""
    with FakeChatServer() as fake:
        yield fake


@pytest.fixture
def model(server: FakeChatServer) -> Iterator[OpenAIChatModel]:
    """The adapter pointed at the fake server, with a short timeout and no retries."""
    chat = OpenAIChatModel(
        "test-model", base_url=server.base_url, api_key="test-key", timeout=1.5, max_retries=0
    )
    yield chat
    chat.close()


def context(*messages: Message, tools: tuple[ToolSpec, ...] = ()) -> Context:
    """A context with the given messages (a single user message if none)."""
    return Context(
        agent_id=uuid4(),
        goal="g",
        messages=messages or (Message(role="user", content="hi"),),
        tools=tools,
    )


def decide(model: OpenAIChatModel, server: FakeChatServer, reply: Reply) -> Decision:
    """The model's decision when the server answers ``reply``."""
    server.queue(reply)
    return model.decide(context())


def test_sends_every_role_in_the_chat_completions_format(
    model: OpenAIChatModel, server: FakeChatServer
) -> None:
    call = ToolCallRequest(call_id="call_1", tool="calculator", args={"expression": "1+1"})
    server.queue(text_reply("ok"))
    model.decide(
        context(
            Message(role="system", content="be brief"),
            Message(role="user", content="add"),
            Message(role="assistant", content="", tool_calls=(call,)),
            Message(role="tool", content="2", call_id="call_1"),
            Message(role="assistant", content="it is 2"),
        )
    )
    (request,) = server.requests
    assert request.messages == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "add"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "calculator", "arguments": '{"expression": "1+1"}'},
                }
            ],
        },
        {"role": "tool", "content": "2", "tool_call_id": "call_1"},
        {"role": "assistant", "content": "it is 2"},
    ]


def test_sends_tools_as_functions_with_their_json_schemas(
    model: OpenAIChatModel, server: FakeChatServer, tmp_path: Path
) -> None:
    tools = builtin_tools(tmp_path / "sandbox")
    server.queue(text_reply("ok"))
    model.decide(context(tools=(tool_spec(tools["read_file"]), tool_spec(tools["calculator"]))))
    (request,) = server.requests
    assert request.body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "read_file",
                "description": tools["read_file"].description,
                "parameters": PathArgs.model_json_schema(),
            },
        },
        {
            "type": "function",
            "function": {
                "name": "calculator",
                "description": tools["calculator"].description,
                "parameters": CalcArgs.model_json_schema(),
            },
        },
    ]


def test_sends_no_tools_field_when_there_are_no_tools(
    model: OpenAIChatModel, server: FakeChatServer
) -> None:
    decide(model, server, text_reply("ok"))
    assert "tools" not in server.requests[0].body


def test_sends_the_model_name_and_the_key(model: OpenAIChatModel, server: FakeChatServer) -> None:
    decide(model, server, text_reply("ok"))
    (request,) = server.requests
    assert (request.path, request.body["model"]) == ("/v1/chat/completions", "test-model")
    assert request.headers["authorization"] == "Bearer test-key"
    assert model.name == "test-model"


def test_a_stopped_text_answer_is_done_with_its_usage(
    model: OpenAIChatModel, server: FakeChatServer
) -> None:
    decision = decide(model, server, text_reply("all done", usage=(31, 7)))
    assert decision == Decision(
        text="all done",
        done=True,
        usage=TokenUsage(prompt=31, completion=7),
        finish_reason="stop",
    )


def test_an_answer_cut_by_the_length_limit_is_not_done(
    model: OpenAIChatModel, server: FakeChatServer
) -> None:
    decision = decide(model, server, text_reply("and then", finish_reason="length"))
    assert (decision.text, decision.done, decision.finish_reason) == ("and then", False, "length")


def test_tool_calls_become_requests_with_parsed_arguments(
    model: OpenAIChatModel, server: FakeChatServer
) -> None:
    reply = tool_calls_reply(
        tool_call("call_a", "calculator", {"expression": "6*7"}),
        tool_call("call_b", "read_file", '{"path": "notes/é.txt"}'),
        text="let me see",
        usage=(50, 12),
    )
    decision = decide(model, server, reply)
    assert decision == Decision(
        text="let me see",
        tool_calls=(
            ToolCallRequest(call_id="call_a", tool="calculator", args={"expression": "6*7"}),
            ToolCallRequest(call_id="call_b", tool="read_file", args={"path": "notes/é.txt"}),
        ),
        usage=TokenUsage(prompt=50, completion=12),
        finish_reason="tool_calls",
    )


def test_tool_calls_are_never_done_even_when_the_server_says_stop(
    model: OpenAIChatModel, server: FakeChatServer
) -> None:
    reply = tool_calls_reply(tool_call("c", "clock", "{}"), finish_reason="stop")
    decision = decide(model, server, reply)
    assert (len(decision.tool_calls), decision.done) == (1, False)


def test_empty_arguments_mean_no_arguments(model: OpenAIChatModel, server: FakeChatServer) -> None:
    decision = decide(model, server, tool_calls_reply(tool_call("c", "clock", "")))
    assert decision.tool_calls == (ToolCallRequest(call_id="c", tool="clock", args={}),)


def test_a_response_without_usage_counts_no_tokens(
    model: OpenAIChatModel, server: FakeChatServer
) -> None:
    body = {"choices": [{"index": 0, "finish_reason": "stop", "message": {"content": "hi"}}]}
    decision = decide(model, server, json_reply(body))
    assert (decision.text, decision.usage) == ("hi", TokenUsage())


BAD_REPLIES = {
    "http 500": (error_reply(500, "the GPU caught fire"), "http_error", "HTTP 500: the GPU"),
    "http 429": (error_reply(429, "slow down", kind="rate_limit"), "http_error", "HTTP 429: slow"),
    "http 502 html": (
        raw_reply(b"<h1>bad gateway</h1>", content_type="text/html", status=502),
        "http_error",
        "HTTP 502: <h1>bad gateway",
    ),
    "timeout": (slow_reply(5), "timeout", "no answer within 1.5s"),
    "body not json": (raw_reply(b'{"choices": ['), "bad_output", "unreadable response"),
    "body not a completion": (
        raw_reply(b"hello", content_type="text/plain"),
        "bad_output",
        "not a chat completion",
    ),
    "no choices": (json_reply({"choices": []}), "bad_output", "no choices"),
    "choices not a list": (json_reply({"choices": "x"}), "bad_output", "no choices"),
    "arguments not json": (
        tool_calls_reply(tool_call("c", "calculator", "{expression: 1")),
        "bad_output",
        "arguments of calculator are not JSON",
    ),
    "arguments not an object": (
        tool_calls_reply(tool_call("c", "calculator", "[1, 2]")),
        "bad_output",
        "arguments of calculator are not a JSON object",
    ),
    "call without id": (
        tool_calls_reply(tool_call("", "clock", "{}")),
        "bad_output",
        "malformed chat completion",
    ),
    "custom tool call": (
        tool_calls_reply({"id": "c", "type": "custom", "custom": {"name": "x", "input": "y"}}),
        "bad_output",
        "not a function tool call",
    ),
}


@pytest.mark.parametrize(("reply", "kind", "fragment"), BAD_REPLIES.values(), ids=BAD_REPLIES)
def test_failures_raise_model_call_errors_with_a_kind(
    model: OpenAIChatModel, server: FakeChatServer, reply: Reply, kind: str, fragment: str
) -> None:
    with pytest.raises(ModelCallError) as raised:
        decide(model, server, reply)
    assert (raised.value.kind, fragment in raised.value.message) == (kind, True)


def test_an_unreachable_server_is_a_connection_error() -> None:
    with FakeChatServer() as gone:
        url = gone.base_url
    chat = OpenAIChatModel("m", base_url=url, api_key="k", timeout=0.3, max_retries=0)
    with pytest.raises(ModelCallError) as raised:
        chat.decide(context())
    chat.close()
    assert raised.value.kind == "connection"
    assert url in raised.value.message


def test_retries_are_the_clients_own(server: FakeChatServer) -> None:
    chat = OpenAIChatModel("m", base_url=server.base_url, api_key="k", timeout=1, max_retries=1)
    server.queue(error_reply(503, "warming up"), text_reply("ready"))
    decision = chat.decide(context())
    chat.close()
    assert (decision.text, len(server.requests)) == ("ready", 2)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No OpenAI or agentlog model settings in the environment."""
    for name in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "AGENTLOG_MODEL_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_from_spec_follows_the_official_environment_variables(
    server: FakeChatServer, clean_env: pytest.MonkeyPatch
) -> None:
    clean_env.setenv("OPENAI_BASE_URL", server.base_url)
    clean_env.setenv("OPENAI_API_KEY", "env-key")
    clean_env.setenv("AGENTLOG_MODEL_TIMEOUT", "0.25")
    chat = OpenAIChatModel.from_spec("llama3.1:8b")
    decision = decide(chat, server, text_reply("hi"))
    chat.close()
    assert (chat.name, chat.timeout, decision.text) == ("llama3.1:8b", 0.25, "hi")
    assert server.requests[0].headers["authorization"] == "Bearer env-key"


def test_from_spec_needs_no_key_for_a_server_of_your_own(
    server: FakeChatServer, clean_env: pytest.MonkeyPatch
) -> None:
    clean_env.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/unused")
    chat = OpenAIChatModel.from_spec("local", base_url=server.base_url)
    decide(chat, server, text_reply("hi"))
    chat.close()
    assert server.requests[0].headers["authorization"] == f"Bearer {NO_KEY}"


def test_from_spec_without_key_or_server_is_a_config_error(clean_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(ModelCallError) as raised:
        OpenAIChatModel.from_spec("gpt-4o-mini")
    assert raised.value.kind == "config"


@pytest.mark.parametrize("timeout", ["soon", "0", "-1"])
def test_from_spec_refuses_a_timeout_that_is_not_positive_seconds(
    clean_env: pytest.MonkeyPatch, timeout: str
) -> None:
    clean_env.setenv("OPENAI_API_KEY", "k")
    clean_env.setenv("AGENTLOG_MODEL_TIMEOUT", timeout)
    with pytest.raises(ModelCallError, match="AGENTLOG_MODEL_TIMEOUT"):
        OpenAIChatModel.from_spec("gpt-4o-mini")


def test_runtime_with_the_adapter_completes_a_task_with_real_tools(
    model: OpenAIChatModel, server: FakeChatServer, tmp_path: Path
) -> None:
    tools = builtin_tools(tmp_path / "sandbox")
    (tmp_path / "sandbox" / "notes.txt").write_text("the answer is 6*7")
    server.queue(
        tool_calls_reply(tool_call("call_r", "read_file", {"path": "notes.txt"}), usage=(40, 9)),
        tool_calls_reply(tool_call("call_c", "calculator", {"expression": "6*7"}), usage=(60, 9)),
        text_reply("It is 42.", usage=(80, 4)),
    )
    log = open_log(f"sqlite:///{tmp_path}/a.db")
    agent_id = log.create_agent(
        "reader", AgentConfig(model="test-model", system_prompt="Be exact.")
    )
    log.start_task(agent_id, "What does notes.txt compute?")
    step = Runtime(log, model, tools, worker_id="w1").run(agent_id, max_steps=10)
    agent = log.get(agent_id)
    events = list(log.events_of(agent_id))
    log.close()
    assert (step.kind, agent.status, agent.result) == (
        StepKind.FINISHED,
        Status.COMPLETED,
        "It is 42.",
    )
    assert agent.tokens == TokenUsage(prompt=180, completion=22)
    assert isinstance(events[-1], Agent.TaskCompleted)
    assert [m["role"] for m in server.requests[-1].messages] == [
        "system",
        "user",
        "assistant",
        "tool",
        "assistant",
        "tool",
    ]
    assert server.requests[-1].messages[3:6:2] == [
        {"role": "tool", "content": "the answer is 6*7", "tool_call_id": "call_r"},  # as is
        {"role": "tool", "content": "42", "tool_call_id": "call_c"},
    ]
    assert {t["function"]["name"] for t in server.requests[0].body["tools"]} == set(tools)
