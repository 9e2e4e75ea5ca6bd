"""With a cipher key, the views hold no plaintext of names, goals, messages, arguments,
errors or results: the bytes of the SQLite file (and its write-ahead log) do not contain
them, while every command still reads them back through the key. Without a key the same
bytes are there, which shows the search can find them."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from uuid import UUID

import pytest
from click.testing import CliRunner, Result
from eventsourcing.cipher import AESCipher
from sqlalchemy import func, select

from agentlog.adapters.views import Store, open_store
from agentlog.cli import main
from agentlog.domain import AgentConfig, EffectClass, Policy, ToolCallRequest
from agentlog.projections import DEFAULT_VIEWS

KEY = AESCipher.create_key(16)
SECRETS = {  # what each one is: text no other part of the store could hold by chance
    "name": "Heron-Watch-5512",
    "goal": "Count the plovers on Marsh Island 7731",
    "system prompt": "Speak like a lighthouse keeper 0417",
    "message": "Also check the dunes near Gull Point 2208",
    "model text": "I will search the Kestrel archive 6650",
    "arguments": "kestrel-archive-query-3319",
    "result": "plover-count-result-4480",
    "error": "archive-timeout-error-9013",
    "denial": "not-the-private-folder-1187",
    "summary": "summary-of-the-first-hour-2296",
    "task result": "Forty-two plovers counted 5570",
}


def live(store: Store) -> UUID:
    """An agent whose every kind of text ends up in some view."""
    log = store.log
    config = AgentConfig(
        model="m1", system_prompt=SECRETS["system prompt"], default_policy=Policy.ASK
    )
    agent_id = log.create_agent(SECRETS["name"], config)
    log.start_task(agent_id, SECRETS["goal"])
    log.send(agent_id, SECRETS["message"])
    search = ToolCallRequest(call_id="c1", tool="search", args={"q": SECRETS["arguments"]})
    fetch = ToolCallRequest(call_id="c2", tool="fetch", args={"url": "x"})
    rm = ToolCallRequest(call_id="c3", tool="rm", args={"path": "/private"})
    agent = log.get(agent_id)
    agent.record_model_response(SECRETS["model text"], model="m1", tool_calls=(search, fetch, rm))
    for request, effect in ((search, EffectClass.PURE), (fetch, EffectClass.IDEMPOTENT)):
        agent.call_tool(request, effect=effect, policy=None)
    agent.call_tool(rm, effect=EffectClass.SIDE_EFFECTING, policy=None)
    for call_id in ("c1", "c2", "c3"):
        agent.request_permission(call_id)
    log.save(agent)
    log.grant(agent_id, "c1", approver="ana")
    log.grant(agent_id, "c2", approver="ana")
    log.deny(agent_id, "c3", approver="bob", reason=SECRETS["denial"])
    agent = log.get(agent_id)
    agent.start_tool("c1", worker_id="w1")
    agent.succeed("c1", {"count": SECRETS["result"]})
    agent.start_tool("c2", worker_id="w1")
    agent.fail_tool("c2", SECRETS["error"])
    agent.compact(3, SECRETS["summary"], summarizer="m1")  # the goal and the message
    log.save(agent)
    log.complete(agent_id, SECRETS["task result"])
    return agent_id


def file_bytes(path: Path) -> bytes:
    """Every byte SQLite keeps of the store: the file, its write-ahead log and the shared
    memory file, after a checkpoint and also as they were before it."""
    before = b"".join(p.read_bytes() for p in sorted(path.parent.glob(f"{path.name}*")))
    with closing(sqlite3.connect(path)) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    after = b"".join(p.read_bytes() for p in sorted(path.parent.glob(f"{path.name}*")))
    return before + after


def found_in(data: bytes) -> list[str]:
    """Which secrets the bytes hold (as UTF-8, or as JSON-escaped text)."""
    return [
        what
        for what, text in SECRETS.items()
        if text.encode() in data or json.dumps(text).encode()[1:-1] in data
    ]


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "agentlog.db"


def run(path: Path, *args: str, key: str | None) -> Result:
    env = {"AGENTLOG_DB": f"sqlite:///{path}", "AGENTLOG_CIPHER_KEY": key or ""}
    if key is None:
        del env["AGENTLOG_CIPHER_KEY"]
    return CliRunner(env=env).invoke(main, list(args))


def lived(path: Path, key: str | None) -> Iterator[UUID]:
    store = open_store(f"sqlite:///{path}", cipher_key=key)
    try:
        agent_id = live(store)
        counts = view_row_counts(store)
    finally:
        store.close()
    assert all(counts.values()), counts  # every view holds rows: the search means something
    yield agent_id


def view_row_counts(store: Store) -> dict[str, int]:
    with store.views.engine.connect() as conn:
        return {
            cls.name: conn.execute(
                select(func.count()).select_from(store.views.table(conn, cls.name))
            ).scalar_one()
            for cls in DEFAULT_VIEWS
        }


@pytest.fixture
def encrypted(db_path: Path) -> Iterator[UUID]:
    yield from lived(db_path, KEY)


@pytest.fixture
def plain(db_path: Path) -> Iterator[UUID]:
    yield from lived(db_path, None)


def test_with_a_key_the_file_holds_no_secret_text(db_path: Path, encrypted: UUID) -> None:
    assert found_in(file_bytes(db_path)) == []


def test_without_a_key_the_same_search_finds_every_secret(db_path: Path, plain: UUID) -> None:
    assert found_in(file_bytes(db_path)) == list(SECRETS)


def test_after_a_rebuild_with_a_key_the_file_still_holds_no_secret_text(
    db_path: Path, encrypted: UUID
) -> None:
    result = run(db_path, "projections", "rebuild", "--all", key=KEY)
    assert result.exit_code == 0, result.output
    assert found_in(file_bytes(db_path)) == []


def test_with_the_key_the_commands_read_the_text_back(db_path: Path, encrypted: UUID) -> None:
    listed = json.loads(run(db_path, "ls", "--json", key=KEY).output)
    assert [(a["name"], a["goal"], a["result"]) for a in listed] == [
        (SECRETS["name"], SECRETS["goal"], SECRETS["task result"])
    ]
    shown = json.loads(run(db_path, "show", str(encrypted), "--json", key=KEY).output)
    assert (shown["name"], shown["config"]["system_prompt"]) == (
        SECRETS["name"],
        SECRETS["system prompt"],
    )
    calls = json.loads(run(db_path, "audit", "--json", key=KEY).output)
    assert [(c["tool"], c["outcome"], c["detail"]) for c in calls] == [
        ("search", "succeeded", None),
        ("fetch", "failed", SECRETS["error"]),
        ("rm", "not_run", SECRETS["denial"]),
    ]
    assert calls[0]["args"] == {"q": SECRETS["arguments"]}
    tool = run(db_path, "audit", "--tool", "rm", "--decision", "denied", "--json", key=KEY)
    assert [c["decided_by"] for c in json.loads(tool.output)] == ["bob"]  # plain columns filter


def test_without_the_key_commands_say_in_one_line_that_it_is_needed(
    db_path: Path, encrypted: UUID
) -> None:
    for args in (("ls",), ("show", str(encrypted)), ("audit",), ("projections", "status")):
        result = run(db_path, *args, key=None)
        assert result.exit_code == 1, result.output
        assert result.output == (
            f"Error: the store at sqlite:///{db_path} is encrypted: "
            "give its key (--cipher-key or AGENTLOG_CIPHER_KEY)\n"
        )
