"""Shell completion through click's protocol, in a real process of the installed
command: commands, agent ids (from the state view, never creating a store), views."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from eventsourcing.cipher import AESCipher
from sqlalchemy import inspect

from agentlog.adapters.storage import open_log
from agentlog.adapters.views import engine_for, open_store
from agentlog.domain import EffectClass, Policy, ToolCallRequest

AGENTLOG = str(Path(sys.executable).parent / "agentlog")


def complete(words: str, url: str, shell: str = "bash", cwd: Path | None = None) -> list[str]:
    """What the shell would offer after ``words`` (click's env-var protocol)."""
    env = {
        **os.environ,
        "AGENTLOG_DB": url,
        "_AGENTLOG_COMPLETE": f"{shell}_complete",
        "COMP_WORDS": words,
        "COMP_CWORD": str(len(words.split(" ")) - 1),
    }
    done = subprocess.run([AGENTLOG], env=env, capture_output=True, text=True, check=False)
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    assert "Traceback" not in done.stdout
    return [line for line in done.stdout.splitlines() if line]


@pytest.fixture
def two_agents(sqlite_url: str) -> list[str]:
    store = open_store(sqlite_url)
    ids = [str(store.log.create_agent(name)) for name in ("scout", "scribe")]
    store.close()
    return ids


def test_bash_source_prints_the_script_to_eval() -> None:
    env = {**os.environ, "_AGENTLOG_COMPLETE": "bash_source"}
    done = subprocess.run([AGENTLOG], env=env, capture_output=True, text=True, check=False)
    assert (done.returncode, done.stderr) == (0, "")
    assert "_agentlog_completion" in done.stdout


def test_commands_complete(sqlite_url: str) -> None:
    offered = complete("agentlog s", sqlite_url)
    assert {"plain,send", "plain,start", "plain,show", "plain,step"} <= set(offered)


@pytest.mark.parametrize("command", ["show", "cancel", "approve"])
def test_agent_arguments_complete_to_agent_ids(
    sqlite_url: str, two_agents: list[str], command: str
) -> None:
    assert complete(f"agentlog {command} ", sqlite_url) == [
        f"plain,{i}" for i in sorted(two_agents)
    ]


def test_a_prefix_narrows_the_ids_and_zsh_shows_the_names(
    sqlite_url: str, two_agents: list[str]
) -> None:
    first = two_agents[0]
    assert complete(f"agentlog show {first[:6]}", sqlite_url, "zsh") == ["plain", first, "scout"]


def test_the_db_option_on_the_line_names_the_store(
    sqlite_url: str, two_agents: list[str], tmp_path: Path
) -> None:
    elsewhere = f"sqlite:///{tmp_path / 'other.db'}"
    offered = complete(f"agentlog --db {sqlite_url} cancel ", elsewhere)
    assert offered == [f"plain,{i}" for i in sorted(two_agents)]


def test_completion_never_creates_a_store(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'none' / 'agentlog.db'}"
    assert complete("agentlog show ", url) == []
    assert not (tmp_path / "none").exists()


def test_a_store_without_views_offers_nothing(sqlite_url: str) -> None:
    open_log(sqlite_url).close()  # the log's tables, no views yet
    assert complete("agentlog show ", sqlite_url) == []


def test_view_names_complete(sqlite_url: str) -> None:
    assert complete("agentlog projections rebuild st", sqlite_url) == ["plain,state"]
    assert "plain,runnable" in complete("agentlog projections run ", sqlite_url)


def test_call_ids_complete_for_approve_and_settle(sqlite_url: str) -> None:
    store = open_store(sqlite_url)
    agent_id = store.log.create_agent("asker", goal="g")
    for call_id, effect, policy in (
        ("ask1", EffectClass.PURE, Policy.ASK),
        ("mail1", EffectClass.SIDE_EFFECTING, Policy.ALLOW),
    ):
        request = ToolCallRequest(call_id=call_id, tool="search", args={})
        store.log.call_tool(agent_id, request, effect, policy)
    agent = store.log.get(agent_id)
    agent.request_permission("ask1")
    agent.start_tool("mail1", worker_id="dead")
    agent.mark_outcome_unknown("mail1")
    store.log.save(agent)
    store.close()
    prefix = str(agent_id)[:8]
    assert complete(f"agentlog approve {prefix} ", sqlite_url) == ["plain,ask1"]
    assert complete(f"agentlog settle {prefix} ", sqlite_url) == ["plain,mail1"]


def test_on_postgresql_completion_reads_the_state_view_and_creates_nothing(
    postgres_url: str,
) -> None:
    assert complete("agentlog show ", postgres_url) == []
    engine = engine_for(postgres_url)
    with engine.connect() as conn:
        assert inspect(conn).get_table_names() == []
    engine.dispose()
    store = open_store(postgres_url)
    agent_id = str(store.log.create_agent("scout"))
    store.close()
    assert complete("agentlog show ", postgres_url) == [f"plain,{agent_id}"]


def test_in_an_encrypted_store_names_and_calls_complete_with_the_key(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = AESCipher.create_key(16)
    store = open_store(sqlite_url, cipher_key=key)
    agent_id = store.log.create_agent("scout", goal="g")
    request = ToolCallRequest(call_id="ask1", tool="search", args={})
    store.log.call_tool(agent_id, request, EffectClass.PURE, Policy.ASK)
    agent = store.log.get(agent_id)
    agent.request_permission("ask1")
    store.log.save(agent)
    store.close()
    prefix = str(agent_id)[:8]
    no_name = ["plain", str(agent_id), "_"]  # zsh's "no help"
    assert complete(f"agentlog show {prefix}", sqlite_url, "zsh") == no_name  # not ciphertext
    assert complete(f"agentlog approve {prefix} ", sqlite_url) == []  # no key: no calls
    monkeypatch.setenv("AGENTLOG_CIPHER_KEY", key)
    assert complete(f"agentlog show {prefix}", sqlite_url, "zsh") == [
        "plain",
        str(agent_id),
        "scout",
    ]
    assert complete(f"agentlog approve {prefix} ", sqlite_url) == ["plain,ask1"]
