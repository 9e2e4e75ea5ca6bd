"""Text from the log reaches a terminal with its control characters escaped (no ANSI or
OSC injection, no bidi tricks); JSON output keeps the text as it was recorded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agentlog.adapters.storage import open_log
from agentlog.cli.render import printable

from cli_outcome import invoke

HOSTILE = "\x1b[2J\x1b]0;pwned\x07red\x9b31m\u202eevil\x01"
RAW = ("\x1b", "\x07", "\x9b", "\u202e", "\x01")


@pytest.fixture
def hostile_store(tmp_path: Path) -> tuple[str, str]:
    """A store whose agent's name, goal and message carry terminal escapes."""
    url = f"sqlite:///{tmp_path / 'a.db'}"
    log = open_log(url)
    agent_id = log.create_agent(f"name{HOSTILE}")
    log.start_task(agent_id, f"goal{HOSTILE}")
    log.send(agent_id, f"text{HOSTILE}\nsecond line")
    log.close()
    return url, str(agent_id)


@pytest.mark.parametrize(
    "command",
    [("ls",), ("show", "{id}"), ("show", "--at", "2", "{id}"), ("log", "{id}"), ("audit",)],
)
def test_text_output_escapes_control_characters(
    hostile_store: tuple[str, str], command: tuple[str, ...]
) -> None:
    url, agent_id = hostile_store
    outcome = invoke("--db", url, *(arg.format(id=agent_id) for arg in command))
    assert outcome.code == 0, outcome.output
    assert not [c for c in RAW if c in outcome.stdout]
    if command[0] == "log":  # JSON payloads escape C0 themselves; the rest is ours
        assert r"\u0007red\x9b31m\u202eevil" in outcome.stdout
    elif command[0] != "audit":
        assert r"\x1b[2J\x1b]0;pwned\x07red\x9b31m\u202eevil\x01" in outcome.stdout


def test_json_output_keeps_the_recorded_text(hostile_store: tuple[str, str]) -> None:
    url, agent_id = hostile_store
    listed = json.loads(invoke("--db", url, "ls", "--json").stdout)
    assert (listed[0]["name"], listed[0]["goal"]) == (f"name{HOSTILE}", f"goal{HOSTILE}")
    shown = json.loads(invoke("--db", url, "show", "--json", agent_id).stdout)
    assert shown["goal"] == f"goal{HOSTILE}"
    events = [
        json.loads(line)
        for line in invoke("--db", url, "log", "--json", agent_id).stdout.splitlines()
    ]
    assert events[2]["text"] == f"text{HOSTILE}\nsecond line"


def test_an_error_that_quotes_the_log_is_escaped_too(hostile_store: tuple[str, str]) -> None:
    url, agent_id = hostile_store
    outcome = invoke("--db", url, "show", f"{agent_id[:4]}\x1b[31m")
    assert outcome.code == 1
    assert "\x1b" not in outcome.output
    assert r"\x1b[31m" in outcome.first_error


def test_printable_keeps_newlines_only_where_asked() -> None:
    assert printable("a\nb\tc") == r"a\x0ab" + "\tc"
    assert printable("a\nb", keep_newlines=True) == "a\nb"
    assert printable("\u2066x\u2069 \u200f \x7f \x85") == r"\u2066x\u2069 \u200f \x7f \x85"
    assert printable("émoji 👩\u200d💻 ok") == "émoji 👩\u200d💻 ok"  # joiners are not controls
