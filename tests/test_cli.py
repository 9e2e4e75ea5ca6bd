"""The agentlog command: thin, honest exit codes, JSON for machines."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner, Result

from agentlog.adapters.storage import open_log
from agentlog.cli import main


@pytest.fixture
def cli(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("AGENTLOG_DB", sqlite_url)
    return CliRunner()


def run(cli: CliRunner, *args: str) -> Result:
    return cli.invoke(main, list(args))


def new_agent(cli: CliRunner, *extra: str) -> str:
    result = run(cli, "new", "--name", "scribe", "--goal", "write", *extra)
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


def test_version_is_the_package_version(cli: CliRunner) -> None:
    result = run(cli, "--version")
    assert result.exit_code == 0
    assert result.output.startswith("agentlog, version ")


def test_init_creates_the_store(cli: CliRunner, sqlite_url: str) -> None:
    result = run(cli, "init")
    assert result.exit_code == 0
    assert sqlite_url in result.output


def test_new_prints_the_id_of_a_running_agent(cli: CliRunner, sqlite_url: str) -> None:
    agent_id = new_agent(cli, "--policy", "rm=deny", "--model", "openai:m1")
    agent = open_log(sqlite_url).get(open_log(sqlite_url).resolve(agent_id))
    assert (agent.name, agent.goal, agent.status, agent.config.model) == (
        "scribe",
        "write",
        "running",
        "openai:m1",
    )
    assert agent.config.tool_policies == {"rm": "deny"}


def test_ls_json_lists_every_agent(cli: CliRunner) -> None:
    ids = [new_agent(cli), new_agent(cli)]
    listed = json.loads(run(cli, "ls", "--json").output)
    assert [a["id"] for a in listed] == ids
    assert {a["status"] for a in listed} == {"running"}


def test_ls_table_shows_names_and_statuses(cli: CliRunner) -> None:
    agent_id = new_agent(cli)
    output = run(cli, "ls").output
    assert agent_id in output
    assert "scribe" in output
    assert "running" in output


def test_show_accepts_an_id_prefix_and_time_travels(cli: CliRunner) -> None:
    agent_id = new_agent(cli)
    now = json.loads(run(cli, "show", agent_id[:8], "--json").output)
    then = json.loads(run(cli, "show", agent_id, "--at", "1", "--json").output)
    assert (now["version"], now["status"]) == (2, "running")
    assert (then["version"], then["status"], then["goal"]) == (1, "idle", None)
    assert "running" in run(cli, "show", agent_id).output


def test_log_prints_one_line_per_event(cli: CliRunner) -> None:
    agent_id = new_agent(cli)
    lines = run(cli, "log", agent_id).output.splitlines()
    assert len(lines) == 2
    assert lines[1].split()[0] == "2"
    assert "TaskStarted" in lines[1]
    assert '"goal":"write"' in lines[1]
    records = [json.loads(line) for line in run(cli, "log", agent_id, "--json").output.splitlines()]
    assert [r["type"] for r in records] == ["Created", "TaskStarted"]
    assert records[1]["prev_hash"] == records[0]["digest"]


@pytest.mark.parametrize(
    "args",
    [
        ("show", "00000000-0000-0000-0000-000000000000"),
        ("show", "zzz"),
        ("log", "zzz"),
        ("show", "{agent}", "--at", "99"),
    ],
)
def test_unknown_agents_and_versions_are_errors_with_exit_code_1(
    cli: CliRunner, args: tuple[str, ...]
) -> None:
    agent_id = new_agent(cli)
    result = run(cli, *(a.format(agent=agent_id) for a in args))
    assert result.exit_code == 1
    assert result.output.startswith("Error: no agent ")
    assert result.output.count("\n") == 1


def test_ambiguous_prefix_is_an_error(cli: CliRunner) -> None:
    ids = [new_agent(cli) for _ in range(17)]  # 17 ids, 16 hex digits: two share a first one
    shared = next(i[0] for i in ids if sum(j[0] == i[0] for j in ids) > 1)
    result = run(cli, "show", shared)
    assert result.exit_code == 1
    assert "agents have ids starting with" in result.output


@pytest.mark.parametrize(
    "args",
    [
        ("show",),
        ("new",),
        ("new", "--name", "x", "--policy", "rm"),
        ("new", "--name", "x", "--default-policy", "maybe"),
        ("show", "x", "--at", "0"),
        ("frobnicate",),
    ],
)
def test_wrong_usage_exits_2(cli: CliRunner, args: tuple[str, ...]) -> None:
    result = run(cli, *args)
    assert result.exit_code == 2
    assert "Traceback" not in result.output


def test_unknown_model_spec_is_a_usage_error(cli: CliRunner) -> None:
    result = run(cli, "new", "--name", "x", "--model", "gpt-4o")
    assert result.exit_code == 2
    assert "scripted:FILE" in result.output


def test_bad_storage_url_is_an_error_with_exit_code_1(cli: CliRunner) -> None:
    result = run(cli, "--db", "mysql://nowhere/x", "ls")
    assert result.exit_code == 1
    assert result.output.startswith("Error: storage URL 'mysql://nowhere/x'")
