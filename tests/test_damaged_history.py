"""Damaged history is named as such: which agent, which version, and `agentlog verify`;
never a library error like ``OriginatorVersionError: (8, 7)`` or a skipped version."""

from __future__ import annotations

import sqlite3
from uuid import UUID

import pytest

from agentlog.adapters.storage import open_log, sqlite_path
from agentlog.domain import DamagedHistoryError

from cli_outcome import fails_in_one_line, invoke


def history(url: str) -> UUID:
    """An agent with versions 1 to 6 and no snapshot."""
    log = open_log(url, snapshot_interval=0)
    agent_id = log.create_agent("victim")
    log.start_task(agent_id, "exist")
    for i in range(4):
        log.send(agent_id, f"hello {i}")
    log.close()
    return agent_id


def delete(url: str, agent_id: UUID, version: int) -> None:
    """Delete one stored event, as a bad hand edit or a broken copy would."""
    with sqlite3.connect(sqlite_path(url)) as db:
        deleted = db.execute(
            "DELETE FROM stored_events WHERE originator_id=? AND originator_version=?",
            (agent_id.hex, version),
        ).rowcount
    assert deleted == 1


def damaged(agent_id: UUID, version: int) -> str:
    return f"Error: the history of agent {agent_id} is damaged at version {version}: "


@pytest.mark.parametrize("missing", [1, 3])
def test_log_names_the_missing_version(sqlite_url: str, missing: int) -> None:
    agent_id = history(sqlite_url)
    delete(sqlite_url, agent_id, missing)
    outcome = invoke("--db", sqlite_url, "log", str(agent_id))
    fails_in_one_line(outcome, damaged(agent_id, missing) + "this event is missing")
    assert "`agentlog verify`" in outcome.first_error
    printed = [int(line.split()[0]) for line in outcome.stdout.splitlines()]
    assert missing not in printed
    assert printed[: missing - 1] == list(range(1, missing))  # the good events come first


@pytest.mark.parametrize("at", [3, 4, 6])
def test_show_at_names_the_missing_version(sqlite_url: str, at: int) -> None:
    agent_id = history(sqlite_url)
    delete(sqlite_url, agent_id, 3)
    outcome = invoke("--db", sqlite_url, "show", "--at", str(at), str(agent_id))
    fails_in_one_line(outcome, damaged(agent_id, 3))


def test_show_at_a_version_before_the_damage_still_works(sqlite_url: str) -> None:
    agent_id = history(sqlite_url)
    delete(sqlite_url, agent_id, 5)
    outcome = invoke("--db", sqlite_url, "show", "--at", "4", str(agent_id))
    assert outcome.code == 0, outcome.output


@pytest.mark.parametrize("missing", [1, 3, 5])
def test_replay_names_the_missing_version(sqlite_url: str, missing: int) -> None:
    agent_id = history(sqlite_url)
    delete(sqlite_url, agent_id, missing)
    log = open_log(sqlite_url, snapshot_interval=0)
    with pytest.raises(DamagedHistoryError) as error:
        log.get(agent_id)
    assert (error.value.agent_id, error.value.version) == (agent_id, missing)
    assert "OriginatorVersion" not in str(error.value)


def test_replay_from_a_snapshot_names_a_missing_version_in_its_tail(sqlite_url: str) -> None:
    log = open_log(sqlite_url, snapshot_interval=3)
    agent_id = log.create_agent("victim")
    log.start_task(agent_id, "exist")
    for i in range(6):
        log.send(agent_id, f"hello {i}")  # versions 1 to 8, snapshots at 3 and 6
    delete(sqlite_url, agent_id, 7)
    fresh = open_log(sqlite_url, snapshot_interval=3)
    with pytest.raises(DamagedHistoryError) as error:
        fresh.get(agent_id)  # the snapshot at 6, then 8
    assert error.value.version == 7
    with pytest.raises(DamagedHistoryError) as error:
        fresh.get(agent_id, version=7)
    assert error.value.version == 7


def test_views_and_their_rebuild_name_the_damage(sqlite_url: str) -> None:
    agent_id = history(sqlite_url)
    delete(sqlite_url, agent_id, 3)
    shown = invoke("--db", sqlite_url, "show", str(agent_id))
    assert shown.code == 1
    assert f"the history of agent {agent_id} is damaged at version 3" in shown.first_error
    rebuilt = invoke("--db", sqlite_url, "projections", "rebuild", "--all")
    assert rebuilt.code == 1
    assert f"the history of agent {agent_id} is damaged at version 3" in rebuilt.stderr
    assert "OriginatorVersionError" not in rebuilt.output + shown.output
    assert "Traceback" not in rebuilt.output + shown.output


def test_an_event_that_no_longer_decodes_is_named_by_show_at(sqlite_url: str) -> None:
    agent_id = history(sqlite_url)
    with sqlite3.connect(sqlite_path(sqlite_url)) as db:
        db.execute(
            "UPDATE stored_events SET state=? WHERE originator_id=? AND originator_version=4",
            (b"\x00garbage", agent_id.hex),
        )
    for command in (("show", "--at", "5"), ("log",)):
        outcome = invoke("--db", sqlite_url, *command, str(agent_id))
        fails_in_one_line(outcome, damaged(agent_id, 4) + "stored event")
        assert "`agentlog verify`" in outcome.first_error
