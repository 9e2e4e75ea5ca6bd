"""The Agent's rules: each command checks before it records, and says why it refused."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest

from agentlog.domain import (
    Agent,
    AgentConfig,
    AgentFinishedError,
    ArgsHashMismatchError,
    CallStage,
    CallStageError,
    CompactionRangeError,
    DuplicateCallError,
    EffectClass,
    InvalidEventDataError,
    NoTaskRunningError,
    OpenCallsError,
    PermissionRequiredError,
    Policy,
    RerunNotAllowedError,
    Status,
    TaskAlreadyRunningError,
    ToolCallRequest,
    ToolDeniedError,
    UnknownCallError,
    args_hash,
)

CONFIG = AgentConfig(
    tool_policies={"read": Policy.ALLOW, "rm": Policy.ASK, "format_disk": Policy.DENY}
)


def running_agent() -> Agent:
    agent = Agent.create("a", CONFIG)
    agent.start_task("tidy up")
    return agent


def with_call(
    tool: str = "rm", effect: EffectClass = EffectClass.SIDE_EFFECTING, call_id: str = "c1"
) -> Agent:
    agent = running_agent()
    request = ToolCallRequest(call_id=call_id, tool=tool, args={"path": "/tmp/x"})
    agent.record_model_response("on it", model="m", tool_calls=(request,))
    agent.call_tool(request, effect=effect)
    return agent


def test_a_new_agent_is_idle_with_its_config() -> None:
    agent = Agent.create("a", CONFIG)
    assert (agent.status, agent.name, agent.config, agent.version) == (
        Status.IDLE,
        "a",
        CONFIG,
        1,
    )


def test_model_response_needs_a_running_task() -> None:
    agent = Agent.create("a")
    with pytest.raises(NoTaskRunningError):
        agent.record_model_response("hi", model="m")


def test_second_task_while_running_is_refused() -> None:
    agent = running_agent()
    with pytest.raises(TaskAlreadyRunningError):
        agent.start_task("another")


def test_policy_comes_from_config_when_not_given() -> None:
    agent = with_call("rm")
    assert agent.calls["c1"].policy is Policy.ASK
    assert agent.calls["c1"].args_hash == args_hash({"path": "/tmp/x"})


def test_duplicate_call_id_is_refused() -> None:
    agent = with_call()
    with pytest.raises(DuplicateCallError):
        agent.call_tool(ToolCallRequest(call_id="c1", tool="read"), effect=EffectClass.PURE)


def test_start_without_grant_when_policy_asks_is_refused() -> None:
    agent = with_call("rm")
    with pytest.raises(PermissionRequiredError):
        agent.start_tool("c1", worker_id="w")
    agent.request_permission("c1")
    with pytest.raises(CallStageError):
        agent.start_tool("c1", worker_id="w")


def test_grant_bound_to_other_arguments_is_refused() -> None:
    agent = with_call("rm")
    agent.request_permission("c1")
    with pytest.raises(ArgsHashMismatchError) as refused:
        agent.grant("c1", args_hash({"path": "/"}), approver="bob")
    assert refused.value.call_id == "c1"
    agent.grant("c1", args_hash({"path": "/tmp/x"}), approver="bob")
    agent.start_tool("c1", worker_id="w")
    assert agent.calls["c1"].stage is CallStage.STARTED


def test_denied_call_is_closed_and_never_starts() -> None:
    agent = with_call("rm")
    agent.request_permission("c1")
    agent.deny("c1", approver="bob", reason="no")
    assert "c1" not in agent.calls
    with pytest.raises(UnknownCallError):
        agent.start_tool("c1", worker_id="w")


def test_tool_denied_by_policy_never_starts() -> None:
    agent = with_call("format_disk")
    with pytest.raises(ToolDeniedError):
        agent.start_tool("c1", worker_id="w")


def test_result_for_unknown_call_is_refused() -> None:
    agent = running_agent()
    with pytest.raises(UnknownCallError) as refused:
        agent.succeed("nope", "x")
    assert refused.value.call_id == "nope"


def test_result_before_start_is_refused() -> None:
    agent = with_call("read", EffectClass.PURE)
    with pytest.raises(CallStageError):
        agent.succeed("c1", "x")


def test_pure_call_may_rerun_with_the_same_idempotency_key() -> None:
    agent = with_call("read", EffectClass.PURE)
    agent.start_tool("c1", worker_id="w1")
    key = agent.calls["c1"].idempotency_key
    agent.start_tool("c1", worker_id="w2")
    assert (agent.calls["c1"].attempt, agent.calls["c1"].idempotency_key) == (2, key)


def test_side_effecting_call_is_never_rerun_blindly() -> None:
    agent = with_call("read", EffectClass.SIDE_EFFECTING)
    agent.start_tool("c1", worker_id="w1")
    with pytest.raises(RerunNotAllowedError):
        agent.start_tool("c1", worker_id="w2")
    agent.mark_outcome_unknown("c1")
    assert agent.calls["c1"].stage is CallStage.OUTCOME_UNKNOWN
    agent.succeed("c1", "reconciled: it had happened")
    assert agent.calls == {}


def test_complete_with_open_calls_is_refused() -> None:
    agent = with_call("read", EffectClass.PURE)
    with pytest.raises(OpenCallsError):
        agent.complete("done")


def test_nothing_happens_after_completion() -> None:
    agent = running_agent()
    agent.complete("done")
    commands: list[Callable[[], None]] = [
        lambda: agent.receive_user_message("hello?"),
        lambda: agent.start_task("again"),
        agent.cancel,
        lambda: agent.succeed("c1", "x"),
        lambda: agent.compact(1, "s", summarizer="m"),
    ]
    for command in commands:
        with pytest.raises(AgentFinishedError):
            command()
    assert agent.status is Status.COMPLETED


def test_compaction_must_move_forward_within_history() -> None:
    agent = running_agent()
    with pytest.raises(CompactionRangeError):
        agent.compact(agent.version + 1, "s", summarizer="m")
    agent.compact(2, "summary", summarizer="m")
    with pytest.raises(CompactionRangeError):
        agent.compact(2, "again", summarizer="m")
    assert agent.compacted_through == 2


def test_every_event_records_actor_and_causation() -> None:
    agent = with_call("rm")
    agent.request_permission("c1")
    agent.grant("c1", approver="alice")
    events = agent.collect_events()
    by_type = {type(e).__name__: e for e in events}
    assert by_type["TaskStarted"].actor == "user"
    assert by_type["ModelResponded"].actor == "model:m"
    granted = by_type["PermissionGranted"]
    assert granted.actor == "alice"
    assert granted.caused_by == by_type["PermissionRequested"].originator_version


def test_each_event_chains_to_its_predecessor() -> None:
    agent = with_call("rm")
    events = agent.collect_events()
    for before, after in itertools.pairwise(events):
        assert after.prev_hash == before.digest
    assert agent.head_hash == events[-1].digest


def test_data_no_event_can_hold_is_refused_with_an_agent_error() -> None:
    agent = running_agent()
    version = agent.version
    with pytest.raises(InvalidEventDataError):
        agent.receive_user_message("bad \ud800")
    with pytest.raises(InvalidEventDataError):
        agent.call_tool(
            ToolCallRequest(call_id="c", tool="read", args={"x": float("nan")}),
            effect=EffectClass.PURE,
        )
    assert agent.version == version  # nothing was recorded
