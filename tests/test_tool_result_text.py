"""A tool result becomes the text of its ``tool`` message once, the same everywhere: the
model's context, the transcript view and ``export --format openai``. OpenAI-compatible
tool messages carry a string: a string result goes as it is (``hello``, not
``"hello"``), any other JSON as JSON text. Real SQLite store, real CLI.
"""

from __future__ import annotations

import json
from pathlib import Path
from uuid import UUID

import pytest
from click.testing import CliRunner
from pydantic import JsonValue

from agentlog.adapters.views import Store, open_store
from agentlog.cli import main
from agentlog.domain import EffectClass, Policy, ToolCallRequest
from agentlog.domain.messages import tool_content
from agentlog.projections import queries

RESULTS: list[tuple[JsonValue, str]] = [
    ("hello", "hello"),
    ('say "hi"', 'say "hi"'),
    ("", ""),
    ({"n": 1, "é": "ü"}, '{"n": 1, "é": "ü"}'),
    (["x.py"], '["x.py"]'),
    (3, "3"),
    (None, "null"),
    (True, "true"),
]


@pytest.mark.parametrize(("result", "text"), RESULTS)
def test_a_result_is_sent_as_text_a_string_as_it_is(result: JsonValue, text: str) -> None:
    assert tool_content(result) == text


def ran(store: Store, results: list[JsonValue]) -> UUID:
    """An agent whose model asked for one call per result, each returning its result."""
    agent_id = store.log.create_agent("a")
    store.log.start_task(agent_id, "go")
    agent = store.log.get(agent_id)
    calls = tuple(ToolCallRequest(call_id=f"c{i}", tool="t") for i in range(len(results)))
    agent.record_model_response("", model="m", tool_calls=calls)
    for call, result in zip(calls, results, strict=True):
        agent.call_tool(call, effect=EffectClass.PURE, policy=Policy.ALLOW)
        agent.start_tool(call.call_id, worker_id="w")
        agent.succeed(call.call_id, result)
    store.log.save(agent)
    return agent_id


def tool_texts(messages: list[dict[str, str]]) -> list[str]:
    return [m["content"] for m in messages if m["role"] == "tool"]


def test_the_context_the_view_and_the_export_send_the_same_text(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    expected = [text for _, text in RESULTS]
    store = open_store(sqlite_url)
    try:
        agent_id = ran(store, [result for result, _ in RESULTS])
        child = store.log.fork(agent_id, name="child")
        context = store.log.context(store.log.get(agent_id))
        assert [m.content for m in context if m.role == "tool"] == expected
        store.views.catch_up()
        with store.views.engine.connect() as conn:
            table = store.views.table(conn, "transcript")
            for who in (agent_id, child):
                assert tool_texts(queries.transcript(conn, table, who)) == expected
    finally:
        store.close()
    monkeypatch.setenv("AGENTLOG_DB", sqlite_url)
    for who in (agent_id, child):
        for raw in ((), ("--raw",)):
            out = tmp_path / "chat.json"
            args = ["export", str(who), "--format", "openai", "-o", str(out), *raw]
            result = CliRunner().invoke(main, args)
            assert result.exit_code == 0, result.output
            assert tool_texts(json.loads(out.read_text())) == expected
