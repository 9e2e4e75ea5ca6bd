"""A compaction never splits a model's tool calls from their results: the context it
leaves would hold a ``tool`` message whose assistant ``tool_calls`` were summarised away,
which OpenAI-style APIs reject. An explicit ``--through`` there is refused, naming the
nearest versions that are safe; the default (the latest version) stops at the last safe one.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from click.testing import CliRunner, Result
from histories import grow, moves
from hypothesis import given
from hypothesis import strategies as st

from agentlog.adapters.scripted import FunctionModel
from agentlog.adapters.storage import open_log
from agentlog.cli import main
from agentlog.domain import (
    AgentConfig,
    AgentLog,
    CompactionSplitsCallError,
    EffectClass,
    Policy,
    ToolCallRequest,
)
from agentlog.domain.compaction import compact_with_model, safe_cut
from agentlog.domain.messages import SUMMARY_PREFIX
from agentlog.domain.ports import Decision, Message


def orphans(context: list[Message]) -> list[str]:
    """Tool results in ``context`` with no earlier assistant message asking for them."""
    asked: set[str] = set()
    lost = []
    for m in context:
        asked |= {c.call_id for c in m.tool_calls}
        if m.role == "tool" and m.call_id not in asked:
            lost.append(m.call_id or "")
    return lost


def called(log: AgentLog, agent_id: UUID, *, policy: Policy = Policy.ALLOW) -> None:
    """The model asks for one call (v3), which is recorded (v4)."""
    agent = log.get(agent_id)
    request = ToolCallRequest(call_id="c1", tool="t", args={"q": "x"})
    agent.record_model_response("calling", model="m", tool_calls=(request,))
    log.save(agent)
    agent.call_tool(request, effect=EffectClass.PURE, policy=policy)
    log.save(agent)


def finished(log: AgentLog, agent_id: UUID) -> None:
    """The call runs (v5) and returns (v6)."""
    agent = log.get(agent_id)
    agent.start_tool("c1", worker_id="w")
    log.save(agent)
    agent.succeed("c1", "done")
    log.save(agent)


@pytest.fixture
def cli(sqlite_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> CliRunner:
    monkeypatch.setenv("AGENTLOG_DB", sqlite_url)
    monkeypatch.setenv("LOGNAME", "ana")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sum.json").write_text(json.dumps([{"text": "the gist"}]))
    return CliRunner()


def run(cli: CliRunner, *args: str) -> Result:
    return cli.invoke(main, list(args))


def agent_with_a_call(cli: CliRunner, sqlite_url: str, *, done: bool = True) -> str:
    agent_id = run(cli, "new", "--name", "a", "--goal", "go").output.strip()
    log = open_log(sqlite_url)
    try:
        called(log, UUID(agent_id), policy=Policy.ALLOW if done else Policy.ASK)
        if done:
            finished(log, UUID(agent_id))
            log.send(UUID(agent_id), "thanks")  # v7
        else:
            agent = log.get(UUID(agent_id))
            agent.request_permission("c1")
            log.save(agent)
    finally:
        log.close()
    return agent_id


@pytest.mark.parametrize("through", ["3", "4", "5"])
@pytest.mark.parametrize("how", [("--summary", "s"), ("--model", "scripted:sum.json")])
def test_compact_through_a_call_in_flight_is_refused_naming_safe_versions(
    cli: CliRunner, sqlite_url: str, through: str, how: tuple[str, str]
) -> None:
    agent_id = agent_with_a_call(cli, sqlite_url)
    result = run(cli, "compact", agent_id, "--through", through, *how)
    assert result.exit_code == 1, result.output
    assert len(result.output.splitlines()) == 1
    assert result.output.startswith("Error: ")
    assert "tool call 'c1'" in result.output
    assert "v2 or v6" in result.output
    assert "ContextCompacted" not in run(cli, "log", agent_id).output


@pytest.mark.parametrize("through", ["2", "6", "7"])
def test_compact_through_a_safe_version_leaves_no_result_without_its_call(
    cli: CliRunner, sqlite_url: str, through: str
) -> None:
    agent_id = agent_with_a_call(cli, sqlite_url)
    result = run(cli, "compact", agent_id, "--through", through, "--summary", "s")
    assert result.exit_code == 0, result.output
    assert result.output == f"compacted {agent_id} through v{through} (by person:ana)\n"
    log = open_log(sqlite_url)
    try:
        context = log.context(log.get(UUID(agent_id)))
    finally:
        log.close()
    assert orphans(context) == []
    assert context[0] == Message(role="user", content=SUMMARY_PREFIX + "s")


def test_compact_by_default_stops_before_a_call_that_has_no_result_and_says_so(
    cli: CliRunner, sqlite_url: str
) -> None:
    agent_id = agent_with_a_call(cli, sqlite_url, done=False)  # v5: waits for a person
    result = run(cli, "compact", agent_id, "--summary", "s")
    assert result.exit_code == 0, result.output
    assert result.output == (
        f"compacted {agent_id} through v2 (by person:ana); "
        "stopped before v3: tool call 'c1' has no result yet\n"
    )
    assert run(cli, "approve", agent_id, "c1").exit_code == 0, "approve"
    log = open_log(sqlite_url)
    try:
        finished(log, UUID(agent_id))
        context = log.context(log.get(UUID(agent_id)))
    finally:
        log.close()
    assert orphans(context) == []
    assert [m.role for m in context] == ["user", "assistant", "tool"]


@pytest.mark.parametrize("how", [("--summary", "s"), ("--model", "scripted:sum.json")])
def test_compact_out_of_range_with_a_call_open_says_so(
    cli: CliRunner, sqlite_url: str, how: tuple[str, str]
) -> None:
    agent_id = agent_with_a_call(cli, sqlite_url, done=False)
    result = run(cli, "compact", agent_id, "--through", "99", *how)
    assert result.exit_code == 1
    assert "version 99" in result.output  # the range is what is wrong, not a split call
    assert "split" not in result.output


def test_compact_by_default_with_nothing_safe_to_cover_is_refused(
    cli: CliRunner, sqlite_url: str
) -> None:
    agent_id = agent_with_a_call(cli, sqlite_url, done=False)
    assert run(cli, "compact", agent_id, "--through", "2", "--summary", "s").exit_code == 0
    result = run(cli, "compact", agent_id, "--summary", "again")
    assert result.exit_code == 1
    assert "no result yet" in result.output
    assert len(result.output.splitlines()) == 1


def test_the_library_refuses_a_cut_through_a_call_with_attributes(app: AgentLog) -> None:
    agent_id = app.create_agent("a")
    app.start_task(agent_id, "go")
    called(app, agent_id)
    finished(app, agent_id)
    agent = app.get(agent_id)
    with pytest.raises(CompactionSplitsCallError) as raised:
        safe_cut(app, agent, 4)
    assert (raised.value.call_id, raised.value.before, raised.value.after) == ("c1", 2, 6)
    model = FunctionModel(lambda _: Decision(text="gist"), "sum")
    with pytest.raises(CompactionSplitsCallError):
        compact_with_model(app, agent_id, model, 3)
    assert app.get(agent_id).compacted_through == 0


@given(
    plan=moves.map(lambda p: [m for m in p if m[0] != "compact"]),
    cuts=st.lists(st.integers(0, 12), min_size=1, max_size=3),
)
def test_no_accepted_cut_ever_leaves_a_result_without_its_call(
    plan: list[tuple[str, Any]], cuts: list[int]
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        log = open_log(f"sqlite:///{Path(folder) / 'a.db'}")
        try:
            agent_id = log.create_agent("a", AgentConfig(max_steps=10**6))
            log.start_task(agent_id, "work")
            grow(log, agent_id, plan)
            for back in cuts:
                agent = log.get(agent_id)
                through = max(agent.version - back, agent.compacted_through + 1)
                try:
                    cut = safe_cut(log, agent, through)
                except CompactionSplitsCallError as e:
                    for safe in (e.before, e.after):  # the versions it names are safe
                        assert safe is None or safe_cut(log, agent, safe).through == safe
                    continue
                log.compact(agent_id, "s", through=cut.through, summarizer="s")
            grow(log, agent_id, [("run", 0)])  # calls in flight get their results
            assert orphans(log.context(log.get(agent_id))) == []
        finally:
            log.close()
