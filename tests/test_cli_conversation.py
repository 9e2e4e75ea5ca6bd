"""send, start, cancel; `new --goal` saves the agent and its task at once; long text
from files or stdin."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cli_checks import checked, invoke, ok
from click.testing import CliRunner

from agentlog.adapters.storage import open_log
from agentlog.domain import Agent, AgentLog, InvalidEventDataError, TextTooLargeError
from agentlog.domain.values import MAX_TEXT_CHARS


@pytest.fixture
def cli(sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("AGENTLOG_DB", sqlite_url)
    monkeypatch.chdir(tmp_path)
    return CliRunner()


def agents(url: str) -> list[Agent]:
    log = open_log(url)
    try:
        return [log.get(agent_id) for agent_id in log.agent_ids()]
    finally:
        log.close()


def events(url: str, agent: str) -> list[str]:
    log = open_log(url)
    try:
        return [type(e).__name__ for e in log.events_of(log.resolve(agent))]
    finally:
        log.close()


def test_new_with_a_goal_is_one_save(sqlite_url: str) -> None:
    log = open_log(sqlite_url)
    agent_id = log.create_agent("a", goal="g")
    notifications = log.recorder.select_notifications(1, 10)
    assert [n.originator_version for n in notifications] == [1, 2]
    assert log.get(agent_id).goal == "g"
    log.close()


@pytest.mark.parametrize(
    ("goal", "error"),
    [("bad \udcff byte", InvalidEventDataError), ("x" * (MAX_TEXT_CHARS + 1), TextTooLargeError)],
)
def test_a_refused_goal_leaves_no_agent_behind(
    app: AgentLog, goal: str, error: type[Exception]
) -> None:
    with pytest.raises(error):
        app.create_agent("a", goal=goal)
    assert list(app.agent_ids()) == []


def test_new_refuses_a_goal_that_is_not_utf8_and_keeps_nothing(
    cli: CliRunner, sqlite_url: str, tmp_path: Path
) -> None:
    (tmp_path / "goal.txt").write_bytes(b"find \xff owls")
    checked(invoke(cli, "new", "--name", "a", "--goal-file", "goal.txt"), 1, "Error: --goal-file:")
    checked(invoke(cli, "new", "--name", "a", "--goal", "find \udcff owls"), 1, "Error: --goal:")
    assert agents(sqlite_url) == []


def test_new_refuses_a_goal_too_large_and_keeps_nothing(
    cli: CliRunner, sqlite_url: str, tmp_path: Path
) -> None:
    (tmp_path / "goal.txt").write_text("x" * (MAX_TEXT_CHARS + 1))
    result = invoke(cli, "new", "--name", "a", "--goal-file", "goal.txt")
    checked(result, 1, f"Error: the goal has {MAX_TEXT_CHARS + 1:,} characters")
    ok(cli, "init")
    assert agents(sqlite_url) == []


def test_a_one_megabyte_goal_comes_from_a_file_or_stdin(
    cli: CliRunner, sqlite_url: str, tmp_path: Path
) -> None:
    goal = "é" * (1 << 20)
    (tmp_path / "goal.txt").write_text(goal, encoding="utf-8")
    (tmp_path / "prompt.txt").write_text("be brief\n", encoding="utf-8")
    args = ("new", "--name", "a", "--system-prompt-file", "prompt.txt")
    from_file = ok(cli, *args, "--goal-file", "goal.txt").strip()
    from_stdin = ok(cli, *args, "--goal-file", "-", stdin=goal.encode()).strip()
    found = {str(a.id): a for a in agents(sqlite_url)}
    for agent in (from_file, from_stdin):
        assert (found[agent].goal, found[agent].config.system_prompt) == (goal, "be brief\n")
        assert events(sqlite_url, agent) == ["Created", "TaskStarted"]


def test_a_goal_inline_and_from_a_file_is_a_usage_error(cli: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "goal.txt").write_text("g")
    result = invoke(cli, "new", "--name", "a", "--goal", "g", "--goal-file", "goal.txt")
    checked(result, 2, "Usage: ")
    assert "give --goal or --goal-file, not both" in result.stderr


def test_a_goal_file_that_is_missing_is_one_error_line(cli: CliRunner) -> None:
    result = invoke(cli, "new", "--name", "a", "--goal-file", "nowhere.txt")
    checked(result, 1, "Error: --goal-file: cannot read nowhere.txt")


def test_send_records_a_user_message(cli: CliRunner, sqlite_url: str) -> None:
    agent = ok(cli, "new", "--name", "a", "--goal", "g").strip()
    assert ok(cli, "send", agent[:8], "and hurry", "--by", "ana").startswith(f"sent to {agent}")
    ok(cli, "send", agent, "--file", "-", stdin="from stdin")
    log = open_log(sqlite_url)
    sent = [
        e for e in log.events_of(log.resolve(agent)) if isinstance(e, Agent.UserMessageReceived)
    ]
    assert [(e.text, e.actor) for e in sent] == [("and hurry", "ana"), ("from stdin", "user")]


def test_send_without_text_is_a_usage_error(cli: CliRunner) -> None:
    agent = ok(cli, "new", "--name", "a").strip()
    checked(invoke(cli, "send", agent), 2, "Usage: ")


def test_start_gives_an_idle_agent_a_task(cli: CliRunner, sqlite_url: str) -> None:
    agent = ok(cli, "new", "--name", "a").strip()
    assert ok(cli, "start", agent, "find owls").strip() == f"started {agent}"
    (shown,) = json.loads(ok(cli, "ls", "--json"))
    assert (shown["status"], shown["goal"]) == ("running", "find owls")


def test_start_on_a_running_agent_is_an_error(cli: CliRunner) -> None:
    agent = ok(cli, "new", "--name", "a", "--goal", "g").strip()
    checked(invoke(cli, "start", agent, "another"), 1, f"Error: agent {agent} is already running")


def test_cancel_stops_the_task_with_its_reason(cli: CliRunner) -> None:
    agent = ok(cli, "new", "--name", "a", "--goal", "g").strip()
    assert ok(cli, "cancel", agent, "--reason", "not needed").strip() == (
        f"cancelled {agent}: not needed"
    )
    shown = json.loads(ok(cli, "show", agent, "--json"))
    assert (shown["status"], shown["result"]) == ("cancelled", "not needed")
    checked(invoke(cli, "cancel", agent), 1, f"Error: agent {agent} is cancelled")
    checked(invoke(cli, "send", agent, "hello?"), 1, f"Error: agent {agent} is cancelled")


def test_commands_on_an_unknown_agent_are_one_error_line(cli: CliRunner) -> None:
    ok(cli, "init")
    for args in (("send", "abc", "hi"), ("start", "abc", "g"), ("cancel", "abc")):
        checked(invoke(cli, *args), 1, "Error: no agent abc")


def test_a_goal_from_a_pipe_in_a_real_process(sqlite_url: str, tmp_path: Path) -> None:
    env = {**os.environ, "AGENTLOG_DB": sqlite_url}
    done = subprocess.run(
        [sys.executable, "-m", "agentlog.cli", "new", "--name", "a", "--goal-file", "-"],
        input=b"x" * (1 << 20),
        capture_output=True,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, b"")
    (agent,) = agents(sqlite_url)
    assert (str(agent.id), len(agent.goal or "")) == (done.stdout.decode().strip(), 1 << 20)
