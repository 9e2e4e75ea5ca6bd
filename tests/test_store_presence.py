"""Nothing silent: read commands never create a store, someone else's database is left
alone, and a store opened with another engine than its own is refused."""

from __future__ import annotations

import sqlite3
from importlib.metadata import version as package_version
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect

from agentlog.adapters.storage import open_log
from agentlog.adapters.storage import postgres_url as parse_postgres_url

from cli_outcome import fails_in_one_line, invoke

AGENT = "00000000-0000-4000-8000-000000000000"
READ_COMMANDS = [
    ("ls",),
    ("show", AGENT),
    ("show", "--at", "1", AGENT),
    ("log", AGENT),
    ("audit",),
    ("projections", "status"),
]


def tables_of(path: Path) -> list[str]:
    with sqlite3.connect(path) as db:
        return sorted(r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'"))


@pytest.mark.parametrize("command", READ_COMMANDS)
def test_a_read_command_creates_no_store_and_no_folder(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    url = f"sqlite:///{tmp_path / 'missing' / 'agentlog.db'}"
    fails_in_one_line(
        invoke("--db", url, *command),
        f"Error: no agentlog store at {url}: create one with `agentlog init`",
    )
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def foreign(tmp_path: Path) -> Path:
    """Another program's SQLite file."""
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
        db.execute("INSERT INTO notes (body) VALUES ('keep me')")
    return path


@pytest.mark.parametrize("command", [*READ_COMMANDS, ("new", "--name", "a"), ("init",)])
def test_another_programs_sqlite_file_is_left_byte_for_byte(
    foreign: Path, command: tuple[str, ...]
) -> None:
    before = foreign.read_bytes()
    outcome = invoke("--db", f"sqlite:///{foreign}", *command)
    assert outcome.code == 1, outcome.output
    expected = "no agentlog store at" if command in READ_COMMANDS else "holds other tables"
    assert expected in outcome.first_error
    assert foreign.read_bytes() == before
    assert sorted(p.name for p in foreign.parent.iterdir()) == ["app.db"]


def test_init_force_adds_agentlogs_tables_beside_the_others(foreign: Path) -> None:
    url = f"sqlite:///{foreign}"
    outcome = invoke("--db", url, "init")
    fails_in_one_line(outcome, f"Error: {url} holds other tables than agentlog's (notes)")
    assert "`agentlog init --force`" in outcome.first_error
    assert invoke("--db", url, "init", "--force").code == 0
    assert invoke("--db", url, "new", "--name", "a").code == 0
    with sqlite3.connect(foreign) as db:
        assert db.execute("SELECT body FROM notes").fetchall() == [("keep me",)]
    assert invoke("--db", url, "ls").code == 0


def test_a_read_command_creates_no_tables_in_an_empty_postgresql_database(
    postgres_url: str,
) -> None:
    fails_in_one_line(invoke("--db", postgres_url, "ls"), "Error: no agentlog store at")
    engine = create_engine(sqlalchemy_url(postgres_url))
    try:
        assert inspect(engine).get_table_names() == []
    finally:
        engine.dispose()


def sqlalchemy_url(url: str) -> str:
    return parse_postgres_url(url).render_as_string(hide_password=False)


@pytest.mark.parametrize("engine", ["native", "sqlalchemy"])
def test_a_new_store_records_its_engine_layout_and_version(tmp_path: Path, engine: str) -> None:
    option = "?engine=sqlalchemy" if engine == "sqlalchemy" else ""
    assert invoke("--db", f"sqlite:///{tmp_path / 'a.db'}{option}", "init").code == 0
    with sqlite3.connect(tmp_path / "a.db") as db:
        rows = db.execute("SELECT * FROM agentlog_store").fetchall()
    layout = "stored_events" if engine == "native" else "agentlog_events"
    assert rows == [("agentlog", engine, layout, package_version("agentlog"))]


@pytest.mark.parametrize(("made_by", "opened_with"), [("", "sqlalchemy"), ("sqlalchemy", "")])
@pytest.mark.parametrize("recorded", [True, False])
def test_a_store_opened_with_another_engine_is_refused(
    tmp_path: Path, made_by: str, opened_with: str, recorded: bool
) -> None:
    path = tmp_path / "a.db"
    made = invoke("--db", f"sqlite:///{path}?engine={made_by or 'native'}", "new", "--name", "a")
    assert made.code == 0, made.output
    if not recorded:  # a store from before the format record
        with sqlite3.connect(path) as db:
            db.execute("DROP TABLE agentlog_store")
    before = tables_of(path)
    url = f"sqlite:///{path}?engine={opened_with or 'native'}"
    for command in (("ls",), ("new", "--name", "b"), ("init",)):
        outcome = invoke("--db", url, *command)
        fails_in_one_line(
            outcome, f"Error: the store at {url} was made by the {made_by or 'native'} engine"
        )
        assert tables_of(path) == before  # never a second log in the same file


def test_a_postgresql_store_opened_with_another_engine_is_refused(postgres_url: str) -> None:
    open_log(postgres_url).close()
    outcome = invoke("--db", f"{postgres_url}?engine=sqlalchemy", "ls")
    fails_in_one_line(outcome, "Error: the store at ")
    assert "was made by the native engine" in outcome.first_error
