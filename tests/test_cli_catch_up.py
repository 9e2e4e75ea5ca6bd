"""Read commands and views that are behind: a progress bar on a terminal while they
catch up, or with --no-catch-up the views as they are and how far behind."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest
from cli_checks import checked, invoke, ok
from click.testing import CliRunner

from agentlog.adapters.storage import open_log
from agentlog.domain import Agent


@pytest.fixture
def cli(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("AGENTLOG_DB", sqlite_url)
    return CliRunner()


def behind(url: str, agents: int) -> list[str]:
    """Agents saved by a process without views (one event each): the views lag."""
    log = open_log(url)
    made = [Agent.create(f"a{n}") for n in range(agents)]
    log.save(*made)
    log.close()
    return [str(a.id) for a in made]


def listed(output: str) -> list[str]:
    return [row["id"] for row in json.loads(output)]


@pytest.mark.parametrize(
    "command",
    [("ls", "--json"), ("audit", "--json"), ("show", "AGENT", "--json")],
)
def test_no_catch_up_reads_the_views_as_they_are_and_says_how_far_behind(
    cli: CliRunner, sqlite_url: str, command: tuple[str, ...]
) -> None:
    first = ok(cli, "new", "--name", "first").strip()
    behind(sqlite_url, 3)
    args = [first if arg == "AGENT" else arg for arg in command]
    result = checked(invoke(cli, *args, "--no-catch-up"), 0, "warning: views are ")
    assert result.stderr.splitlines() == ["warning: views are 3 events behind (read as they are)"]
    caught_up = checked(invoke(cli, *args), 0)  # not a terminal: no bar
    assert checked(invoke(cli, *args, "--no-catch-up"), 0).stdout == caught_up.stdout


def test_ls_no_catch_up_lists_what_the_view_has(cli: CliRunner, sqlite_url: str) -> None:
    first = ok(cli, "new", "--name", "first").strip()
    later = behind(sqlite_url, 2)
    assert listed(checked(invoke(cli, "ls", "--json", "--no-catch-up"), 0, "warning").stdout) == [
        first
    ]
    assert listed(ok(cli, "ls", "--json")) == [first, *later]


def test_a_read_command_on_a_terminal_shows_a_progress_bar_while_views_catch_up(
    sqlite_url: str, tmp_path: Path
) -> None:
    ok(CliRunner(env={"AGENTLOG_DB": sqlite_url}), "init")
    behind(sqlite_url, 200)
    main_fd, terminal = pty.openpty()
    env = {**os.environ, "AGENTLOG_DB": sqlite_url, "TERM": "xterm", "COLUMNS": "100"}
    out = tmp_path / "stdout.json"
    with out.open("wb") as stdout_file:  # not a pipe: nobody reads it while the pty is read
        child = subprocess.Popen(
            [sys.executable, "-m", "agentlog.cli", "ls", "--json"],
            stdout=stdout_file,
            stderr=terminal,
            env=env,
            cwd=tmp_path,
        )
    os.close(terminal)
    screen = b""
    while True:
        try:
            chunk = os.read(main_fd, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        screen += chunk
    child.wait(timeout=60)
    os.close(main_fd)
    text = screen.decode(errors="replace")
    assert child.returncode == 0, text
    assert "views 200 events behind: catching up" in text
    assert "Traceback" not in text
    assert len(json.loads(out.read_text())) == 200


def test_no_bar_and_no_word_when_the_views_are_current(cli: CliRunner) -> None:
    ok(cli, "new", "--name", "a")
    checked(invoke(cli, "ls", "--no-catch-up"), 0)
