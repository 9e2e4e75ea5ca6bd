"""Running agents from the command line: run, step, approve, deny, settle, worker."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from agentlog.adapters.storage import open_log
from agentlog.cli import main

SCRIPT = [
    {
        "text": "Computing.",
        "tool_calls": [{"call_id": "c1", "tool": "calculator", "args": {"expression": "6*7"}}],
    },
    {
        "text": "Writing.",
        "tool_calls": [
            {"call_id": "c2", "tool": "write_file", "args": {"path": "a.txt", "content": "42"}}
        ],
    },
    {"text": "Done: 42.", "done": True},
]


@pytest.fixture
def cli(sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("AGENTLOG_DB", sqlite_url)
    monkeypatch.setenv("AGENTLOG_SANDBOX", str(tmp_path / "sandbox"))
    (tmp_path / "script.json").write_text(json.dumps(SCRIPT))
    monkeypatch.chdir(tmp_path)
    return CliRunner()


def run(cli: CliRunner, *args: str) -> Result:
    return cli.invoke(main, list(args))


def waiting_agent(cli: CliRunner) -> str:
    """An agent stopped at the permission gate of its write."""
    agent_id = run(cli, "new", "--name", "a", "--goal", "g", "--model", "scripted:script.json")
    assert agent_id.exit_code == 0, agent_id.output
    result = run(cli, "run", agent_id.output.strip())
    assert "stopped: waiting: c2" in result.output
    return agent_id.output.strip()


def version_of(sqlite_url: str, agent_id: str) -> int:
    log = open_log(sqlite_url)
    return log.get(log.resolve(agent_id)).version


def test_run_stops_at_the_gate_and_finishes_after_approval(cli: CliRunner, tmp_path: Path) -> None:
    agent_id = waiting_agent(cli)
    assert run(cli, "ls", "--status", "waiting", "--json").output.count(agent_id) == 1
    assert run(cli, "approve", agent_id, "c2", "--by", "ana").exit_code == 0
    result = run(cli, "run", agent_id)
    assert "stopped: finished: completed" in result.output
    assert (tmp_path / "sandbox" / "a.txt").read_text() == "42"
    audit = json.loads(
        run(cli, "audit", "--agent", agent_id, "--decision", "approved", "--json").output
    )
    assert [(a["tool"], a["decided_by"], a["outcome"]) for a in audit] == [
        ("write_file", "ana", "succeeded")
    ]


def test_step_does_one_thing(cli: CliRunner, sqlite_url: str) -> None:
    agent_id = run(cli, "new", "--name", "a", "--goal", "g", "--model", "scripted:script.json")
    agent_id_text = agent_id.output.strip()
    before = version_of(sqlite_url, agent_id_text)
    result = run(cli, "step", agent_id_text)
    assert result.exit_code == 0
    assert " model " in result.output
    assert version_of(sqlite_url, agent_id_text) == before + 2  # response + its call


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("approve", "{agent}", "nope"), "has no open tool call 'nope'"),
        (("approve", "{agent}", "c2", "--by", "bob"), "it is granted"),
        (("deny", "{agent}", "c2", "--reason", "late"), "it is granted"),
        (("settle", "{agent}", "c2", "--happened"), "it is granted"),
    ],
)
def test_refused_decisions_exit_1_and_write_nothing(
    cli: CliRunner, sqlite_url: str, args: tuple[str, ...], message: str
) -> None:
    agent_id = waiting_agent(cli)
    assert run(cli, "approve", agent_id, "c2").exit_code == 0
    before = version_of(sqlite_url, agent_id)
    result = run(cli, *(a.format(agent=agent_id) for a in args))
    assert result.exit_code == 1
    assert result.output.startswith("Error: ")
    assert message in result.output
    assert version_of(sqlite_url, agent_id) == before


def test_approving_a_completed_agent_exits_1_and_writes_nothing(
    cli: CliRunner, sqlite_url: str
) -> None:
    agent_id = waiting_agent(cli)
    run(cli, "approve", agent_id, "c2")
    run(cli, "run", agent_id)
    before = version_of(sqlite_url, agent_id)
    result = run(cli, "approve", agent_id, "c2")
    assert result.exit_code == 1
    assert "is completed" in result.output
    assert version_of(sqlite_url, agent_id) == before


def test_denied_call_never_runs_and_the_model_hears_why(cli: CliRunner, tmp_path: Path) -> None:
    agent_id = waiting_agent(cli)
    assert run(cli, "deny", agent_id, "c2", "--reason", "not today", "--by", "ana").exit_code == 0
    run(cli, "run", agent_id)
    assert not (tmp_path / "sandbox" / "a.txt").exists()
    log = run(cli, "log", agent_id, "--json").output.splitlines()
    denied = [json.loads(line) for line in log if '"PermissionDenied"' in line]
    assert denied[0]["reason"] == "not today"


def test_worker_processes_finish_every_runnable_agent(
    cli: CliRunner, sqlite_url: str, tmp_path: Path
) -> None:
    script = [SCRIPT[0], {"text": "Done.", "done": True}]
    (tmp_path / "short.json").write_text(json.dumps(script))
    ids = [
        run(
            cli, "new", "--name", f"w{i}", "--goal", "g", "--model", "scripted:short.json"
        ).output.strip()
        for i in range(4)
    ]
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "agentlog.cli",
            "--db",
            sqlite_url,
            "--sandbox",
            str(tmp_path / "sandbox"),
            "worker",
            "--processes",
            "2",
            "--exit-when-idle",
            "--poll",
            "0.1",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    listed = json.loads(run(cli, "ls", "--json").output)
    assert {a["id"]: a["status"] for a in listed} == dict.fromkeys(ids, "completed")


def test_unbuildable_model_is_an_error_not_a_traceback(cli: CliRunner) -> None:
    agent_id = run(cli, "new", "--name", "a", "--goal", "g").output.strip()  # no --model
    result = run(cli, "step", agent_id)
    assert result.exit_code == 1
    assert result.output.startswith("Error: model 'none'")
