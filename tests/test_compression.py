"""Stored states: large ones compressed by default, any mix of ways read back."""

from __future__ import annotations

import json
import sqlite3
import zlib
from uuid import UUID

import pytest
from eventsourcing.cipher import AESCipher

from agentlog.adapters.storage import open_log, sqlite_path
from agentlog.domain import AgentLog
from agentlog.domain.errors import StorageURLError

LONG_GOAL = "Move every module off the old config loader, one package at a time. " * 20
SHORT_GOAL = "say hi"


def rows(url: str, agent_id: UUID) -> dict[int, bytes]:
    """Each version's state bytes exactly as they are in the file."""
    with sqlite3.connect(sqlite_path(url)) as db:
        found = db.execute(
            "SELECT originator_version, state FROM stored_events WHERE originator_id=?",
            (agent_id.hex,),
        )
        return dict(found.fetchall())


def agent_with_goals(log: AgentLog, goal: str, *messages: str) -> UUID:
    """An agent with a goal (version 2) and messages from a person (versions 3, ...)."""
    agent_id = log.create_agent("packer")
    log.start_task(agent_id, goal)
    for text in messages:
        log.send(agent_id, text)
    return agent_id


def test_large_states_are_compressed_and_small_ones_stay_json(sqlite_url: str) -> None:
    log = open_log(sqlite_url)
    agent_id = agent_with_goals(log, LONG_GOAL, SHORT_GOAL)
    log.close()
    stored = rows(sqlite_url, agent_id)
    long_task, short_message = stored[2], stored[3]
    assert len(short_message) < 512
    assert short_message.startswith(b"{")
    assert not long_task.startswith(b"{")
    unpacked = json.loads(zlib.decompress(long_task))
    assert unpacked["goal"] == LONG_GOAL
    assert len(long_task) < len(LONG_GOAL) / 4  # the goal repeats: it packs well


@pytest.mark.parametrize("option", ["", "?compress=large", "?compress=zlib", "?compress=none"])
def test_every_way_of_writing_reads_back_with_every_other(sqlite_url: str, option: str) -> None:
    goals = {"": LONG_GOAL, "?compress=zlib": SHORT_GOAL, "?compress=none": LONG_GOAL + "!"}
    ids = {}
    for writer, goal in goals.items():
        log = open_log(sqlite_url + writer)
        ids[writer] = agent_with_goals(log, goal)
        log.close()
    reader = open_log(sqlite_url + option)
    try:
        for writer, goal in goals.items():
            assert reader.get(ids[writer]).goal == goal
    finally:
        reader.close()
    zlib_rows = rows(sqlite_url, ids["?compress=zlib"])
    none_rows = rows(sqlite_url, ids["?compress=none"])
    assert all(not state.startswith(b"{") for state in zlib_rows.values())
    assert all(state.startswith(b"{") for state in none_rows.values())


def test_compressed_and_encrypted_round_trips(sqlite_url: str) -> None:
    key = AESCipher.create_key(16)
    log = open_log(sqlite_url, cipher_key=key)
    agent_id = agent_with_goals(log, LONG_GOAL)
    log.close()
    assert LONG_GOAL[:30].encode() not in sqlite_path(sqlite_url).read_bytes()
    log = open_log(sqlite_url, cipher_key=key)
    assert log.get(agent_id).goal == LONG_GOAL
    log.close()


def test_unknown_compression_is_refused_naming_the_choices(sqlite_url: str) -> None:
    with pytest.raises(StorageURLError, match="large, zlib, none"):
        open_log(sqlite_url + "?compress=lz4")
