"""agentlog's own tools on a LangGraph thread that AgentLogSaver stored: log, show,
verify, export (and import into another store, which a saver then reads)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from agentlog.adapters.langgraph import AgentLogSaver
from agentlog.cli import main
from agentlog.domain.graph_thread import thread_uuid

from langgraph_child import CALLS, run


def _cli(url: str, *args: str) -> str:
    result = CliRunner().invoke(main, ["--db", url, *args])
    assert result.exit_code == 0, result.output
    return result.stdout


def test_cli_reads_verifies_and_exports_a_langgraph_thread(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    run(url, "t-1", tmp_path / "ran.txt")
    with AgentLogSaver(url) as saver:
        saver.copy_thread("t-1", "t-2")
        saver.delete_thread("t-1")
        copied = saver.get_tuple({"configurable": {"thread_id": "t-2"}})
    assert copied is not None

    listed = json.loads(_cli(url, "threads", "--json"))
    assert [(t["thread_id"], t["deleted"], t["last_event"]) for t in listed] == [
        ("t-1", True, "ThreadDeleted"),
        ("t-2", False, "CheckpointPut"),
    ]
    assert listed[0]["aggregate_id"] == str(thread_uuid("t-1"))
    assert "t-2" in _cli(url, "threads")

    log = _cli(url, "log", "thread:t-1")
    assert log.count("CheckpointPut") >= 2 * CALLS
    assert "ThreadDeleted" in log.splitlines()[-1]
    shown = _cli(url, "show", "thread:t-1").split()
    assert shown[shown.index("thread_id") + 1] == '"t-1"'
    assert shown[shown.index("deleted") + 1] == "true"
    assert "ThreadCopied" in _cli(url, "log", "thread:t-2")
    assert _cli(url, "verify", "--all").startswith("OK: 2 agent(s)")

    exported = tmp_path / "t2.jsonl"
    exported.write_text(_cli(url, "export", "thread:t-2"))
    lines = [json.loads(line) for line in exported.read_text().splitlines()]
    assert {line["agent"] for line in lines if "agent" in line} == {str(thread_uuid("t-2"))}
    other = f"sqlite:///{tmp_path / 'b.db'}"
    _cli(other, "import", str(exported))
    with AgentLogSaver(other) as saver:
        imported = saver.get_tuple({"configurable": {"thread_id": "t-2"}})
    assert imported == copied


def test_agent_commands_refuse_a_langgraph_thread_in_one_line(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    run(url, "t-1", tmp_path / "ran.txt")
    before = _cli(url, "log", "thread:t-1")
    commands = [
        ["send", "thread:t-1", "hello"],
        ["start", "thread:t-1", "a goal"],
        ["cancel", "thread:t-1"],
        ["fork", "thread:t-1"],
        ["compact", "thread:t-1", "--summary", "s"],
        ["step", "thread:t-1"],
        ["run", "thread:t-1"],
        ["approve", "thread:t-1", "call-1"],
        ["deny", "thread:t-1", "call-1", "--reason", "no"],
        ["settle", "thread:t-1", "call-1", "--happened"],
    ]
    for command in commands:
        result = CliRunner().invoke(main, ["--db", url, *command])
        assert result.exit_code == 1, (command, result.output)
        assert result.stderr.splitlines() == [
            f"Error: {thread_uuid('t-1')} is a GraphThread, not an agent: "
            "this command works on agents only"
        ], command
    assert _cli(url, "log", "thread:t-1") == before  # nothing was written
