"""examples/support_agent.py works as its docs say: a user's own aggregate on agentlog."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from eventsourcing.utils import get_topic, resolve_topic

from agentlog.domain import Aggregate, NoTaskRunningError, Status, UnknownAgentError

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
if str(EXAMPLES) not in sys.path:
    sys.path.insert(0, str(EXAMPLES))

from support_agent import (  # noqa: E402
    AlreadyEscalatedError,
    EscalationOpenError,
    NotEscalatedError,
    Severity,
    SupportAgent,
    main,
    open_desk,
    work_ticket,
)


def running_agent() -> SupportAgent:
    agent = SupportAgent.open("T-1")
    agent.start_task("help")
    return agent


def test_the_script_runs_as_documented(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'support.db'}"
    script = EXAMPLES / "support_agent.py"
    done = subprocess.run(
        [sys.executable, str(script), url], capture_output=True, text=True, check=True
    )
    assert done.stdout.startswith("support:T-1042: completed, 1 escalation(s)")
    assert "EscalationRaised     by model:scripted" in done.stdout
    assert done.stderr == ""


def test_main_tells_the_ticket_story(capsys: pytest.CaptureFixture[str]) -> None:
    main()
    lines = capsys.readouterr().out.splitlines()
    assert (
        lines[0] == "support:T-1042: completed, 1 escalation(s), highest severity high, 10 events"
    )
    assert [line.split()[1] for line in lines[-3:]] == [
        "EscalationRaised",
        "EscalationResolved",
        "TaskCompleted",
    ]


@pytest.mark.parametrize("interval", [0, 2])
def test_a_worked_ticket_reloads_from_sqlite_with_and_without_snapshots(
    tmp_path: Path, interval: int
) -> None:
    url = f"sqlite:///{tmp_path / 'support.db'}"
    desk = open_desk(url, snapshot_interval=interval)
    try:
        agent_id = work_ticket(desk, "T-7")
    finally:
        desk.close()
    reopened = open_desk(url, snapshot_interval=interval)
    try:
        agent = reopened.get_support_agent(agent_id)
    finally:
        reopened.close()
    assert (agent.status, agent.ticket, agent.escalations, agent.escalated_to) == (
        Status.COMPLETED,
        "T-7",
        1,
        None,
    )
    assert agent.highest_severity is Severity.HIGH


def test_every_support_event_is_stored_under_a_pinned_topic() -> None:
    events = [
        value
        for value in vars(SupportAgent).values()
        if isinstance(value, type)
        and issubclass(value, Aggregate.Event)
        and value is not SupportAgent.Event
    ]
    assert {"Created", "TaskStarted", "EscalationRaised"} <= {e.__name__ for e in events}
    for event_class in events:  # inherited ones too: a new Agent event must be pinned here
        pinned = f"support:SupportAgent.{event_class.__name__}@1"
        assert get_topic(event_class) == pinned
        assert resolve_topic(pinned) is event_class
    assert resolve_topic("support:SupportAgent@1") is SupportAgent


def test_one_escalation_at_a_time() -> None:
    agent = running_agent()
    agent.escalate("billing", "refund")
    with pytest.raises(AlreadyEscalatedError) as error:
        agent.escalate("legal", "contract")
    assert error.value.team == "billing"


def test_only_an_open_escalation_can_be_resolved() -> None:
    with pytest.raises(NotEscalatedError):
        running_agent().resolve_escalation("nothing to resolve")


def test_escalation_needs_a_running_task() -> None:
    with pytest.raises(NoTaskRunningError):
        SupportAgent.open("T-2").escalate("billing", "refund")


def test_the_task_cannot_complete_while_a_team_holds_the_ticket() -> None:
    agent = running_agent()
    agent.escalate("billing", "refund")
    with pytest.raises(EscalationOpenError):
        agent.complete("done")
    agent.resolve_escalation("refunded")
    agent.complete("done")
    assert agent.status is Status.COMPLETED


def test_highest_severity_keeps_the_most_urgent_escalation() -> None:
    agent = running_agent()
    for severity in (Severity.HIGH, Severity.LOW):
        agent.escalate("ops", "again", severity)
        agent.resolve_escalation("ok")
    assert (agent.escalations, agent.highest_severity) == (2, Severity.HIGH)


def test_snapshot_state_is_written_at_version_2() -> None:
    state = running_agent().snapshot_state()
    assert state["class_version"] == 2
    assert state["highest_severity"] is None


def test_the_desk_does_not_pass_a_plain_agent_off_as_a_support_agent() -> None:
    desk = open_desk()
    try:
        agent_id = desk.create_agent("plain")
        with pytest.raises(UnknownAgentError):
            desk.get_support_agent(agent_id)
    finally:
        desk.close()
