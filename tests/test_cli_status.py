"""One status per agent: `ls` and `show` print the same word for every phase, and `run`
exits with a code that says where the task stands (0, 1, 3, 4)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from cli_checks import checked, invoke, ok
from click.testing import CliRunner

from agentlog.adapters.storage import open_log
from agentlog.domain import EffectClass, Phase, Policy, ToolCallRequest

ASK_WRITE = [
    {
        "text": "Writing.",
        "tool_calls": [
            {"call_id": "c1", "tool": "write_file", "args": {"path": "a.txt", "content": "42"}}
        ],
    },
    {"text": "Done.", "done": True},
]
DONE = [{"text": "Done at once.", "done": True}]
RUNS_ON = [{"text": f"thinking {n}"} for n in range(5)]


@pytest.fixture
def cli(sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("AGENTLOG_DB", sqlite_url)
    monkeypatch.setenv("AGENTLOG_SANDBOX", str(tmp_path / "sandbox"))
    for name, script in (("ask.json", ASK_WRITE), ("done.json", DONE), ("on.json", RUNS_ON)):
        (tmp_path / name).write_text(json.dumps(script))
    monkeypatch.chdir(tmp_path)
    return CliRunner()


def new(cli: CliRunner, *args: str) -> str:
    return ok(cli, "new", "--name", "a", *args).strip()


def idle(cli: CliRunner, url: str) -> str:
    return new(cli)


def running(cli: CliRunner, url: str) -> str:
    return new(cli, "--goal", "g", "--model", "scripted:on.json")


def waiting(cli: CliRunner, url: str) -> str:
    agent = new(cli, "--goal", "g", "--model", "scripted:ask.json")
    checked(invoke(cli, "run", agent), 3, "waiting for a person: approve or deny c1")
    return agent


def blocked(cli: CliRunner, url: str) -> str:
    """A side effect started, its outcome unknown, and the tool cannot tell."""
    agent = running(cli, url)
    log = open_log(url)
    agent_id = log.resolve(agent)
    request = ToolCallRequest(call_id="c1", tool="send_mail", args={"to": "ana"})
    log.call_tool(agent_id, request, EffectClass.SIDE_EFFECTING, Policy.ALLOW)
    found = log.get(agent_id)
    found.start_tool("c1", worker_id="dead")
    found.mark_outcome_unknown("c1")
    found.leave_to_person("c1", "cannot tell")
    log.save(found)
    log.close()
    return agent


def completed(cli: CliRunner, url: str) -> str:
    agent = new(cli, "--goal", "g", "--model", "scripted:done.json")
    checked(invoke(cli, "run", agent), 0)
    return agent


def failed(cli: CliRunner, url: str) -> str:
    agent = new(cli, "--goal", "g", "--model", "scripted:no-such-file.json")
    checked(invoke(cli, "worker", "--exit-when-idle", "--quiet"), 0)
    return agent


def cancelled(cli: CliRunner, url: str) -> str:
    agent = running(cli, url)
    ok(cli, "cancel", agent, "--reason", "not needed")
    return agent


MAKERS: dict[Phase, Callable[[CliRunner, str], str]] = {
    Phase.IDLE: idle,
    Phase.RUNNING: running,
    Phase.WAITING: waiting,
    Phase.BLOCKED: blocked,
    Phase.COMPLETED: completed,
    Phase.FAILED: failed,
    Phase.CANCELLED: cancelled,
}


@pytest.mark.parametrize("phase", list(Phase))
def test_ls_and_show_print_the_same_status(cli: CliRunner, sqlite_url: str, phase: Phase) -> None:
    agent = MAKERS[phase](cli, sqlite_url)
    (listed,) = json.loads(ok(cli, "ls", "--json", "--status", phase.value))
    shown = json.loads(ok(cli, "show", agent, "--json"))
    assert (listed["id"], listed["status"], shown["status"]) == (agent, phase, phase)
    (status_line,) = [line for line in ok(cli, "show", agent).splitlines() if "status" in line]
    assert status_line.split() == ["status", phase.value]
    (row,) = [line for line in ok(cli, "ls").splitlines() if agent in line]
    assert row.split()[2] == phase.value


def test_run_exits_0_when_the_task_completed(cli: CliRunner, sqlite_url: str) -> None:
    completed(cli, sqlite_url)  # checks the exit code and an empty stderr


def test_run_exits_3_when_a_permission_waits(cli: CliRunner, sqlite_url: str) -> None:
    waiting(cli, sqlite_url)


def test_run_exits_3_when_an_outcome_waits_for_a_person(cli: CliRunner, sqlite_url: str) -> None:
    agent = blocked(cli, sqlite_url)
    checked(invoke(cli, "run", agent), 3, "waiting for a person: settle a call")


def test_run_exits_1_when_the_task_failed(cli: CliRunner, sqlite_url: str) -> None:
    Path("empty.json").write_text(json.dumps([{"text": ""}]))
    agent = new(cli, "--goal", "g", "--model", "scripted:empty.json", "--max-empty-answers", "1")
    result = checked(invoke(cli, "run", agent), 1, "Error: the task failed: limit reached")
    assert "max_empty_answers" in result.stderr


def test_run_exits_1_when_the_task_was_cancelled(cli: CliRunner, sqlite_url: str) -> None:
    agent = cancelled(cli, sqlite_url)
    checked(invoke(cli, "run", agent), 1, "Error: the task was cancelled: not needed")


def test_run_exits_4_when_it_stops_at_max_steps(cli: CliRunner, sqlite_url: str) -> None:
    agent = running(cli, sqlite_url)
    checked(invoke(cli, "run", agent, "--max-steps", "2"), 4, "still running")


def test_run_of_an_agent_without_a_task_is_an_error(cli: CliRunner, sqlite_url: str) -> None:
    agent = new(cli, "--model", "scripted:done.json")
    checked(invoke(cli, "run", agent), 1, f"Error: agent {agent} has no task")


def test_run_help_documents_the_exit_codes(cli: CliRunner) -> None:
    text = ok(cli, "run", "--help")
    for line in ("0  the task completed", "1  the task failed", "3  waiting for a person"):
        assert line in text
