"""`agentlog verify` names the first break of every tampered agent, and only of those.

The tampering is generic, as a bad hand edit or an attacker with the database file would
do it: one changed byte anywhere in a stored row's state or topic, a changed version,
a deleted row, two rows' states swapped, on real SQLite files and a real PostgreSQL
server. Nothing here knows which fields the chain keeps: the rule lives in ChainLinks.
"""

from __future__ import annotations

import json
import os
import pty
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID, uuid4

import psycopg
import pytest
from click.testing import CliRunner, Result
from eventsourcing.cipher import AESCipher
from hypothesis import example, given, settings
from hypothesis import strategies as st
from psycopg import sql
from sqlalchemy import text

from agentlog.adapters.mapper import inflate
from agentlog.adapters.storage import open_log, sqlite_path
from agentlog.adapters.views import engine_for, open_projections
from agentlog.cli import main
from agentlog.domain import EffectClass, Policy, ToolCallRequest

from conftest import store_url
from pg_server import _libpq_url

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
if str(EXAMPLES) not in sys.path:
    sys.path.insert(0, str(EXAMPLES))

Row = tuple[Any, int]
"""A stored row's key as the table holds it: (originator_id, originator_version)."""


@dataclass(frozen=True)
class Fixture:
    """A store of three agents (one with a granted call), with snapshots and views."""

    url: str
    agents: dict[str, UUID]
    cipher_key: str | None = None


def build(url: str, cipher_key: str | None = None) -> Fixture:
    """Write the agents through the real application, its views following every save."""
    log = open_log(url, snapshot_interval=4, cipher_key=cipher_key)
    views = open_projections(log, url)
    chatty = log.create_agent("chatty")
    log.start_task(chatty, "talk")
    for message in ("one", "two é", "three\nlines"):
        log.send(chatty, message)
    log.complete(chatty, "said it all")
    gated = log.create_agent("gated")
    log.start_task(gated, "write a file")
    request = ToolCallRequest(call_id="c1", tool="write", args={"path": "notes.txt"})
    log.call_tool(gated, request, EffectClass.SIDE_EFFECTING, Policy.ASK)
    agent = log.get(gated)
    agent.request_permission("c1")
    log.save(agent)
    log.grant(gated, "c1", approver="ana")
    quiet = log.create_agent("quiet")
    log.close()
    views.engine.dispose()
    return Fixture(url, {"chatty": chatty, "gated": gated, "quiet": quiet}, cipher_key)


def verify(fixture: Fixture, *args: str) -> Result:
    """Run `agentlog verify ARGS` on the fixture's store."""
    key = ["--cipher-key", fixture.cipher_key] if fixture.cipher_key else []
    return CliRunner().invoke(main, ["--db", fixture.url, *key, "verify", *args])


def breaks(result: Result) -> dict[UUID, int]:
    """The agents `verify --json` found broken, with the version each broke at."""
    assert result.exit_code in (0, 1), result.output
    report = json.loads(result.stdout)
    assert report["ok"] == (result.exit_code == 0)
    return {UUID(a["agent_id"]): a["break"]["version"] for a in report["agents"] if a["break"]}


class Table:
    """Stored rows of one table, edited with plain SQL (sqlite3 or psycopg)."""

    def __init__(self, connect: Callable[[], Any], name: str, mark: str) -> None:
        self.connect, self.name, self.mark = connect, name, mark

    def rows(self) -> list[tuple[Any, int, str, bytes]]:
        """Every row: originator_id (as stored), version, topic, state."""
        with self.connect() as db:
            query = f"SELECT originator_id, originator_version, topic, state FROM {self.name}"
            rows = db.execute(query + " ORDER BY originator_id, originator_version").fetchall()
        return [(i, v, t, bytes(s)) for i, v, t, s in rows]

    def set(self, row: Row, column: str, value: Any) -> None:
        """Overwrite one column of one row."""
        where = f"originator_id={self.mark} AND originator_version={self.mark}"
        with self.connect() as db:
            db.execute(f"UPDATE {self.name} SET {column}={self.mark} WHERE {where}", (value, *row))

    def delete(self, row: Row) -> None:
        """Delete one row."""
        where = f"originator_id={self.mark} AND originator_version={self.mark}"
        with self.connect() as db:
            db.execute(f"DELETE FROM {self.name} WHERE {where}", row)


def events_table(url: str, table: str = "events") -> Table:
    """The events (or snapshots) table of the store at ``url``."""
    if url.startswith("sqlite"):
        path = sqlite_path(url)
        return Table(lambda: sqlite3.connect(path), f"stored_{table}", "?")
    return Table(lambda: psycopg.connect(_libpq_url(url)), f"agentlog_{table}", "%s")


# One tampering: kind, agent, which of its rows, an offset, a byte or version.
Tampering = tuple[str, str, int, int, int]


def tamper(table: Table, how: Tampering, agents: dict[str, UUID]) -> dict[UUID, int]:
    """Apply one tampering; return the version each touched agent must break at."""
    kind, name, index, offset, value = how
    rows = table.rows()
    own = [r for r in rows if as_uuid(r[0]) == agents[name]]
    agent_id, version, topic, state = own[index % len(own)]
    key, agent = (agent_id, version), agents[name]
    if kind == "state":
        table.set(key, "state", flipped(state, offset, value or 1))
    elif kind == "topic":
        at, flip = offset % len(topic), value % 31 + 1
        table.set(key, "topic", topic[:at] + chr(ord(topic[at]) ^ flip) + topic[at + 1 :])
    elif kind == "version":
        new = 0 if value % 3 == 0 else own[-1][1] + value % 5 + 1
        table.set(key, "originator_version", new)
        return {agent: new if new < 1 else version}
    elif kind == "delete":
        table.delete(key)
    else:  # swap the states of two rows
        others = [r for r in rows if (r[0], r[1]) != key]
        other_id, other_version, _, other_state = others[offset % len(others)]
        table.set(key, "state", other_state)
        table.set((other_id, other_version), "state", state)
        other = as_uuid(other_id)
        if other == agent:
            return {agent: min(version, other_version)}
        return {agent: version, other: other_version}
    return {agent: version}


def flipped(state: bytes, offset: int, mask: int) -> bytes:
    """``state`` with one byte XORed with ``mask``: the byte at ``offset`` (modulo the
    length), or the first after it whose change alters what the row holds. The last
    bits of a zlib stream's deflate data can be padding: flipping one leaves the
    stored content, and what the hash chain covers, as it was, so it tampers with
    nothing."""
    for step in range(len(state)):
        changed = bytearray(state)
        changed[(offset + step) % len(state)] ^= mask
        if _content(bytes(changed)) != _content(state):
            return bytes(changed)
    raise AssertionError("no byte of the state changes what it holds")


def _content(data: bytes) -> bytes:
    """What stored bytes hold: a zlib stream's content, else the bytes themselves."""
    try:
        return zlib.decompress(data)
    except zlib.error:
        return data


tamperings = st.tuples(
    st.sampled_from(["state", "topic", "version", "delete", "swap"]),
    st.sampled_from(["chatty", "gated", "quiet"]),
    st.integers(min_value=0, max_value=5),
    st.integers(min_value=0, max_value=10_000),
    st.integers(min_value=0, max_value=255),
)


def as_uuid(stored_id: Any) -> UUID:
    """An originator id as a table holds it: hex text, 16 bytes, or a uuid."""
    if isinstance(stored_id, bytes):
        return UUID(bytes=stored_id)
    return stored_id if isinstance(stored_id, UUID) else UUID(str(stored_id))


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Fixture:
    """The SQLite fixture store, built once; each example tampers with a copy."""
    return build(store_url("sqlite", tmp_path_factory.mktemp("pristine")))


@contextmanager
def copy_of(fixture: Fixture) -> Iterator[Fixture]:
    """The fixture's store copied to a fresh file (removed afterwards)."""
    with tempfile.TemporaryDirectory() as folder:
        target = Path(folder) / "agentlog.db"
        shutil.copyfile(sqlite_path(fixture.url), target)
        query = fixture.url.partition("?")[1] + fixture.url.partition("?")[2]
        yield Fixture(f"sqlite:///{target}{query}", fixture.agents, fixture.cipher_key)


def edited(state: bytes, old: bytes, new: bytes) -> bytes:
    """A stored state with ``old`` replaced, written back as plain JSON (stores read any mix)."""
    plain = inflate(state)
    assert old in plain
    return plain.replace(old, new)


def test_an_untouched_store_verifies(pristine: Fixture) -> None:
    result = verify(pristine)
    assert result.exit_code == 0, result.output
    assert result.stdout == "OK: 3 agent(s), 12 event(s), 2 snapshot(s) checked\n"
    assert result.stderr == ""  # no progress bar when stderr is not a terminal


def test_json_reports_every_agent_with_its_counts(pristine: Fixture) -> None:
    report = json.loads(verify(pristine, "--all", "--json").stdout)
    counts = {UUID(a["agent_id"]): (a["events"], a["snapshots"], a["ok"]) for a in report["agents"]}
    chatty, gated, quiet = pristine.agents.values()
    assert counts == {chatty: (6, 1, True), gated: (5, 1, True), quiet: (1, 0, True)}
    assert (report["ok"], report["agents_checked"], report["events"]) == (True, 3, 12)


@settings(max_examples=40)
@given(how=tamperings)
@example(how=("delete", "chatty", -1, 0, 0))  # the last event: only a witness can tell
@example(how=("delete", "gated", 0, 0, 0))  # the first event
@example(how=("delete", "quiet", 0, 0, 0))  # an agent's only event
@example(how=("version", "chatty", 2, 0, 0))  # renumbered to 0, before version 1
@example(how=("version", "gated", -1, 0, 1))  # the last event, renumbered past the end
def test_any_single_tampering_is_named_by_agent_and_version(
    pristine: Fixture, how: Tampering
) -> None:
    with copy_of(pristine) as store:
        expected = tamper(events_table(store.url), how, store.agents)
        result = verify(store, "--json")
    assert result.exit_code == 1
    assert breaks(result) == expected


def test_an_edit_that_reads_back_as_the_same_json_is_a_break(pristine: Fixture) -> None:
    """'86400.0' -> '86400e0' parses to the same number: only the stored bytes differ."""
    chatty = pristine.agents["chatty"]
    with copy_of(pristine) as store:
        table = events_table(store.url)
        (row,) = [r for r in table.rows() if as_uuid(r[0]) == chatty and r[1] == 1]
        plain = inflate(row[3])  # stores read plain and compressed rows alike
        assert b'"max_wall_time":86400.0' in plain
        table.set(row[:2], "state", plain.replace(b"86400.0", b"86400e0"))
        result = verify(store, "--json")
    assert breaks(result) == {chatty: 1}


@pytest.fixture(scope="module")
def encoded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Fixture]:
    """The fixture store encrypted, and compressed, each built once."""
    cipher = tmp_path_factory.mktemp("cipher")
    compress = tmp_path_factory.mktemp("compress")
    return {
        "cipher": build(store_url("sqlite", cipher), cipher_key=AESCipher.create_key(16)),
        "compress": build(store_url("sqlite", compress) + "?compress=zlib"),
    }


@pytest.mark.parametrize("options", ["cipher", "compress"])
@pytest.mark.parametrize("offset", [0, 17, -1])
def test_a_changed_byte_of_an_encrypted_or_compressed_row_is_a_break(
    encoded: dict[str, Fixture], options: str, offset: int
) -> None:
    with copy_of(encoded[options]) as store:
        gated = store.agents["gated"]
        table = events_table(store.url)
        (row,) = [r for r in table.rows() if as_uuid(r[0]) == gated and r[1] == 5]
        changed = bytearray(row[3])
        changed[offset] ^= 0x20
        table.set(row[:2], "state", bytes(changed))
        result = verify(store, "--json")
    assert breaks(result) == {gated: 5}
    assert "Traceback" not in result.output


def test_a_snapshot_that_does_not_match_its_events_is_a_break(pristine: Fixture) -> None:
    chatty = pristine.agents["chatty"]
    with copy_of(pristine) as store:
        snapshots = events_table(store.url, "snapshots")
        (row,) = [r for r in snapshots.rows() if as_uuid(r[0]) == chatty]
        snapshots.set(row[:2], "state", edited(row[3], b'"steps":0', b'"steps":7'))
        result = verify(store, chatty.hex[:8], "--json")
    (agent,) = json.loads(result.stdout)["agents"]
    assert result.exit_code == 1
    assert agent["break"]["version"] == 4
    assert agent["break"]["event"] == "Aggregate.Snapshot"
    assert "does not match a replay" in agent["break"]["reason"]


def test_text_output_names_agent_version_and_event(pristine: Fixture) -> None:
    gated = pristine.agents["gated"]
    with copy_of(pristine) as store:
        table = events_table(store.url)
        (row,) = [r for r in table.rows() if as_uuid(r[0]) == gated and r[1] == 5]
        table.set(row[:2], "state", edited(row[3], b'"approver":"ana"', b'"approver":"eve"'))
        result = verify(store)
    assert result.exit_code == 1
    broken, summary = result.stdout.splitlines()
    assert broken.startswith(f"BROKEN agent {gated} version 5 (Agent.PermissionGranted): ")
    assert summary == "FAILED: 1 of 3 agent(s), 11 event(s), 2 snapshot(s) checked"


def test_reads_of_history_warn_when_it_fails_its_chain(pristine: Fixture) -> None:
    gated = str(pristine.agents["gated"])
    warning = f"warning: agent {gated} fails its hash chain at version 5 (Agent.PermissionGranted)"
    reads = [
        ["log", gated],
        ["show", gated, "--at", "5"],
        ["audit"],
        ["audit", "--agent", gated],
        ["export", "--format", "openai", gated],
    ]
    with copy_of(pristine) as store:
        for args in reads:  # untouched: no warning
            result = CliRunner().invoke(main, ["--db", store.url, *args])
            assert (result.exit_code, result.stderr) == (0, ""), args
        table = events_table(store.url)
        (row,) = [r for r in table.rows() if str(as_uuid(r[0])) == gated and r[1] == 5]
        table.set(row[:2], "state", edited(row[3], b'"approver":"ana"', b'"approver":"eve"'))
        for args in reads:
            result = CliRunner().invoke(main, ["--db", store.url, *args])
            assert result.exit_code == 0, args
            assert result.stderr.startswith(warning), args
            assert len(result.stderr.splitlines()) == 1, args
        exported = CliRunner().invoke(main, ["--db", store.url, "export", gated])
        assert exported.exit_code == 1  # the lossless format refuses a broken chain
        assert f"agent {gated}, version 5" in exported.stderr
        shown_before = ["show", gated, "--at", "4"]  # the edit is after what it shows
        assert CliRunner().invoke(main, ["--db", store.url, *shown_before]).stderr == ""


def test_agent_and_all_together_is_a_usage_error(pristine: Fixture) -> None:
    result = verify(pristine, str(pristine.agents["quiet"]), "--all")
    assert result.exit_code == 2
    assert "give AGENT or --all, not both" in result.output


@pytest.mark.parametrize("ref", ["0123abcd-0000-4000-8000-000000000000", "fff0"])
@pytest.mark.parametrize("options", [(), ("--json",)])
def test_an_unknown_agent_is_a_one_line_error(
    pristine: Fixture, ref: str, options: tuple[str, ...]
) -> None:
    result = verify(pristine, ref, *options)
    assert result.exit_code == 1
    assert result.output.startswith("Error: ")
    assert "Traceback" not in result.output
    assert len(result.output.splitlines()) == 1


def test_long_histories_are_read_in_pages(
    pristine: Fixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More events than a page holds: every one is checked, a break past the first page found."""
    from agentlog.adapters import chain_walk

    monkeypatch.setattr(chain_walk, "PAGE", 2)
    chatty = pristine.agents["chatty"]
    with copy_of(pristine) as store:
        (report,) = json.loads(verify(store, str(chatty), "--json").stdout)["agents"]
        assert (report["ok"], report["events"], report["snapshots"]) == (True, 6, 1)
        events_table(store.url).delete((chatty.hex, 5))
        assert breaks(verify(store, str(chatty), "--json")) == {chatty: 5}


PG_TAMPERINGS = [
    ("state", "gated", 4, 40, 0x01),  # the grant
    ("state", "chatty", 0, 10_000, 0x80),
    ("topic", "chatty", 2, 12, 0x01),
    ("version", "chatty", 2, 0, 0),
    ("version", "gated", -1, 0, 1),
    ("delete", "chatty", 3, 0, 0),
    ("delete", "chatty", -1, 0, 0),
    ("delete", "gated", 0, 0, 0),
    ("delete", "quiet", 0, 0, 0),
    ("swap", "chatty", 1, 2, 0),
    ("swap", "gated", 2, 7, 0),
]


@pytest.fixture(scope="module")
def pg_pristine() -> Fixture:
    """The fixture store on PostgreSQL, built once; each case tampers with a clone."""
    return build(store_url("postgres", Path()))


def clone(fixture: Fixture) -> Fixture:
    """A new database made from the fixture's (PostgreSQL's TEMPLATE copy)."""
    source = urlsplit(fixture.url).path.lstrip("/")
    target = f"{source}_{uuid4().hex[:8]}"
    with psycopg.connect(
        _libpq_url(fixture.url).replace(f"/{source}", "/postgres"), autocommit=True
    ) as db:
        db.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(target), sql.Identifier(source)
            )
        )
    return Fixture(fixture.url.replace(f"/{source}", f"/{target}"), fixture.agents)


@pytest.mark.postgres
def test_an_untouched_postgres_store_verifies(pg_pristine: Fixture) -> None:
    result = verify(pg_pristine)
    assert result.exit_code == 0, result.output
    assert result.stdout == "OK: 3 agent(s), 12 event(s), 2 snapshot(s) checked\n"


@pytest.mark.postgres
@pytest.mark.parametrize("how", PG_TAMPERINGS, ids=lambda how: "-".join(map(str, how)))
def test_tampering_on_postgres_is_named_by_agent_and_version(
    pg_pristine: Fixture, how: Tampering
) -> None:
    store = clone(pg_pristine)
    expected = tamper(events_table(store.url), how, store.agents)
    result = verify(store, "--json")
    assert result.exit_code == 1
    assert breaks(result) == expected


@pytest.mark.parametrize(
    "backend",
    ["sqlite-sqlalchemy", pytest.param("postgres-sqlalchemy", marks=pytest.mark.postgres)],
)
def test_the_sqlalchemy_engine_verifies_and_names_a_deleted_event(
    tmp_path: Path, backend: str
) -> None:
    store = build(store_url(backend, tmp_path))
    result = verify(store)
    assert result.exit_code == 0, result.output
    assert result.stdout == "OK: 3 agent(s), 12 event(s), 2 snapshot(s) checked\n"
    log = open_log(store.url)
    table = log.recorder.events_table_name  # type: ignore[attr-defined]
    log.close()
    chatty = store.agents["chatty"]
    engine = engine_for(store.url)
    with engine.begin() as conn:
        where = "originator_id = :id AND originator_version = 3"
        ids = conn.execute(text(f"SELECT originator_id FROM {table}")).scalars().all()
        stored_id = next(i for i in ids if as_uuid(i) == chatty)
        conn.execute(text(f"DELETE FROM {table} WHERE {where}"), {"id": stored_id})
    engine.dispose()
    assert breaks(verify(store, "--json")) == {chatty: 3}


def test_a_history_rewritten_with_a_valid_chain_is_caught_by_the_state_view(
    pristine: Fixture,
) -> None:
    """Delete an agent's last events and let the application append others in their
    place: every digest and link is valid, but the state view saw the original head."""
    chatty = pristine.agents["chatty"]
    with copy_of(pristine) as store:
        table = events_table(store.url)
        for version in (5, 6):
            table.delete((chatty.hex, version))
        log = open_log(store.url)  # no views follow these saves
        log.send(chatty, "this never happened")
        log.send(chatty, "nor this")
        log.close()
        report = json.loads(verify(store, "--json").stdout)
    (found,) = [a["break"] for a in report["agents"] if a["break"]]
    assert found["version"] == 6
    assert "state view" in found["reason"]


def test_a_progress_bar_runs_on_stderr_when_it_is_a_terminal(pristine: Fixture) -> None:
    """Through a real pseudo-terminal; stdout (a pipe) still gets the plain report."""
    main_fd, terminal = pty.openpty()
    done = subprocess.run(
        [sys.executable, "-m", "agentlog.cli", "--db", pristine.url, "verify"],
        stdout=subprocess.PIPE,
        stderr=terminal,
        timeout=60,
        check=False,
    )
    os.close(terminal)
    drawn = b""
    while True:
        try:
            chunk = os.read(main_fd, 4096)
        except OSError:  # the terminal's other end is closed: all read
            break
        if not chunk:
            break
        drawn += chunk
    os.close(main_fd)
    assert done.returncode == 0
    assert done.stdout == b"OK: 3 agent(s), 12 event(s), 2 snapshot(s) checked\n"
    assert b"verify" in drawn
    assert b"100%" in drawn


def test_log_lineage_warns_about_an_ancestor_that_fails_its_chain(pristine: Fixture) -> None:
    chatty = pristine.agents["chatty"]
    with copy_of(pristine) as store:
        forked = CliRunner().invoke(main, ["--db", store.url, "fork", str(chatty), "--at", "3"])
        child = forked.output.split()[0]
        assert verify(store).exit_code == 0, forked.output
        table = events_table(store.url)
        (row,) = [r for r in table.rows() if as_uuid(r[0]) == chatty and r[1] == 3]
        table.set(row[:2], "state", edited(row[3], b'"one"', b'"uno"'))
        result = CliRunner().invoke(main, ["--db", store.url, "log", "--lineage", child])
    assert result.exit_code == 0, result.output
    assert result.stderr.startswith(f"warning: agent {chatty} fails its hash chain at version 3")


def verify_in_fresh_process(url: str, *app: str) -> dict[str, Any]:
    """`agentlog [--app ...] verify --json` in a process that imported nothing of the user's."""
    done = subprocess.run(
        [sys.executable, "-m", "agentlog.cli", *app, "--db", url, "verify", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=EXAMPLES,
        env={"PYTHONPATH": str(EXAMPLES), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode in (0, 1), done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def test_a_users_aggregates_are_verified_with_or_without_their_module(tmp_path: Path) -> None:
    """Chains need no class; snapshots are checked when --app loads the aggregate's module."""
    from support_agent import open_desk, work_ticket

    url = store_url("sqlite", tmp_path)
    desk = open_desk(url, snapshot_interval=4)
    ticket = work_ticket(desk, "T-1")
    desk.close()
    app = ("--app", "support_agent:SupportDesk")
    for options, snapshots in (((), 0), (app, 1)):
        (report,) = verify_in_fresh_process(url, *options)["agents"]
        assert (report["ok"], report["snapshots"]) == (True, snapshots), options
    table = events_table(url)
    (row,) = [r for r in table.rows() if as_uuid(r[0]) == ticket and r[1] == 3]
    table.set(row[:2], "state", edited(row[3], b"charged twice", b"charged once"))
    for options in ((), app):
        (report,) = verify_in_fresh_process(url, *options)["agents"]
        assert report["break"]["version"] == 3, options
