"""``agentlog audit`` answers, per tool call, which arguments it had, who or what policy
decided, and what came of it; ``agentlog show`` shows a waiting call's arguments before
anyone approves it. Real CLI (CliRunner) on a real SQLite file."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from click.testing import CliRunner, Result

from agentlog.adapters.scripted import FunctionModel
from agentlog.adapters.views import Store, open_store
from agentlog.cli import main
from agentlog.domain import AgentConfig, EffectClass, Policy, ToolCallRequest
from agentlog.domain.ports import Decision
from agentlog.domain.runtime import Runtime
from agentlog.projections.audit_rows import COLUMNS

from counting_tools import CountingTool, Ledger

ASK = AgentConfig(model="m1", default_policy=Policy.ASK)
ALLOW = AgentConfig(model="m1", default_policy=Policy.ALLOW)
BODY = "Dear Bob, " + "the owls are fine. " * 20  # longer than the table shows


@pytest.fixture
def cli(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("AGENTLOG_DB", sqlite_url)
    return CliRunner()


@pytest.fixture
def store(sqlite_url: str) -> Iterator[Store]:
    opened = open_store(sqlite_url)
    yield opened
    opened.close()


def run(cli: CliRunner, *args: str) -> Result:
    return cli.invoke(main, list(args))


def ok(cli: CliRunner, *args: str) -> str:
    result = run(cli, *args)
    assert result.exit_code == 0, result.output
    return result.output


def calls(cli: CliRunner, *args: str) -> list[dict[str, Any]]:
    """``agentlog audit ARGS --json``, parsed."""
    found: list[dict[str, Any]] = json.loads(ok(cli, "audit", *args, "--json"))
    return found


def tools(cli: CliRunner, *args: str) -> list[str]:
    return [row["tool"] for row in calls(cli, *args)]


def waiting(store: Store, name: str, request: ToolCallRequest, effect: EffectClass) -> UUID:
    """An agent whose call waits for a person."""
    agent_id = store.log.create_agent(name, ASK)
    store.log.start_task(agent_id, f"{name}'s task")
    store.log.call_tool(agent_id, request, effect, None)
    agent = store.log.get(agent_id)
    agent.request_permission(request.call_id)
    store.log.save(agent)
    return agent_id


def run_call(store: Store, agent_id: UUID, call_id: str, result: Any) -> None:
    agent = store.log.get(agent_id)
    agent.start_tool(call_id, worker_id="w1")
    agent.succeed(call_id, result)
    store.log.save(agent)


@pytest.fixture
def audited(store: Store) -> dict[str, UUID]:
    """A search ana approved that ran; an e-mail its policy allowed that ran; an rm bob
    denied; a tool the runtime refused."""
    search = ToolCallRequest(call_id="c1", tool="search", args={"q": "owls"})
    searcher = waiting(store, "searcher", search, EffectClass.PURE)
    store.log.grant(searcher, "c1", approver="ana")
    run_call(store, searcher, "c1", ["owl"])
    mailer = store.log.create_agent("mailer", ALLOW)
    store.log.start_task(mailer, "write to bob")
    mail = ToolCallRequest(call_id="m1", tool="send_email", args={"to": "bob", "body": BODY})
    store.log.call_tool(mailer, mail, EffectClass.SIDE_EFFECTING, None)
    run_call(store, mailer, "m1", {"sent": True})
    rm = ToolCallRequest(call_id="c1", tool="rm", args={"path": "/srv/data"})
    remover = waiting(store, "remover", rm, EffectClass.SIDE_EFFECTING)
    store.log.deny(remover, "c1", approver="bob", reason="not that folder")
    agent = store.log.get(searcher)
    agent.reject_tool_call(ToolCallRequest(call_id="c2", tool="rm_rf"), "unknown tool 'rm_rf'")
    store.log.save(agent)
    return {"searcher": searcher, "mailer": mailer, "remover": remover}


def test_audit_table_has_one_line_per_call_with_decision_outcome_and_result_size(
    cli: CliRunner, audited: dict[str, UUID]
) -> None:
    lines = ok(cli, "audit").splitlines()
    assert lines[0].split() == [
        *("CALLED", "(UTC)", "AGENT", "CALL", "TOOL", "ARGS", "EFFECT"),
        *("DECISION", "OUTCOME", "RESULT"),
    ]
    search, mail, rm, rejected = lines[1:]
    assert all(word in search for word in ('{"q":"owls"}', "approved by ana", "succeeded", "7 B"))
    assert all(word in mail for word in ("side_effecting", "auto (policy)", "succeeded", "13 B"))
    assert '{"body":"Dear Bob, the owls are fine. t…' in mail  # cut short (keys sorted)
    assert BODY not in mail
    assert all(word in rm for word in ("denied by bob", "not_run"))
    assert all(word in rejected for word in ("rm_rf", "refused"))


def test_audit_json_has_whole_arguments_hashes_decisions_outcomes_and_times(
    cli: CliRunner, audited: dict[str, UUID]
) -> None:
    rows = calls(cli)
    assert [(r["tool"], r["decision"], r["decided_by"], r["outcome"]) for r in rows] == [
        ("search", "approved", "ana", "succeeded"),
        ("send_email", "auto", "policy", "succeeded"),
        ("rm", "denied", "bob", "not_run"),
        ("rm_rf", "refused", "runtime", "refused"),
    ]
    mail = rows[1]
    assert mail["args"] == {"to": "bob", "body": BODY}
    assert (mail["effect"], mail["policy"], mail["result_size"]) == ("side_effecting", "allow", 13)
    assert mail["agent_id"] == str(audited["mailer"])
    assert rows[2]["detail"] == "not that folder"
    assert (rows[3]["args"], rows[3]["args_hash"]) == ({}, None)  # asked with none; no hash
    for row in rows:
        assert datetime.fromisoformat(row["called_at"]).tzinfo is not None
    assert rows[0]["called_at"] <= rows[0]["decided_at"] <= rows[0]["started_at"]
    assert rows[0]["started_at"] <= rows[0]["finished_at"]


def test_audit_filters_by_agent_tool_actor_decision_effect_and_outcome(
    cli: CliRunner, audited: dict[str, UUID]
) -> None:
    assert tools(cli, "--agent", str(audited["remover"])[:8]) == ["rm"]
    assert tools(cli, "--tool", "search") == ["search"]
    assert tools(cli, "--actor", "ana") == ["search"]
    assert tools(cli, "--actor", "policy") == ["send_email"]
    assert tools(cli, "--decision", "denied") == ["rm"]
    assert tools(cli, "--decision", "auto") == ["send_email"]
    assert tools(cli, "--decision", "refused") == ["rm_rf"]
    assert tools(cli, "--effect", "side_effecting") == ["send_email", "rm"]
    assert tools(cli, "--outcome", "succeeded") == ["search", "send_email"]
    assert tools(cli, "--effect", "side_effecting", "--decision", "approved") == []
    assert tools(cli, "--agent", str(audited["searcher"]), "--tool", "rm") == []


def test_audit_since_and_until_take_iso_dates_and_times_with_or_without_a_zone(
    cli: CliRunner, audited: dict[str, UUID]
) -> None:
    rows = calls(cli)
    mail_at = datetime.fromisoformat(rows[1]["called_at"])
    assert len(calls(cli, "--since", "2000-01-01")) == 4
    assert calls(cli, "--since", "2999-01-01T00:00:00Z") == []
    assert calls(cli, "--until", "2000-01-01") == []
    since = mail_at.astimezone(UTC).replace(tzinfo=None).isoformat()  # no zone: UTC
    assert tools(cli, "--since", since) == ["send_email", "rm", "rm_rf"]
    until = mail_at.astimezone(UTC).isoformat()
    assert tools(cli, "--until", until) == ["search"]
    elsewhere = mail_at.astimezone(UTC).replace(tzinfo=None) + timedelta(hours=2)
    assert tools(cli, "--since", f"{elsewhere.isoformat()}+02:00") == ["send_email", "rm", "rm_rf"]


def test_audit_csv_has_every_column_and_whole_arguments(
    cli: CliRunner, audited: dict[str, UUID]
) -> None:
    output = ok(cli, "audit", "--csv", "--effect", "side_effecting")
    reader = csv.DictReader(io.StringIO(output))
    assert tuple(reader.fieldnames or ()) == COLUMNS
    rows = list(reader)
    assert [(r["tool"], r["decision"], r["outcome"]) for r in rows] == [
        ("send_email", "auto", "succeeded"),
        ("rm", "denied", "not_run"),
    ]
    assert json.loads(rows[0]["args"]) == {"to": "bob", "body": BODY}
    assert rows[0]["result_size"] == "13"
    assert ok(cli, "audit", "--csv", "--tool", "nothing") == ",".join(COLUMNS) + "\n"


def test_audit_refuses_bad_filters_and_both_formats_with_usage_errors(cli: CliRunner) -> None:
    for args in (
        ("--since", "yesterday"),
        ("--decision", "granted"),
        ("--effect", "side_effect"),
        ("--json", "--csv"),
    ):
        result = run(cli, "audit", *args)
        assert result.exit_code == 2, (args, result.output)
        assert "Traceback" not in result.output
    assert "is not an ISO date or time" in run(cli, "audit", "--since", "yesterday").output


def test_show_has_a_waiting_calls_arguments_before_anyone_approves_it(
    cli: CliRunner, store: Store
) -> None:
    args = {"to": "bob", "body": BODY}
    request = ToolCallRequest(call_id="m1", tool="send_email", args=args)
    agent_id = waiting(store, "mailer", request, EffectClass.SIDE_EFFECTING)
    shown = json.loads(ok(cli, "show", str(agent_id), "--json"))
    assert shown["calls"]["m1"]["stage"] == "awaiting_permission"
    assert shown["calls"]["m1"]["args"] == args
    table = ok(cli, "show", str(agent_id))
    assert "call m1 args" in table
    assert json.dumps(args, ensure_ascii=False, sort_keys=True) in table  # whole, not cut
    assert calls(cli)[0]["decision"] == "waiting"
    store.log.deny(agent_id, "m1", approver="ana", reason="wrong person")
    assert "call m1 args" not in ok(cli, "show", str(agent_id))


def test_the_table_and_show_escape_control_characters_of_tools_and_arguments(
    cli: CliRunner, store: Store
) -> None:
    hostile = "\x1b[2J\x1b]0;pwned\x07\u202eevil"
    request = ToolCallRequest(call_id="c\x1b1", tool=f"t{hostile}", args={"q": hostile})
    agent_id = waiting(store, "asker", request, EffectClass.PURE)
    for output in (ok(cli, "audit"), ok(cli, "show", str(agent_id))):
        assert not [c for c in ("\x1b", "\x07", "\u202e") if c in output]
        assert r"\x1b[2J" in output
    assert calls(cli)[0]["args"] == {"q": hostile}  # JSON keeps what was recorded


def test_a_rejected_call_shows_the_arguments_the_model_asked_for(
    cli: CliRunner, store: Store, tmp_path: Path
) -> None:
    unknown = ToolCallRequest(call_id="u1", tool="rm_rf", args={"path": "/", "force": True})
    invalid = ToolCallRequest(call_id="i1", tool="count", args={"label": 42})
    script = [Decision(text="go", tool_calls=(unknown, invalid))]
    model = FunctionModel(lambda _: script.pop(0), "m1")
    agent_id = store.log.create_agent("a", ALLOW)
    store.log.start_task(agent_id, "clean up")
    count = CountingTool("count", EffectClass.PURE, Ledger(tmp_path / "ledger"))
    Runtime(store.log, model, {"count": count}, worker_id="w").advance(agent_id)
    rows = {r["call_id"]: r for r in calls(cli, "--agent", str(agent_id))}
    assert rows["u1"]["args"] == {"path": "/", "force": True}
    assert rows["i1"]["args"] == {"label": 42}
    assert [rows[c]["args_hash"] for c in rows] == [None, None]  # never recorded as calls
    assert [(r["decision"], r["outcome"]) for r in rows.values()] == [("refused", "refused")] * 2
    assert '{"force":true,"path":"/"}' in ok(cli, "audit", "--agent", str(agent_id))
