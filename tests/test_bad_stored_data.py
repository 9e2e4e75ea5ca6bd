"""Bad stored data is an error that names the agent and version, never a silent skip."""

from __future__ import annotations

import sqlite3
from uuid import UUID

import pytest
from click.testing import CliRunner
from eventsourcing.cipher import AESCipher
from eventsourcing.persistence import StoredEvent

from agentlog.adapters.storage import env_for, open_log, sqlite_path
from agentlog.cli import main
from agentlog.domain import AgentLog, StoredEventError


def agent_with_history(log: AgentLog) -> UUID:
    agent_id = log.create_agent("victim")
    log.start_task(agent_id, "exist")
    log.send(agent_id, "hello")
    return agent_id


def corrupt(url: str, agent_id: UUID, version: int, state: bytes) -> None:
    """Overwrite one stored row's state, as a disk error or a bad hand edit would."""
    with sqlite3.connect(sqlite_path(url)) as db:
        db.execute(
            "UPDATE stored_events SET state=? WHERE originator_id=? AND originator_version=?",
            (state, agent_id.hex, version),
        )


def test_unknown_event_topic_names_agent_and_version(sqlite_url: str) -> None:
    log = open_log(sqlite_url)
    agent_id = agent_with_history(log)
    log.recorder.insert_events(
        [StoredEvent(agent_id, 4, "agentlog:Agent.Teleported@1", b'{"actor":"x"}')]
    )
    with pytest.raises(StoredEventError) as error:
        log.get(agent_id)
    assert (error.value.agent_id, error.value.version) == (agent_id, 4)
    assert "unknown topic" in str(error.value)


@pytest.mark.parametrize(
    ("state", "reason"),
    [
        (b"\x00\xffnot json", "cannot be decoded"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"actor": "user"}', "does not fit"),
    ],
)
def test_row_that_does_not_decode_names_agent_and_version(
    sqlite_url: str, state: bytes, reason: str
) -> None:
    log = open_log(sqlite_url)
    agent_id = agent_with_history(log)
    corrupt(sqlite_url, agent_id, 2, state)
    with pytest.raises(StoredEventError, match=reason) as error:
        open_log(sqlite_url).get(agent_id)
    assert (error.value.agent_id, error.value.version) == (agent_id, 2)


def test_wrong_cipher_key_names_agent_and_version(sqlite_url: str) -> None:
    """Past the store's key check (an application built from the bare environment), an
    event the key cannot decrypt still names its agent and version."""
    log = open_log(sqlite_url, cipher_key=AESCipher.create_key(16))
    agent_id = agent_with_history(log)
    other = AgentLog(env_for(sqlite_url, cipher_key=AESCipher.create_key(16)))
    with pytest.raises(StoredEventError, match="wrong cipher key") as error:
        other.get(agent_id)
    assert (error.value.agent_id, error.value.version) == (agent_id, 1)


def test_cli_reports_bad_data_in_one_line_with_exit_code_1(sqlite_url: str) -> None:
    log = open_log(sqlite_url)
    agent_id = agent_with_history(log)
    corrupt(sqlite_url, agent_id, 3, b"garbage")
    for command in ("show", "log"):
        result = CliRunner().invoke(main, ["--db", sqlite_url, command, str(agent_id)])
        assert result.exit_code == 1
        *printed, last = result.output.splitlines()
        assert last.startswith("Error: ")
        assert f"the history of agent {agent_id} is damaged at version 3: " in last
        assert len(printed) == (2 if command == "log" else 0)  # the good events come first
        assert "Traceback" not in result.output
