"""Compaction: ``agentlog compact`` with a summary or a model, and the worker's own when a
context passes its configured size. Only the model's context changes: every stored
event row stays byte for byte what it was, and the compaction is one row more.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from click.testing import CliRunner, Result
from histories import grow, moves, rows
from hypothesis import assume, given
from hypothesis import strategies as st

from agentlog.adapters.scripted import FunctionModel
from agentlog.adapters.storage import open_log
from agentlog.adapters.views import open_store
from agentlog.cli import main
from agentlog.domain import (
    Agent,
    AgentConfig,
    AgentLog,
    CompactionRangeError,
    CompactionSplitsCallError,
)
from agentlog.domain.compaction import (
    compact_with_model,
    estimated_tokens,
    over_limit,
    safe_cut,
)
from agentlog.domain.messages import SUMMARY_PREFIX
from agentlog.domain.ports import Context, Decision, Message, ModelCallError
from agentlog.domain.runtime import Runtime, StepKind
from agentlog.projections import queries


def summarizer(text: str = "it went well", name: str = "sum") -> FunctionModel:
    """A model that answers every request with ``text``."""
    return FunctionModel(lambda _: Decision(text=text), name)


@given(
    plan=moves,
    by_model=st.booleans(),
    back=st.integers(0, 6),
    summary=st.text(min_size=1, max_size=20).filter(str.strip),
)
def test_compaction_never_changes_a_stored_event(
    plan: list[tuple[str, Any]], by_model: bool, back: int, summary: str
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "a.db"
        log = open_log(f"sqlite:///{path}", snapshot_interval=3)
        try:
            agent_id = log.create_agent("a", AgentConfig(system_prompt="sys", max_steps=10**6))
            log.start_task(agent_id, "work")
            grow(log, agent_id, plan)
            agent = log.get(agent_id)
            through = max(agent.version - back, agent.compacted_through + 1)
            if by_model:  # a model's summary is checked not to split a call from its result
                try:
                    safe_cut(log, agent, through)
                except CompactionSplitsCallError as e:
                    through = e.before or e.after or 0
                    assume(through > 0)
            before = rows(path)
            if by_model:
                compact_with_model(log, agent_id, summarizer(summary), through)
            else:
                log.compact(agent_id, summary, through=through, summarizer="person:ana")
            after = rows(path)
            assert after[:-1] == before  # every row as it was, byte for byte
            assert after[-1][:2] == (agent_id.hex, agent.version + 1)
            compacted = log.get(agent_id)
            assert compacted.compacted_through == through
            assert log.chained_events(compacted, 1)[-1].digest == compacted.head_hash
            context = log.context(compacted)
            assert context[0] == Message(role="system", content="sys")
            expected = summary.strip() if by_model else summary
            assert context[1] == Message(role="user", content=SUMMARY_PREFIX + expected)
        finally:
            log.close()


def test_a_compaction_must_cover_something_new(app: AgentLog) -> None:
    agent_id = app.create_agent("a")
    app.start_task(agent_id, "go")
    assert app.compact(agent_id, "s", summarizer="x") == 2
    with pytest.raises(CompactionRangeError):
        app.compact(agent_id, "again", through=2, summarizer="x")


# The worker compacts by itself


def talker(seen: list[Context]) -> FunctionModel:
    """A model that says something long and never finishes, noting what it saw."""

    def decide(context: Context) -> Decision:
        seen.append(context)
        return Decision(text="x" * 30)

    return FunctionModel(decide, "talker")


def test_the_runtime_compacts_when_the_context_passes_its_size(app: AgentLog) -> None:
    config = AgentConfig(system_prompt="sys", compact_at_chars=50)
    agent_id = app.create_agent("a", config)
    app.start_task(agent_id, "go")
    seen: list[Context] = []
    runtime = Runtime(app, talker(seen), {}, worker_id="w", summarizer=summarizer())
    for _ in range(4):
        runtime.advance(agent_id)
    compactions = [e for e in app.events_of(agent_id) if isinstance(e, Agent.ContextCompacted)]
    assert [(c.summarizer, c.actor, c.summary) for c in compactions] == [
        ("model:sum", "model:sum", "it went well")
    ] * len(compactions)
    assert compactions
    # "sys", "go" and one answer of 30: 35 chars, under 50; with two answers: 65, over
    assert [m.content for m in seen[1].messages] == ["sys", "go", "x" * 30]
    assert [m.content for m in seen[2].messages] == ["sys", SUMMARY_PREFIX + "it went well"]
    assert compactions[0].through_version == 4  # everything up to the second answer
    assert app.get(agent_id).steps == 4


def test_the_token_limit_is_characters_over_four(app: AgentLog) -> None:
    assert estimated_tokens(41) == 11
    config = AgentConfig(compact_at_tokens=10)
    assert over_limit(config, [Message(role="user", content="x" * 41)])
    assert not over_limit(config, [Message(role="user", content="x" * 40)])
    assert not over_limit(AgentConfig(), [Message(role="user", content="x" * 10**6)])


def test_a_summarizer_that_fails_is_recorded_as_a_model_failure(app: AgentLog) -> None:
    agent_id = app.create_agent("a", AgentConfig(compact_at_chars=10))
    app.start_task(agent_id, "go on and on")
    app.send(agent_id, "and on")

    def broken(_: Context) -> Decision:
        raise ModelCallError("timeout", "no answer")

    runtime = Runtime(app, talker([]), {}, worker_id="w", summarizer=FunctionModel(broken, "s"))
    step = runtime.advance(agent_id)
    assert (step.kind, step.detail) == (StepKind.MODEL_FAILED, "summary_failed: timeout: no answer")
    last = list(app.events_of(agent_id))[-1]
    assert isinstance(last, Agent.ModelFailed)
    assert (last.model, last.kind) == ("s", "summary_failed")
    assert app.get(agent_id).compacted_through == 0


# The command line


@pytest.fixture
def cli(sqlite_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> CliRunner:
    monkeypatch.setenv("AGENTLOG_DB", sqlite_url)
    monkeypatch.setenv("LOGNAME", "ana")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sum.json").write_text(json.dumps([{"text": "the gist"}]))
    return CliRunner()


def run(cli: CliRunner, *args: str) -> Result:
    return cli.invoke(main, list(args))


def talked(cli: CliRunner, sqlite_url: str) -> str:
    agent_id = run(cli, "new", "--name", "a", "--goal", "go").output.strip()
    log = open_log(sqlite_url)
    grow(log, UUID(agent_id), [("say", "one"), ("answer", "two"), ("say", "three")])
    log.close()
    return agent_id


def transcript(sqlite_url: str, agent_id: str) -> list[str]:
    store = open_store(sqlite_url)
    try:
        with store.views.engine.connect() as conn:
            table = store.views.table(conn, "transcript")
            return [r["content"] for r in queries.transcript(conn, table, UUID(agent_id))]
    finally:
        store.close()


def test_compact_with_a_summary_is_by_the_person_and_leaves_the_rows(
    cli: CliRunner, sqlite_url: str
) -> None:
    agent_id = talked(cli, sqlite_url)
    path = Path(sqlite_url.removeprefix("sqlite:///"))
    before = rows(path)
    result = run(cli, "compact", agent_id[:8], "--summary", "asked twice", "--through", "4")
    assert result.exit_code == 0, result.output
    assert result.output == f"compacted {agent_id} through v4 (by person:ana)\n"
    assert rows(path)[:-1] == before
    assert transcript(sqlite_url, agent_id) == [SUMMARY_PREFIX + "asked twice", "three"]
    events = [json.loads(x) for x in run(cli, "log", agent_id, "--json").output.splitlines()]
    assert [e["type"] for e in events][-2:] == ["UserMessageReceived", "ContextCompacted"]
    assert events[-1]["summarizer"] == "person:ana"
    by = run(cli, "compact", agent_id, "--summary", "all", "--by", "bot:tidy")
    assert by.output.endswith("(by bot:tidy)\n")


def test_compact_with_a_model_records_the_model(cli: CliRunner, sqlite_url: str) -> None:
    agent_id = talked(cli, sqlite_url)
    result = run(cli, "compact", agent_id, "--model", "scripted:sum.json")
    assert result.exit_code == 0, result.output
    assert result.output.endswith("through v5 (by model:scripted:sum.json)\n")
    assert transcript(sqlite_url, agent_id) == [SUMMARY_PREFIX + "the gist"]


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        ((), 2, "give --summary TEXT or --model SPEC"),
        (("--summary", "s", "--model", "scripted:sum.json"), 2, "one of them"),
        (("--model", "scripted:sum.json", "--by", "ana"), 2, "recorded as itself"),
        (("--model", "nope"), 2, "unknown form"),
        (("--model", "scripted:missing.json"), 1, "no script file"),
        (("--summary", "s", "--through", "99"), 1, "cannot compact through version 99"),
    ],
)
def test_compact_refuses_bad_input_in_one_line(
    cli: CliRunner, sqlite_url: str, args: tuple[str, ...], code: int, says: str
) -> None:
    agent_id = talked(cli, sqlite_url)
    result = run(cli, "compact", agent_id, *args)
    assert result.exit_code == code
    assert says in result.output
    assert "Traceback" not in result.output
    assert "ContextCompacted" not in run(cli, "log", agent_id).output


def test_new_with_compact_at_makes_the_worker_compact(cli: CliRunner, tmp_path: Path) -> None:
    script = [{"text": "a long answer that fills the context " * 2}] * 10
    (tmp_path / "talk.json").write_text(json.dumps(script))
    created = run(
        cli,
        *("new", "--name", "a", "--goal", "go", "--model", "scripted:talk.json"),
        *("--compact-at", "100chars", "--compact-model", "scripted:sum.json"),
    )
    assert created.exit_code == 0, created.output
    agent_id = created.output.strip()
    config = json.loads(run(cli, "show", agent_id, "--json").output)["config"]
    assert (config["compact_at_chars"], config["compact_model"]) == (100, "scripted:sum.json")
    assert (
        run(cli, "run", agent_id, "--max-steps", "4").exit_code == 4
    )  # stopped at --max-steps, still running
    events = [json.loads(x) for x in run(cli, "log", agent_id, "--json").output.splitlines()]
    compactions = [e for e in events if e["type"] == "ContextCompacted"]
    assert compactions
    assert {(e["summarizer"], e["summary"]) for e in compactions} == {
        ("model:scripted:sum.json", "the gist")
    }


@pytest.mark.parametrize("size", ["100", "tokens", "0chars", "5 words"])
def test_new_refuses_a_size_without_a_unit(cli: CliRunner, size: str) -> None:
    result = run(cli, "new", "--name", "a", "--compact-at", size)
    assert result.exit_code == 2
    assert "e.g. 8000tokens" in result.output


def test_new_takes_a_size_in_tokens(cli: CliRunner, sqlite_url: str) -> None:
    agent_id = run(cli, "new", "--name", "a", "--compact-at", "8000tokens").output.strip()
    config = json.loads(run(cli, "show", agent_id, "--json").output)["config"]
    assert (config["compact_at_tokens"], config["compact_at_chars"]) == (8000, None)


class _Unread(list[Message]):
    """A context that fails the test if anything reads past its first ``allowed`` items."""

    def __init__(self, items: list[Message], allowed: int) -> None:
        super().__init__(items)
        self.allowed = allowed

    def __iter__(self) -> Iterator[Message]:
        for i, message in enumerate(super().__iter__()):
            assert i < self.allowed, "read past what the size check needs"
            yield message


def test_the_size_check_reads_nothing_without_a_limit_and_stops_at_the_limit() -> None:
    big = [Message(role="user", content="x" * 30) for _ in range(1000)]
    assert not over_limit(AgentConfig(), _Unread(big, allowed=0))
    # Over 50 characters after two messages of 30: the rest is never looked at.
    assert over_limit(AgentConfig(compact_at_chars=50), _Unread(big, allowed=2))
    assert over_limit(AgentConfig(compact_at_chars=10**6, compact_at_tokens=15), _Unread(big, 3))
    assert not over_limit(AgentConfig(compact_at_chars=30_000), big)  # exactly at the limit
    assert over_limit(AgentConfig(compact_at_chars=29_999), big)
