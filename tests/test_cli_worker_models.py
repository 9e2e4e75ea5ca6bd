"""Nothing silent: a worker records an agent whose model cannot be built (and says so
once per agent), and a policy for a tool that does not exist is warned about."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_checks import checked, invoke, ok
from click.testing import CliRunner

from agentlog.adapters.storage import open_log
from agentlog.domain import Agent, AgentConfig, Aggregate

UNBUILDABLE = {
    "unknown spec": "bogus:thing",
    "missing API key": "openai:gpt-4o-mini",
    "bad script file": "scripted:no-such-script.json",
}


@pytest.fixture
def cli(sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("AGENTLOG_DB", sqlite_url)
    monkeypatch.setenv("AGENTLOG_SANDBOX", str(tmp_path / "sandbox"))
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    return CliRunner()


def agents_with(url: str, *models: str, max_model_failures: int = 3) -> dict[str, str]:
    """A running agent per model spec (made through the API: `new` refuses an unknown
    form), by spec -> id."""
    log = open_log(url)
    ids = {}
    for spec in models:
        config = AgentConfig(model=spec, max_model_failures=max_model_failures)
        ids[spec] = str(log.create_agent(spec, config, goal="g"))
    log.close()
    return ids


def history(url: str, agent: str) -> list[type[Aggregate.Event]]:
    log = open_log(url)
    try:
        return [type(e) for e in log.events_of(log.resolve(agent))]
    finally:
        log.close()


@pytest.mark.parametrize("case", list(UNBUILDABLE))
def test_worker_records_an_agent_whose_model_cannot_be_built(
    cli: CliRunner, sqlite_url: str, case: str
) -> None:
    (agent,) = agents_with(sqlite_url, UNBUILDABLE[case]).values()
    result = checked(invoke(cli, "worker", "--exit-when-idle"), 0, f"warning: agent {agent}: ")
    assert "recorded as ModelFailed" in result.stderr
    assert history(sqlite_url, agent) == [
        Agent.Created,
        Agent.TaskStarted,
        *[Agent.ModelFailed] * 3,
        Agent.LimitReached,
        Agent.TaskFailed,
    ]
    (row,) = json.loads(ok(cli, "ls", "--json"))
    assert (row["status"], row["last_error"]) == ("failed", "limit reached: max_model_failures = 3")


def test_worker_warns_once_per_agent_across_passes(cli: CliRunner, sqlite_url: str) -> None:
    ids = agents_with(sqlite_url, *UNBUILDABLE.values(), max_model_failures=60)  # > one turn
    result = checked(invoke(cli, "worker", "--exit-when-idle"), 0, "warning: agent ")
    warned = sorted(line.split()[2].rstrip(":") for line in result.stderr.splitlines())
    assert warned == sorted(ids.values())
    for agent in ids.values():
        assert history(sqlite_url, agent).count(Agent.ModelFailed) == 60


def test_worker_quiet_records_without_a_word(cli: CliRunner, sqlite_url: str) -> None:
    ids = agents_with(sqlite_url, *UNBUILDABLE.values())
    checked(invoke(cli, "worker", "--exit-when-idle", "--quiet"), 0)
    for agent in ids.values():
        assert history(sqlite_url, agent)[-1] is Agent.TaskFailed


def test_worker_help_says_what_happens_to_such_agents(cli: CliRunner) -> None:
    text = " ".join(ok(cli, "worker", "--help").split())
    assert "whose model cannot be built" in text
    assert "recorded as ModelFailed" in text
    assert "--quiet" in text


def test_step_of_an_agent_whose_model_cannot_be_built_records_nothing(
    cli: CliRunner, sqlite_url: str
) -> None:
    """A person at the terminal sees the error; the agent is left as it was."""
    (agent,) = agents_with(sqlite_url, UNBUILDABLE["bad script file"]).values()
    checked(invoke(cli, "step", agent), 1, "Error: model 'scripted:no-such-script.json'")
    assert history(sqlite_url, agent) == [Agent.Created, Agent.TaskStarted]


def test_a_policy_for_a_tool_that_does_not_exist_is_warned_about(
    cli: CliRunner, sqlite_url: str
) -> None:
    result = invoke(cli, "new", "--name", "a", "--policy", "wirte_file=allow")
    checked(result, 0, "warning: --policy: no tool named 'wirte_file'")
    log = open_log(sqlite_url)
    (agent_id,) = log.agent_ids()
    assert log.get(agent_id).config.tool_policies == {"wirte_file": "allow"}


def test_strict_refuses_a_policy_for_a_tool_that_does_not_exist(
    cli: CliRunner, sqlite_url: str
) -> None:
    result = invoke(cli, "new", "--name", "a", "--policy", "wirte_file=allow", "--strict")
    checked(result, 2, "Usage: ")
    assert "no tool named 'wirte_file'" in result.stderr
    ok(cli, "init")
    assert list(open_log(sqlite_url).agent_ids()) == []


def test_a_policy_for_a_known_tool_says_nothing(cli: CliRunner) -> None:
    checked(invoke(cli, "new", "--name", "a", "--policy", "write_file=allow", "--strict"), 0)
