"""OpenAI chat transcripts in and out: equivalent messages back, nothing run, nothing lost."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any
from uuid import UUID

import chat_transcripts
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_replay_properties import sqlite_file

from agentlog.adapters.chat_export import export_messages
from agentlog.adapters.chat_messages import equivalent, text_of
from agentlog.adapters.openai_chat import import_messages
from agentlog.adapters.storage import open_log
from agentlog.domain import AgentConfig, AgentLog, EffectClass, Phase, Policy, ToolCallRequest
from agentlog.domain.errors import ImportFileError
from agentlog.domain.messages import SUMMARY_PREFIX

texts = st.text(st.characters(codec="utf-8"), max_size=20)  # no lone surrogates
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | texts,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=6,
)
extras = st.dictionaries(  # keys no OpenAI field has (they cannot spell role or content)
    st.text("abdefgxyz_", min_size=1, max_size=6), json_values, max_size=2
)
parts = st.lists(
    st.fixed_dictionaries({"type": st.just("text"), "text": texts})
    | st.fixed_dictionaries(
        {"type": st.just("image_url"), "image_url": st.fixed_dictionaries({"url": texts})}
    ),
    max_size=3,
)
contents = texts | parts
arguments = st.dictionaries(texts, json_values, max_size=3).flatmap(
    lambda args: st.sampled_from(
        [json.dumps(args), json.dumps(args, indent=1), "{not json", "[1, 2]"]
    )
)


def message(role: str, content: Any, extra: dict[str, Any]) -> dict[str, Any]:
    return {**extra, "role": role, "content": content}


@st.composite
def conversations(draw: st.DrawFn) -> list[dict[str, Any]]:
    """A chat as a harness saves it: tool results follow the call that asked for them."""
    chat = []
    if draw(st.booleans()):
        chat.append(
            message(draw(st.sampled_from(["system", "developer"])), draw(contents), draw(extras))
        )
    kinds = ["user", "answer", "calls", "system", "developer"]
    for turn, kind in enumerate(draw(st.lists(st.sampled_from(kinds), max_size=8)), 1):
        if kind in ("user", "system", "developer"):
            chat.append(message(kind, draw(contents), draw(extras)))
        elif kind == "answer":
            no_calls: dict[str, Any] = draw(
                st.sampled_from([{}, {"tool_calls": None}, {"tool_calls": []}])
            )
            chat.append(
                message("assistant", draw(contents | st.none()), {**draw(extras), **no_calls})
            )
        else:
            ids = [f"call_{turn}_{i}" for i in range(draw(st.integers(1, 3)))]
            calls = [
                {
                    "id": i,
                    "type": "function",
                    "function": {"name": "t", "arguments": draw(arguments)},
                }
                for i in ids
            ]
            asked = message("assistant", draw(st.none() | contents), draw(extras))
            chat.append({**asked, "tool_calls": calls})
            answered = draw(
                st.permutations(ids).flatmap(
                    lambda p: st.sampled_from([p[:n] for n in range(len(p) + 1)])
                )
            )
            for call_id in answered:
                chat.append(
                    {**message("tool", draw(contents), draw(extras)), "tool_call_id": call_id}
                )
    return chat or [message("user", "hello", {})]


def import_text(log: AgentLog, text: str, source: str = "chat.json") -> UUID:
    return import_messages(log, io.BytesIO(text.encode()), source=source, name="chat")


def export_text(log: AgentLog, agent_id: UUID, *, raw: bool = True) -> Any:
    out = io.StringIO()
    export_messages(log, agent_id, out, raw=raw)
    return json.loads(out.getvalue())


def assert_equivalent(got: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    assert len(got) == len(expected)
    for n, (a, b) in enumerate(zip(got, expected, strict=True)):
        assert equivalent(a, b), (n, a, b)


@settings(max_examples=max(20, settings().max_examples))
@given(chat=conversations(), shape=st.sampled_from(["list", "lines", "object"]))
def test_openai_import_then_export_gives_back_equivalent_messages(
    chat: list[dict[str, Any]], shape: str
) -> None:
    if shape == "list":
        text = json.dumps(chat)
    elif shape == "lines":
        text = "".join(json.dumps(m) + "\n" for m in chat)
    else:
        text = json.dumps({"model": "m-1", "messages": chat, "usage": {"n": 1}})
    with sqlite_file() as url:
        log = open_log(url)
        try:
            agent_id = import_text(log, text)
            back = export_text(log, agent_id)
            if shape == "object":
                assert {k: v for k, v in back.items() if k != "messages"} == {
                    "model": "m-1",
                    "usage": {"n": 1},
                }
                back = back["messages"]
            assert_equivalent(back, chat)
            log.chained_events(log.get(agent_id), 1)  # the chain holds
        finally:
            log.close()


def test_calls_without_results_wait_for_a_person_and_never_run(app: AgentLog) -> None:
    chat = [
        {"role": "user", "content": "go"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": x, "type": "function", "function": {"name": "rm", "arguments": "{}"}}
                for x in ("a", "b")
            ],
        },
        {"role": "tool", "tool_call_id": "a", "content": "done"},
    ]
    agent = app.get(import_text(app, json.dumps(chat)))
    assert agent.phase is Phase.WAITING
    assert agent.awaiting_permission == ("b",)
    assert not agent.has_work  # no worker picks it up


def test_a_transcript_that_starts_with_the_assistant_exports_without_an_invented_message(
    app: AgentLog,
) -> None:
    chat = [{"role": "assistant", "content": "hi"}, {"role": "user", "content": "hello"}]
    agent_id = import_text(app, json.dumps(chat))
    assert_equivalent(export_text(app, agent_id), chat)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (
            '[{"role": "user", "content": "a"}, {"role": "tool", "tool_call_id": "x", '
            '"content": "r"}]',
            "^message 2: a tool result for 'x', which no open call has",
        ),
        ('[{"role": "user", "content": "a"}, {"content": "no role"}]', "^message 2: a message is"),
        (
            '[{"role": "user", "content": "a"}, {"role": "user", "content": 5}]',
            "^message 2: content must be",
        ),
        (
            '[{"role": "user", "content": "a"}, {"role": "assistant", "content": "", '
            '"tool_calls": [{"id": "", "function": {"name": "t"}}]}]',
            "^message 2: tool call 1",
        ),
        ('[{"role": "user", "content": "a"}, {"role": "user" "content": "b"}]', "not "),
        ("[]", "holds no messages"),
        ('"just a string"', "not a chat transcript"),
    ],
)
def test_a_bad_message_is_named_and_nothing_is_imported(
    app: AgentLog, text: str, error: str
) -> None:
    with pytest.raises(ImportFileError, match=error):
        import_text(app, text)
    assert not app.recorder.select_notifications(1, 10)


def test_export_gives_what_the_model_sees_after_a_compaction_and_raw_gives_everything(
    app: AgentLog, tmp_path: Path
) -> None:
    chat = list(chat_transcripts.messages(40, output_kb=1))
    agent_id = import_text(app, json.dumps(chat))
    agent = app.get(agent_id)
    agent.compact(agent.version // 2, "what happened so far", summarizer="summarizer")
    app.save(agent)
    seen = export_text(app, agent_id, raw=False)
    assert seen[0] == chat[0]  # the system prompt stays
    assert seen[1] == {"role": "user", "content": SUMMARY_PREFIX + "what happened so far"}
    assert len(seen) < len(chat)
    assert_equivalent(seen[2:], chat[len(chat) - len(seen) + 2 :])
    assert_equivalent(export_text(app, agent_id, raw=True), chat)


def test_an_agent_run_by_agentlog_exports_as_openai_messages(app: AgentLog) -> None:
    agent_id = app.create_agent("native", AgentConfig(system_prompt="be brief"))
    app.start_task(agent_id, "list files")
    agent = app.get(agent_id)
    calls = tuple(ToolCallRequest(call_id=c, tool="ls", args={"dir": c}) for c in ("a", "b"))
    agent.record_model_response("", model="m", tool_calls=calls)
    for call in calls:
        agent.call_tool(call, effect=EffectClass.PURE, policy=Policy.ALLOW)
        agent.start_tool(call.call_id, worker_id="w")
    agent.succeed("a", ["x.py"])
    agent.fail_tool("b", "no such dir")
    agent.record_model_response("x.py", model="m")
    app.save(agent)
    assert export_text(app, agent_id, raw=False) == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "list files"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"id": c, "type": "function", "function": {"name": "ls", "arguments": args}}
                for c, args in (("a", '{"dir": "a"}'), ("b", '{"dir": "b"}'))
            ],
        },
        {"role": "tool", "tool_call_id": "a", "content": '["x.py"]'},
        {"role": "tool", "tool_call_id": "b", "content": "error: no such dir"},
        {"role": "assistant", "content": "x.py"},
    ]


def test_a_fork_of_an_imported_agent_exports_its_inherited_context_then_its_own(
    app: AgentLog,
) -> None:
    chat = list(chat_transcripts.messages(30, output_kb=1))
    parent = import_text(app, json.dumps(chat))
    child = app.fork(parent, name="child")
    app.send(child, "and now?")
    got = export_text(app, child, raw=False)
    assert got[-1] == {"role": "user", "content": "and now?"}
    assert [m["role"] for m in got[:-1]] == [m["role"] for m in chat]
    assert [m["content"] for m in got[:-1] if m["role"] == "user"] == [
        text_of(m["content"]) for m in chat if m["role"] == "user"
    ]
