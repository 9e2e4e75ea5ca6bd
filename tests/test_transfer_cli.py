"""``agentlog export`` and ``agentlog import`` through the real CLI."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from uuid import UUID

import chat_transcripts
import pytest
from click.testing import CliRunner, Result

from agentlog.adapters.chat_messages import equivalent
from agentlog.adapters.views import open_store
from agentlog.cli import main
from agentlog.projections import queries


@pytest.fixture
def cli(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("AGENTLOG_DB", sqlite_url)
    return CliRunner()


def run(cli: CliRunner, *args: str, db: str | None = None, stdin: str | None = None) -> Result:
    env = {"AGENTLOG_DB": db} if db else None
    return cli.invoke(main, list(args), env=env, input=stdin)


def ok(result: Result) -> str:
    assert result.exit_code == 0, result.output
    return result.output


def test_export_import_export_through_the_cli_is_byte_identical(
    cli: CliRunner, tmp_path: Path
) -> None:
    for name in ("a", "b"):
        ok(run(cli, "new", "--name", name, "--goal", f"task of {name}"))
    first = tmp_path / "first.jsonl"
    ok(run(cli, "export", "--all", "-o", str(first)))
    other = f"sqlite:///{tmp_path / 'other.db'}"
    assert ok(run(cli, "import", str(first), db=other)) == "imported 4 events of 2 agents\n"
    again = ok(run(cli, "export", "--all", db=other))  # to standard output: no progress bar
    assert again == first.read_text()
    out = ok(run(cli, "import", "-", db=other, stdin=again))
    assert out == "imported 0 events of 0 agents; 2 already stored, unchanged\n"


def test_export_needs_agents_or_all(cli: CliRunner) -> None:
    assert run(cli, "export").exit_code == 2
    agent = ok(run(cli, "new", "--name", "a")).strip()
    assert run(cli, "export", agent, "--all").exit_code == 2
    assert run(cli, "export", "--format", "openai", "--all").exit_code == 2
    assert run(cli, "export", agent, "--raw").exit_code == 2
    assert run(cli, "import", "-", "--name", "x", stdin="").exit_code == 2


def test_a_failed_export_leaves_no_file(cli: CliRunner, tmp_path: Path) -> None:
    target = tmp_path / "out.jsonl"
    ok(run(cli, "init"))  # export reads a store: it never makes one
    result = run(cli, "export", "0000dead", "-o", str(target))
    assert result.exit_code == 1
    assert "Error: no agent 0000dead" in result.output
    assert list(tmp_path.glob("*out.jsonl*")) == []


def test_a_bad_line_is_one_error_line_naming_it(cli: CliRunner, tmp_path: Path) -> None:
    ok(run(cli, "new", "--name", "a", "--goal", "g"))
    text = ok(run(cli, "export", "--all")).replace('"goal":"g"', '"goal":"G"')
    result = run(cli, "import", "-", db=f"sqlite:///{tmp_path / 'o.db'}", stdin=text)
    assert result.exit_code == 1
    assert result.output.startswith("Error: line 3: agent ")
    assert result.output.endswith("(nothing was imported)\n")


def test_a_1000_message_transcript_shows_in_log_audit_show_and_the_transcript_view(
    cli: CliRunner, sqlite_url: str, tmp_path: Path
) -> None:
    path = chat_transcripts.write(tmp_path / "run.json", 1000, shape="object", parallel=5)
    source = json.loads(path.read_text())["messages"]
    out = ok(run(cli, "import", "--format", "openai", str(path)))
    agent = out.split()[-1]
    roles = Counter(m["role"] for m in source)
    calls = sum(len(m.get("tool_calls", [])) for m in source)
    assert calls == roles["tool"]
    assert max(len(m.get("tool_calls", [])) for m in source) > 1

    shown = json.loads(ok(run(cli, "show", agent, "--json")))
    assert (shown["status"], shown["name"], shown["steps"]) == (
        "running",
        "run",
        roles["assistant"],
    )

    log_lines = ok(run(cli, "log", agent)).splitlines()
    assert len(log_lines) == shown["version"]
    assert all("import:run.json" in line for line in log_lines)

    audit = json.loads(ok(run(cli, "audit", "--agent", agent, "--json")))
    succeeded = [r for r in audit if r["outcome"] == "succeeded"]
    assert len(succeeded) == calls
    assert {r["requested_by"] for r in audit} == {"import:run.json"}
    assert {r["finished_by"] for r in succeeded} == {"import:run.json"}

    store = open_store(sqlite_url)
    try:
        with store.views.engine.connect() as conn:
            rows = queries.transcript(conn, store.views.table(conn, "transcript"), UUID(agent))
    finally:
        store.close()
    assert Counter(r["role"] for r in rows) == roles
    assert [r["call_id"] for r in rows if r["role"] == "tool"] == [
        m["tool_call_id"] for m in source if m["role"] == "tool"
    ]

    back = json.loads(ok(run(cli, "export", "--format", "openai", agent)))
    assert back["model"] == "gpt-4o-2024-08-06"
    assert len(back["messages"]) == len(source)
    assert all(equivalent(a, b) for a, b in zip(back["messages"], source, strict=True))
