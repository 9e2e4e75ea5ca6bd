"""Logs written by version 1 of a user's aggregate still load, upcast, verify and grow.

``tests/data/support_agent_v1.jsonl`` holds the stored rows (events and snapshots) that
version 1 of ``examples/support_agent.py`` wrote, before ``EscalationRaised.severity``
and the snapshot state's ``highest_severity`` existed. The rows go into a real SQLite
file through the recorders, exactly as they were stored, and are read by today's classes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from eventsourcing.persistence import StoredEvent

from agentlog.adapters.mapper import inflate
from agentlog.adapters.storage import env_for
from agentlog.domain import (
    GENESIS,
    CallStage,
    EffectClass,
    Policy,
    StaleSnapshotError,
    Status,
    TokenUsage,
    event_digest,
)

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
if str(EXAMPLES) not in sys.path:
    sys.path.insert(0, str(EXAMPLES))

from support_agent import Severity, SupportAgent, SupportDesk  # noqa: E402

DATA = Path(__file__).parent / "data" / "support_agent_v1.jsonl"
COMPLETED = UUID("cdf27717-1d00-4298-bef6-656bec786468")  # T-1042: escalated, resolved, done
RUNNING = UUID("9d9fdfc4-5fd6-49df-9de2-60b234b27019")  # T-2077: escalated again, call waiting
SNAPSHOT_INTERVAL = 4  # what version 1 ran with: snapshots at versions 4 and 8


def rows(table: str) -> list[dict[str, Any]]:
    """The data file's rows for one table, in file order."""
    lines = DATA.read_text(encoding="utf-8").splitlines()
    parsed = [json.loads(line) for line in lines if line and not line.startswith("#")]
    return [row for row in parsed if row["table"] == table]


def stored(row: dict[str, Any]) -> StoredEvent:
    """A row as the recorder stores it: the state bytes exactly as version 1 wrote them."""
    return StoredEvent(
        originator_id=UUID(row["originator_id"]),
        originator_version=row["originator_version"],
        topic=row["topic"],
        state=row["state"].encode("utf-8"),
    )


def events_only(url: str) -> SupportDesk:
    """A desk on the same file that cannot see snapshots: every load is a full replay."""
    return SupportDesk(env_for(url, snapshot_interval=0) | {"IS_SNAPSHOTTING_ENABLED": "n"})


@pytest.fixture
def old_log_url(tmp_path: Path) -> str:
    """A real SQLite file holding the version-1 rows, inserted through the recorders."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    desk = SupportDesk(env_for(url, snapshot_interval=SNAPSHOT_INTERVAL))
    assert desk.snapshots is not None
    desk.recorder.insert_events([stored(row) for row in rows("events")])
    desk.snapshots.recorder.insert_events([stored(row) for row in rows("snapshots")])
    desk.close()
    return url


@pytest.fixture
def desk(old_log_url: str) -> Iterator[SupportDesk]:
    """Today's desk on the old log (snapshots on, as in production)."""
    log = SupportDesk(env_for(old_log_url, snapshot_interval=SNAPSHOT_INTERVAL))
    yield log
    log.close()


@pytest.fixture
def replayer(old_log_url: str) -> Iterator[SupportDesk]:
    """Today's desk on the old log, without snapshots."""
    log = events_only(old_log_url)
    yield log
    log.close()


def test_the_data_file_really_is_version_1() -> None:
    escalations = [r for r in rows("events") if r["topic"].endswith("EscalationRaised@1")]
    snapshots = [json.loads(r["state"])["state"] for r in rows("snapshots")]
    assert len(escalations) == 3
    assert all("severity" not in json.loads(r["state"]) for r in escalations)
    assert all("class_version" not in json.loads(r["state"]) for r in escalations)
    assert len(snapshots) == 4
    assert all("highest_severity" not in s and "class_version" not in s for s in snapshots)


EVERY_VERSION = [
    *[pytest.param(COMPLETED, v, id=f"T-1042@{v}") for v in range(1, 12)],
    *[pytest.param(RUNNING, v, id=f"T-2077@{v}") for v in range(1, 11)],
]


@pytest.mark.parametrize(("agent_id", "version"), EVERY_VERSION)
def test_snapshot_and_tail_equals_full_replay_at_every_version(
    desk: SupportDesk, replayer: SupportDesk, agent_id: UUID, version: int
) -> None:
    from_snapshot = desk.get_support_agent(agent_id, version)
    replayed = replayer.get_support_agent(agent_id, version)
    assert from_snapshot.state() == replayed.state()
    assert from_snapshot.version == replayed.version == version
    assert from_snapshot.modified_on == replayed.modified_on


def test_snapshots_older_than_the_state_schema_are_replayed_not_trusted(
    desk: SupportDesk, replayer: SupportDesk
) -> None:
    """Agent state gained fields only a replay can compute (SNAPSHOT_SCHEMA 2)."""
    assert desk.snapshots is not None
    (newest,) = desk.snapshots.get(RUNNING, desc=True, limit=1)
    assert isinstance(newest, SupportAgent.Snapshot)
    with pytest.raises(StaleSnapshotError):
        newest.mutate(None)
    assert desk.get_support_agent(RUNNING).state() == replayer.get_support_agent(RUNNING).state()


def test_snapshot_state_of_class_version_1_is_upcast(desk: SupportDesk) -> None:
    """A snapshot of the current base schema whose SupportAgent state is still version 1."""
    assert desk.snapshots is not None
    (newest,) = desk.snapshots.get(RUNNING, desc=True, limit=1)
    assert isinstance(newest, SupportAgent.Snapshot)
    state = dict(newest.state) | {"_schema": SupportAgent.SNAPSHOT_SCHEMA}
    assert "class_version" not in state
    assert "highest_severity" not in state
    agent = newest.model_copy(update={"state": state}).mutate(None)
    assert isinstance(agent, SupportAgent)
    assert (agent.escalations, agent.escalated_to, agent.highest_severity) == (
        1,
        None,
        Severity.NORMAL,
    )


def test_old_logs_load_as_the_current_version(desk: SupportDesk) -> None:
    done = desk.get_support_agent(COMPLETED)
    assert (done.version, done.status, done.result) == (
        11,
        Status.COMPLETED,
        "Refunded the duplicate charge.",
    )
    assert (done.escalations, done.escalated_to, done.highest_severity) == (
        1,
        None,
        Severity.NORMAL,
    )
    assert (done.steps, done.messages, done.tokens, done.calls) == (
        2,
        5,
        TokenUsage(prompt=120, completion=14),
        {},
    )
    running = desk.get_support_agent(RUNNING)
    assert (running.version, running.status, running.ticket) == (10, Status.RUNNING, "T-2077")
    assert (running.escalations, running.escalated_to, running.highest_severity) == (
        2,
        "legal",
        Severity.NORMAL,
    )
    call = running.calls["r1"]
    assert (call.stage, call.policy, call.effect) == (
        CallStage.AWAITING_PERMISSION,
        Policy.ASK,
        EffectClass.SIDE_EFFECTING,
    )


def test_a_version_1_escalation_reads_as_a_normal_one(desk: SupportDesk) -> None:
    escalations = [
        e for e in desk.events_of(RUNNING) if isinstance(e, SupportAgent.EscalationRaised)
    ]
    assert [(e.team, e.severity) for e in escalations] == [
        ("security", Severity.NORMAL),
        ("legal", Severity.NORMAL),
    ]


def test_new_commands_append_after_the_old_events(desk: SupportDesk, old_log_url: str) -> None:
    agent = desk.get_support_agent(RUNNING)
    old_head = agent.head_hash
    agent.grant("r1", approver="lead:kim")
    agent.start_tool("r1", worker_id="w2")
    agent.succeed("r1", {"refund_id": "rf_77"})
    agent.resolve_escalation("refund approved", actor="legal:lou")
    agent.escalate("security", "second takeover attempt", Severity.CRITICAL)
    desk.save(agent)
    desk.resolve_escalation(RUNNING, "locked the account", actor="security:raj")
    desk.complete(RUNNING, "Refunded and secured.")

    new_events = list(desk.events_of(RUNNING))[10:]
    assert new_events[0].prev_hash == old_head
    replayer = events_only(old_log_url)
    try:
        replayed = replayer.get_support_agent(RUNNING)
    finally:
        replayer.close()
    loaded = desk.get_support_agent(RUNNING)
    assert loaded.state() == replayed.state()
    assert (loaded.version, loaded.status) == (17, Status.COMPLETED)
    assert (loaded.escalations, loaded.highest_severity) == (3, Severity.CRITICAL)


def test_new_rows_are_written_at_the_current_class_versions(desk: SupportDesk) -> None:
    desk.resolve_escalation(RUNNING, "done")
    desk.escalate(RUNNING, "billing", "refund over the limit", Severity.HIGH)  # version 12
    assert desk.snapshots is not None
    (escalation,) = desk.recorder.select_events(RUNNING, gt=11)
    assert json.loads(inflate(escalation.state))["class_version"] == 2
    assert json.loads(inflate(escalation.state))["severity"] == "high"
    (snapshot,) = desk.snapshots.recorder.select_events(RUNNING, gt=8)
    assert json.loads(inflate(snapshot.state))["state"]["class_version"] == 2


def test_old_digests_verify_from_the_stored_json(desk: SupportDesk) -> None:
    for agent_id in (COMPLETED, RUNNING):
        records = desk.recorder.select_events(agent_id)
        previous = GENESIS
        for record in records:
            state = json.loads(inflate(record.state))
            recomputed = event_digest(record.topic, str(agent_id), record.originator_version, state)
            assert recomputed == state["digest"], (agent_id, record.originator_version)
            assert state["prev_hash"] == previous
            previous = state["digest"]


def test_upcast_events_keep_the_digest_they_were_stored_with(desk: SupportDesk) -> None:
    stored_digests = {
        r["originator_version"]: json.loads(inflate(r["state"]))["digest"]
        for r in rows("events")
        if r["originator_id"] == str(RUNNING)
    }
    events = list(desk.events_of(RUNNING))
    assert {e.originator_version: e.digest for e in events} == stored_digests
    # Upcasting (and any field added with a default since) changes what the event would
    # store today, so its recomputed digest differs: verification reads the stored JSON.
    escalation = next(e for e in events if isinstance(e, SupportAgent.EscalationRaised))
    assert escalation.compute_digest() != escalation.digest


def test_old_logs_pass_agentlog_verify(desk: SupportDesk) -> None:
    """Rows written by version 1, upcast on read, with stale snapshots: no false alarm."""
    from agentlog.adapters.verify import verify_agent

    reports = [verify_agent(desk, agent_id) for agent_id in (COMPLETED, RUNNING)]
    assert [(r.ok, r.events, r.first_break) for r in reports] == [
        (True, 11, None),
        (True, 10, None),
    ]
    # Both newest snapshots predate the state's schema: loads skip them, so does verify.
    assert [r.snapshots for r in reports] == [0, 0]


def test_agentlog_verify_checks_a_users_aggregates_without_their_module(
    old_log_url: str,
) -> None:
    """Without --app the events' classes are unknown (a fresh process): the chains are
    still checked (they need no class), the snapshots cannot be, and none is broken."""
    done = subprocess.run(
        [sys.executable, "-m", "agentlog.cli", "--db", old_log_url, "verify"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout) == (
        0,
        "OK: 2 agent(s), 21 event(s), 0 snapshot(s) checked\n",
    ), done.stderr
