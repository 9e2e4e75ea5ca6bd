"""Every task ends by itself: a model that never finishes meets a finite, recorded limit.

The models here are a real chat-completions server on loopback (``fake_chat_server``)
that answers the same thing to every request and counts them, reached through the
``openai:`` model spec as a worker builds it. Workers run the real loop until idle; a
worker still busy after ``ENDLESS`` steps fails the test instead of hanging it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID, uuid4

import pytest
from click.testing import CliRunner
from eventsourcing.persistence import StoredEvent

from agentlog.adapters.scripted import FunctionModel
from agentlog.adapters.storage import open_log
from agentlog.adapters.tools import ToolRegistry, builtin_tools
from agentlog.adapters.views import open_store
from agentlog.adapters.worker import Worker
from agentlog.cli.main import main
from agentlog.domain import (
    GENESIS,
    Agent,
    AgentConfig,
    AgentLog,
    Aggregate,
    Status,
    event_digest,
)
from agentlog.domain.ports import Context, Decision
from agentlog.domain.runtime import Runtime, Step, StepKind

from conftest import store_url
from fake_chat_server import FakeChatServer, Reply, text_reply, tool_call, tool_calls_reply

AGENTLOG = Path(sys.executable).parent / "agentlog"
ENDLESS = 60  # steps of one worker run that no test here needs: the loop did not end
CUT_OFF = {
    "length": text_reply("and then the", finish_reason="length"),
    "null and no content": text_reply(None, finish_reason=None),
}
TALKS = text_reply("Still thinking about it.", finish_reason=None)  # never done, never empty


@pytest.fixture
def tools(tmp_path: Path) -> ToolRegistry:
    """The built-in tools on a sandbox of the test's own."""
    return builtin_tools(tmp_path / "sandbox")


@pytest.fixture
def model_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No model settings but the ones each test gives (see :func:`serving`)."""
    for name in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "AGENTLOG_MODEL_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def serving(env: pytest.MonkeyPatch, always: Reply, *script: Reply) -> FakeChatServer:
    """A server answering ``script``, then ``always``; ``openai:`` models go to it."""
    server = FakeChatServer(script, otherwise=always)
    env.setenv("OPENAI_BASE_URL", server.base_url)
    env.setenv("OPENAI_API_KEY", "test-key")
    env.setenv("AGENTLOG_MODEL_TIMEOUT", "5")
    return server


def new_agent(url: str, **config: object) -> UUID:
    """An agent on the fake server's model, with a running task."""
    log = open_log(url)
    agent_id = log.create_agent("a", AgentConfig.model_validate({"model": "openai:fake"} | config))
    log.start_task(agent_id, "Say everything.")
    log.close()
    return agent_id


def work(url: str, tools: ToolRegistry, *, turn: int = 50) -> list[Step]:
    """The steps of a worker run until it is idle (it fails the test if it never is)."""
    steps: list[Step] = []

    def on_step(step: Step) -> None:
        steps.append(step)
        if len(steps) >= ENDLESS:
            pytest.fail(f"the worker was still going after {ENDLESS} steps: {steps[-3:]}")

    store = open_store(url)
    try:
        Worker(store, tools, name="w").work(
            poll=0.01, exit_when_idle=True, on_step=on_step, turn=turn
        )
    finally:
        store.close()
    return steps


def events(url: str, agent_id: UUID) -> list[Aggregate.Event]:
    """The agent's stored events."""
    log = open_log(url)
    try:
        return list(log.events_of(agent_id))
    finally:
        log.close()


def limits(found: list[Aggregate.Event]) -> list[tuple[str, float]]:
    """The limits recorded, in order."""
    return [(e.limit, e.value) for e in found if isinstance(e, Agent.LimitReached)]


def assert_ended_by(url: str, agent_id: UUID, limit: str, value: float) -> None:
    """The log ends with the limit and the failed task; no worker can take the agent."""
    found = events(url, agent_id)
    assert [type(e).__name__ for e in found[-2:]] == ["LimitReached", "TaskFailed"]
    assert limits(found) == [(limit, value)]
    store = open_store(url)
    try:
        assert store.log.get(agent_id).status is Status.FAILED
        assert Worker(store, name="w").runnable() == []
    finally:
        store.close()


@pytest.mark.parametrize("reply", CUT_OFF.values(), ids=CUT_OFF)
def test_a_model_that_never_finishes_is_asked_max_empty_answers_times_then_never_again(
    sqlite_url: str, tools: ToolRegistry, model_env: pytest.MonkeyPatch, reply: Reply
) -> None:
    agent_id = new_agent(sqlite_url)
    with serving(model_env, reply) as server:
        first = work(sqlite_url, tools)
        asked = len(server.requests)
        again = work(sqlite_url, tools)
        assert (asked, len(server.requests), again) == (3, 3, [])
    assert [s.kind for s in first] == [StepKind.MODEL] * 3 + [StepKind.LIMIT, StepKind.FINISHED]
    responses = [e for e in events(sqlite_url, agent_id) if isinstance(e, Agent.ModelResponded)]
    assert [r.is_empty for r in responses] == [True] * 3
    assert_ended_by(sqlite_url, agent_id, "max_empty_answers", 3)


def agentlog_worker(url: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``agentlog worker --exit-when-idle`` in a process of its own (killed if endless)."""
    env = os.environ | {"AGENTLOG_DB": url, "AGENTLOG_SANDBOX": str(cwd / "sandbox")}
    return subprocess.run(
        [str(AGENTLOG), "worker", "--exit-when-idle", "--poll", "0.01"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )


def test_the_worker_command_exits_by_itself_when_every_answer_is_cut_off(
    sqlite_url: str, tmp_path: Path, model_env: pytest.MonkeyPatch
) -> None:
    agent_id = new_agent(sqlite_url)
    with serving(model_env, CUT_OFF["length"]) as server:
        first = agentlog_worker(sqlite_url, tmp_path)
        asked = len(server.requests)
        again = agentlog_worker(sqlite_url, tmp_path)
        assert (asked, len(server.requests)) == (3, 3)
    assert (first.returncode, again.returncode, again.stdout) == (0, 0, ""), first.stderr
    assert "max_empty_answers = 3" in first.stdout
    assert_ended_by(sqlite_url, agent_id, "max_empty_answers", 3)


def test_a_model_that_only_talks_ends_at_the_max_steps_given_to_new(
    sqlite_url: str, tools: ToolRegistry, model_env: pytest.MonkeyPatch
) -> None:
    new = ["--db", sqlite_url, "new", "--name", "a", "--goal", "g", "--model", "openai:fake"]
    created = CliRunner().invoke(main, [*new, "--max-steps", "4"])
    assert created.exit_code == 0, created.output
    agent_id = UUID(created.output.strip())
    with serving(model_env, TALKS) as server:
        work(sqlite_url, tools, turn=3)  # the task takes two turns: a turn is no limit
        asked = len(server.requests)
        work(sqlite_url, tools)
        assert (asked, len(server.requests)) == (4, 4)
    found = events(sqlite_url, agent_id)
    responses = [e for e in found if isinstance(e, Agent.ModelResponded)]
    assert [r.is_empty for r in responses] == [False] * 4
    assert_ended_by(sqlite_url, agent_id, "max_steps", 4)  # and no max_steps_per_run


def test_tokens_the_server_reports_add_up_to_max_tokens_before_the_next_request(
    sqlite_url: str, tools: ToolRegistry, model_env: pytest.MonkeyPatch
) -> None:
    agent_id = new_agent(sqlite_url, max_tokens=1_200)
    talks = text_reply("Still thinking.", finish_reason=None, usage=(400, 100))
    with serving(model_env, talks) as server:
        work(sqlite_url, tools)
        assert len(server.requests) == 3  # 500, 1000: below the limit; 1500: no fourth
    log = open_log(sqlite_url)
    tokens = log.get(agent_id).tokens
    log.close()
    assert (tokens.prompt, tokens.completion, tokens.total) == (1_200, 300, 1_500)
    assert_ended_by(sqlite_url, agent_id, "max_tokens", 1_200)


@pytest.fixture(params=["memory", "sqlite"])
def log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AgentLog]:
    """A fresh store in memory and on a SQLite file."""
    log = open_log(store_url(request.param, tmp_path))
    yield log
    log.close()


def thinking(asked: list[Context]) -> FunctionModel:
    """A model that is never done, and notes each time it is asked."""

    def decide(context: Context) -> Decision:
        asked.append(context)
        return Decision(text="Still thinking.")

    return FunctionModel(decide)


def test_past_max_wall_time_the_model_is_not_asked(log: AgentLog) -> None:
    asked: list[Context] = []
    agent_id = log.create_agent("a", AgentConfig(max_wall_time=60))
    log.start_task(agent_id, "g")

    def runtime(offset: timedelta) -> Runtime:
        clock = datetime.now(UTC) + offset
        return Runtime(log, thinking(asked), {}, worker_id="w", now=lambda: clock)

    assert runtime(timedelta(seconds=30)).advance(agent_id).kind is StepKind.MODEL
    step = runtime(timedelta(days=2)).advance(agent_id)
    assert (step.kind, step.detail, len(asked)) == (StepKind.LIMIT, "max_wall_time = 60.0", 1)
    found = list(log.events_of(agent_id))
    assert [type(e).__name__ for e in found[-2:]] == ["LimitReached", "TaskFailed"]
    assert limits(found) == [("max_wall_time", 60)]


OLD_CONFIG: dict[str, object] = {  # as agents were configured before every limit was finite
    "model": "scripted",
    "system_prompt": "",
    "tool_policies": {},
    "default_policy": "ask",
    "max_steps": None,
    "max_tool_failures": 3,
    "max_model_failures": 3,
    "tool_timeout": 60.0,
}


def old_created_event(agent_id: UUID) -> StoredEvent:
    """An agent's first event as an older version stored it: ``max_steps`` null."""
    topic = "agentlog:Agent.Created@1"
    payload = {
        "timestamp": "2026-01-05T09:00:00.000000Z",
        "originator_topic": "agentlog:Agent@1",
        "actor": "user",
        "caused_by": None,
        "prev_hash": GENESIS,
        "name": "old",
        "config": OLD_CONFIG,
        "lineage": None,
    }
    payload["digest"] = event_digest(topic, str(agent_id), 1, payload)
    return StoredEvent(agent_id, 1, topic, json.dumps(payload).encode())


def test_a_stored_null_max_steps_is_the_finite_default(sqlite_url: str) -> None:
    assert AgentConfig.model_validate({"max_steps": None}).max_steps == 100
    agent_id, asked = uuid4(), list[Context]()
    log = open_log(sqlite_url)
    log.recorder.insert_events([old_created_event(agent_id)])
    log.start_task(agent_id, "g")
    step = Runtime(log, thinking(asked), {}, worker_id="w").run(agent_id, max_steps=ENDLESS * 10)
    agent = log.get(agent_id)
    found = list(log.events_of(agent_id))
    log.chained_events(agent, 1)  # the old event is in the chain, unchanged
    log.close()
    assert (agent.config.max_steps, len(asked), step.kind) == (100, 100, StepKind.FINISHED)
    assert limits(found) == [("max_steps", 100)]
    assert isinstance(found[-1], Agent.TaskFailed)


LIMIT_OPTIONS = {
    "--max-steps": "100",
    "--max-tokens": "1000000",
    "--max-empty-answers": "3",
    "--max-wall-time SECONDS": "86400.0",
}


def test_new_help_shows_every_limit_with_its_default() -> None:
    result = CliRunner().invoke(main, ["new", "--help"])
    assert result.exit_code == 0
    help_text = " ".join(result.output.split())
    for option, default in LIMIT_OPTIONS.items():
        assert option in help_text
        after = help_text.split(option, 1)[1]
        assert f"[default: {default}" in after.split("--", 1)[0], option


BAD_LIMITS = [
    (option, value)
    for option in ("--max-steps", "--max-tokens", "--max-empty-answers", "--max-wall-time")
    for value in ("0", "-1", "many")
]


@pytest.mark.parametrize(("option", "value"), BAD_LIMITS)
def test_new_refuses_a_limit_that_is_not_positive(sqlite_url: str, option: str, value: str) -> None:
    new = ["--db", sqlite_url, "new", "--name", "a", "--goal", "g"]
    result = CliRunner().invoke(main, [*new, option, value])
    assert result.exit_code == 2
    assert f"Invalid value for '{option}'" in result.output
    listed = CliRunner().invoke(main, ["--db", sqlite_url, "ls", "--json"])
    assert listed.exit_code == 1
    assert "no agentlog store" in listed.output  # refused before anything was created


def test_finish_reason_is_recorded_on_each_response(
    sqlite_url: str, tools: ToolRegistry, model_env: pytest.MonkeyPatch
) -> None:
    agent_id = new_agent(sqlite_url)
    script = (
        tool_calls_reply(tool_call("c1", "calculator", {"expression": "6*7"})),
        text_reply("It is", finish_reason="length"),
        text_reply("It is 42.", finish_reason="stop"),
    )
    with serving(model_env, CUT_OFF["length"], *script) as server:
        work(sqlite_url, tools)
        assert len(server.requests) == 3
    found = events(sqlite_url, agent_id)
    responses = [e for e in found if isinstance(e, Agent.ModelResponded)]
    assert [r.finish_reason for r in responses] == ["tool_calls", "length", "stop"]
    assert isinstance(found[-1], Agent.TaskCompleted)
