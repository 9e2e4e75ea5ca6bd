"""The stored agent always equals a plain model of it, whatever commands arrive in any order.

A hypothesis state machine drives an AgentLog on a real SQLite file (snapshots every few
versions; now and then a fresh AgentLog on the same file, as after a restart, with or
without its snapshot store). The
model below is plain Python: what each command must do, or which AgentError it must
raise (and then nothing is stored).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from agentlog.adapters.storage import open_log
from agentlog.domain import (
    Agent,
    AgentConfig,
    AgentError,
    AgentFinishedError,
    ArgsHashMismatchError,
    CallStage,
    CallStageError,
    CallState,
    CompactionRangeError,
    DuplicateCallError,
    EffectClass,
    NoTaskRunningError,
    OpenCallsError,
    PermissionRequiredError,
    Policy,
    RerunNotAllowedError,
    Status,
    TaskAlreadyRunningError,
    TokenUsage,
    ToolCallRequest,
    ToolDeniedError,
    UnknownCallError,
    args_hash,
)

Error = type[AgentError] | None
"""The AgentError a command must raise, or None if it must succeed."""

CALL_IDS = ("a", "b", "c")
TOOLS = ("read", "write", "wipe")
SNAPSHOT_INTERVAL = 4
WRONG_HASH = "f" * 64
STARTABLE = (CallStage.REQUESTED, CallStage.GRANTED, CallStage.STARTED, CallStage.OUTCOME_UNKNOWN)
FINISHABLE = (CallStage.STARTED, CallStage.OUTCOME_UNKNOWN)

texts = st.text(max_size=6)
call_ids = st.sampled_from(CALL_IDS)
requests = st.builds(
    ToolCallRequest,
    call_id=call_ids,
    tool=st.sampled_from(TOOLS),
    args=st.dictionaries(st.sampled_from("xyz"), st.integers(-3, 3) | texts, max_size=2),
)
configs = st.builds(
    AgentConfig,
    tool_policies=st.dictionaries(st.sampled_from(TOOLS), st.sampled_from(Policy)),
    default_policy=st.sampled_from(Policy),
)
usages = st.builds(TokenUsage, prompt=st.integers(0, 1000), completion=st.integers(0, 1000))


@dataclass
class Model:
    """What the agent should be: plain values, changed by plain Python."""

    config: AgentConfig
    agent_id: UUID
    version: int = 1
    status: Status = Status.IDLE
    goal: str | None = None
    steps: int = 0
    messages: int = 0
    tokens: TokenUsage = field(default_factory=TokenUsage)
    calls: dict[str, CallState] = field(default_factory=dict)
    compacted_through: int = 0
    last_error: str | None = None
    result: str | None = None
    tool_failures: int = 0
    model_failures: int = 0
    empty_answers: int = 0
    task_started: int | None = None
    """The version of the TaskStarted event (task_started_at is that event's time)."""
    started: dict[str, int] = field(default_factory=dict)
    """The version of each open call's latest ToolStarted (its started_at is that event's time)."""

    def state(self) -> dict[str, Any]:
        """The agent's expected public state, except its chain head (and calls' start times)."""
        return {
            "name": "machine",
            "config": self.config,
            "lineage": None,
            "status": self.status,
            "goal": self.goal,
            "steps": self.steps,
            "messages": self.messages,
            "tokens": self.tokens,
            "calls": self.calls,
            "compacted_through": self.compacted_through,
            "last_error": self.last_error,
            "result": self.result,
            "tool_failures": self.tool_failures,
            "model_failures": self.model_failures,
            "empty_answers": self.empty_answers,
        }

    def finished_error(self) -> Error:
        return AgentFinishedError if self.status.is_final else None

    def running_error(self) -> Error:
        if self.status is not Status.RUNNING:
            return self.finished_error() or NoTaskRunningError
        return None

    def call_error(self, call_id: str, *stages: CallStage) -> Error:
        if error := self.running_error():
            return error
        if call_id not in self.calls:
            return UnknownCallError
        return None if self.calls[call_id].stage in stages else CallStageError

    def move(self, call_id: str, **changes: Any) -> None:
        """A call moved on, by the event at the next version."""
        self.version += 1
        changes["last_version"] = self.version
        self.calls[call_id] = self.calls[call_id].model_copy(update=changes)

    def close(self, call_id: str) -> None:
        """A call ended by the event at the next version (a tool outcome, unless denied)."""
        self.version += 1
        del self.calls[call_id]
        self.started.pop(call_id, None)

    def tool_outcome(self, error: str | None) -> None:
        self.messages += 1
        if error is None:
            self.tool_failures = 0
        else:
            self.tool_failures, self.last_error = self.tool_failures + 1, error


class AgentMachine(RuleBasedStateMachine):
    """Commands in any order against a real SQLite file; the model says what must happen."""

    def __init__(self) -> None:
        super().__init__()
        self.tmp = tempfile.TemporaryDirectory()
        self.url = f"sqlite:///{Path(self.tmp.name) / 'agentlog.db'}"
        self.app = open_log(self.url, snapshot_interval=SNAPSHOT_INTERVAL)
        self.model: Model | None = None

    def teardown(self) -> None:
        self.app.close()
        self.tmp.cleanup()

    @property
    def m(self) -> Model:
        assert self.model is not None  # set by the initialize rule
        return self.model

    def check(self, expected: Error, command: Callable[[], None]) -> bool:
        """Run the command; it must raise exactly ``expected``, or succeed if that is None."""
        if expected is None:
            command()
            return True
        with pytest.raises(AgentError) as raised:
            command()
        assert type(raised.value) is expected, raised.value
        return False

    def on_agent(self, command: Callable[[Agent], None]) -> Callable[[], None]:
        """Load, run a command on the aggregate, save (for commands AgentLog lacks)."""

        def run() -> None:
            agent = self.app.get(self.m.agent_id)
            command(agent)
            self.app.save(agent)

        return run

    # Calls are recorded where a worker records them (after the model's response) and then
    # moved on a few checked steps at once: drawn one rule at a time, a call would rarely
    # get through its protocol within 25 steps.

    @initialize(config=configs, goal=texts, start=st.integers(0, 3))
    def create(self, config: AgentConfig, goal: str, start: int) -> None:
        """A new agent; most runs start its task at once (an idle agent refuses most commands)."""
        self.model = Model(config, self.app.create_agent("machine", config))
        if start:
            self.start_task(goal, "user")

    @rule(goal=texts, actor=st.sampled_from(["user", "ops"]))
    def start_task(self, goal: str, actor: str) -> None:
        m = self.m
        running = TaskAlreadyRunningError if m.status is Status.RUNNING else None
        if self.check(
            m.finished_error() or running,
            lambda: self.app.start_task(m.agent_id, goal, actor=actor),
        ):
            m.version, m.status, m.goal = m.version + 1, Status.RUNNING, goal
            m.messages, m.task_started = m.messages + 1, m.version

    @rule(text=texts, actor=st.sampled_from(["user", "ops"]))
    def send(self, text: str, actor: str) -> None:
        m = self.m
        if self.check(m.finished_error(), lambda: self.app.send(m.agent_id, text, actor=actor)):
            m.version, m.messages = m.version + 1, m.messages + 1

    @rule(
        tool_calls=st.lists(requests, max_size=2),
        usage=usages,
        text=st.sampled_from(["ok", "", " \n"]),
        finish=st.sampled_from([None, "stop", "length", "tool_calls"]),
        data=st.data(),
    )
    def model_responds(
        self,
        tool_calls: list[ToolCallRequest],
        usage: TokenUsage,
        text: str,
        finish: str | None,
        data: st.DataObject,
    ) -> None:
        """The model answers; as a worker would, record each call it asked for."""
        m = self.m
        ids = [c.call_id for c in tool_calls]
        duplicate = len(set(ids)) < len(ids) or any(i in m.calls for i in ids)
        respond = self.on_agent(
            lambda a: a.record_model_response(
                text, model="m", tool_calls=tuple(tool_calls), usage=usage, finish_reason=finish
            )
        )
        if self.check(m.running_error() or (DuplicateCallError if duplicate else None), respond):
            m.version, m.steps, m.messages = m.version + 1, m.steps + 1, m.messages + 1
            m.tokens, m.model_failures = m.tokens + usage, 0
            says_nothing = text in ("", " \n") or finish == "length"
            m.empty_answers = m.empty_answers + 1 if says_nothing and not tool_calls else 0
            for request in tool_calls:
                self.record_call(request, data)

    @rule(kind=st.sampled_from(["http", "timeout"]), error=texts)
    def model_fails(self, kind: str, error: str) -> None:
        m = self.m
        fail = self.on_agent(lambda a: a.record_model_failure(kind, error, model="m"))
        if self.check(m.running_error(), fail):
            m.version, m.model_failures = m.version + 1, m.model_failures + 1
            m.last_error = f"{kind}: {error}"

    @rule(request=requests, reason=texts)
    def reject_call(self, request: ToolCallRequest, reason: str) -> None:
        """The runtime refuses a requested call (unknown tool, bad arguments)."""
        m = self.m
        if self.check(
            m.running_error(), self.on_agent(lambda a: a.reject_tool_call(request, reason))
        ):
            m.version += 1
            m.tool_outcome(reason)

    @rule(limit=st.sampled_from(["max_steps", "budget"]), value=st.integers(0, 9))
    def reach_limit(self, limit: str, value: int) -> None:
        m = self.m
        if self.check(m.running_error(), self.on_agent(lambda a: a.reach_limit(limit, value))):
            m.version += 1

    @rule(data=st.data())
    def call_tool(self, data: st.DataObject) -> None:
        """A call no model response asked for (it may reuse an open call's id)."""
        self.record_call(data.draw(requests, "request"), data)

    def record_call(self, request: ToolCallRequest, data: st.DataObject) -> None:
        """Record a call, then move it on a few steps (each step is still checked)."""
        effect = data.draw(st.sampled_from(EffectClass), "effect")
        policy = data.draw(st.none() | st.sampled_from(Policy), "policy")
        m = self.m
        duplicate = DuplicateCallError if request.call_id in m.calls else None
        if self.check(
            m.running_error() or duplicate,
            lambda: self.app.call_tool(m.agent_id, request, effect, policy),
        ):
            m.version += 1
            m.calls[request.call_id] = CallState(
                tool=request.tool,
                args_hash=args_hash(request.args),
                effect=effect,
                policy=policy or m.config.policy_for(request.tool),
                stage=CallStage.REQUESTED,
                last_version=m.version,
                called_version=m.version,
            )
            self.advance_call(request.call_id, data, data.draw(st.integers(0, 4), "moves"))

    # The tool-call commands. Each draws its own arguments; two rules below pick them.

    def request_permission(self, call_id: str, data: st.DataObject) -> None:
        m = self.m
        error = m.call_error(call_id, CallStage.REQUESTED)
        if error is None and m.calls[call_id].policy is not Policy.ASK:
            error = CallStageError
        if self.check(error, self.on_agent(lambda a: a.request_permission(call_id))):
            m.move(call_id, stage=CallStage.AWAITING_PERMISSION)

    def grant(self, call_id: str, data: st.DataObject) -> None:
        m = self.m
        hash_, wrong = self.draw_hash(call_id, data)
        error = m.call_error(call_id, CallStage.AWAITING_PERMISSION)
        if self.check(
            error or wrong,
            lambda: self.app.grant(m.agent_id, call_id, approver="ana", args_hash=hash_),
        ):
            m.move(call_id, stage=CallStage.GRANTED, approver="ana")

    def deny(self, call_id: str, data: st.DataObject) -> None:
        m = self.m
        hash_, wrong = self.draw_hash(call_id, data)
        error = m.call_error(call_id, CallStage.REQUESTED, CallStage.AWAITING_PERMISSION)
        deny = self.on_agent(lambda a: a.deny(call_id, hash_, approver="bo"))
        if self.check(error or wrong, deny):
            m.close(call_id)

    def draw_hash(self, call_id: str, data: st.DataObject) -> tuple[str | None, Error]:
        """The args hash an approver names (omitted, the recorded one, or a wrong one)."""
        given = data.draw(st.sampled_from(["omitted", "recorded", "wrong"]), "args hash")
        call = self.m.calls.get(call_id)
        if given == "omitted" or call is None:
            return None, None
        if given == "recorded":
            return call.args_hash, None
        return WRONG_HASH, ArgsHashMismatchError

    def start_tool(self, call_id: str, data: st.DataObject) -> None:
        m = self.m
        error = m.call_error(call_id, *STARTABLE)
        call = m.calls.get(call_id)
        if error is None and call is not None:
            if call.policy is Policy.DENY:
                error = ToolDeniedError
            elif call.policy is Policy.ASK and call.approver is None:
                error = PermissionRequiredError
            elif call.stage is CallStage.STARTED and call.effect is EffectClass.SIDE_EFFECTING:
                error = RerunNotAllowedError
        if self.check(error, self.on_agent(lambda a: a.start_tool(call_id, worker_id="w"))):
            assert call is not None
            key = call.idempotency_key or f"{m.agent_id}:{call.called_version}:{call_id}"
            m.move(call_id, stage=CallStage.STARTED, attempt=call.attempt + 1, idempotency_key=key)
            m.started[call_id] = m.version

    def succeed(self, call_id: str, data: st.DataObject) -> None:
        m = self.m
        result = data.draw(st.none() | st.integers() | texts, "result")
        if self.check(
            m.call_error(call_id, *FINISHABLE),
            lambda: self.app.record_result(m.agent_id, call_id, result),
        ):
            m.close(call_id)
            m.tool_outcome(None)

    def fail_tool(self, call_id: str, data: st.DataObject) -> None:
        m = self.m
        error_text = data.draw(texts, "error")
        command = self.on_agent(lambda a: a.fail_tool(call_id, error_text))
        if self.check(m.call_error(call_id, *FINISHABLE), command):
            m.close(call_id)
            m.tool_outcome(error_text)

    def settle(self, call_id: str, data: st.DataObject) -> None:
        m = self.m
        happened = data.draw(st.booleans(), "happened")
        if self.check(
            m.call_error(call_id, CallStage.OUTCOME_UNKNOWN),
            lambda: self.app.settle(m.agent_id, call_id, happened=happened, by="ops"),
        ):
            m.close(call_id)
            m.tool_outcome(None if happened else "settled by ops: the effect did not happen")

    def mark_outcome_unknown(self, call_id: str, data: st.DataObject) -> None:
        m = self.m
        command = self.on_agent(lambda a: a.mark_outcome_unknown(call_id))
        if self.check(m.call_error(call_id, CallStage.STARTED), command):
            m.move(call_id, stage=CallStage.OUTCOME_UNKNOWN)

    def refuse(self, call_id: str, data: st.DataObject) -> None:
        m = self.m
        command = self.on_agent(lambda a: a.refuse(call_id, "tampered"))
        if self.check(m.call_error(call_id, *STARTABLE), command):
            m.close(call_id)
            m.tool_outcome("tampered")

    def leave_to_person(self, call_id: str, data: st.DataObject) -> None:
        m = self.m
        error = m.call_error(call_id, CallStage.OUTCOME_UNKNOWN)
        if error is None and m.calls[call_id].needs_person:
            error = CallStageError
        command = self.on_agent(lambda a: a.leave_to_person(call_id, "cannot tell"))
        if self.check(error, command):
            m.move(call_id, needs_person=True)

    def call_commands(self) -> dict[str, Callable[[str, st.DataObject], None]]:
        return {
            "refuse": self.refuse,
            "leave_to_person": self.leave_to_person,
            "request_permission": self.request_permission,
            "grant": self.grant,
            "deny": self.deny,
            "start_tool": self.start_tool,
            "succeed": self.succeed,
            "fail_tool": self.fail_tool,
            "mark_outcome_unknown": self.mark_outcome_unknown,
            "settle": self.settle,
        }

    @rule(data=st.data())
    def any_call_command(self, data: st.DataObject) -> None:
        """Any tool-call command on any call id: open (more likely), closed or never used."""
        call_id = data.draw(st.sampled_from([*sorted(self.m.calls), *CALL_IDS]), "call id")
        commands = self.call_commands()
        name = data.draw(st.sampled_from(sorted(commands)), "command")
        commands[name](call_id, data)

    @precondition(lambda self: bool(self.m.calls))
    @rule(data=st.data())
    def advance(self, data: st.DataObject) -> None:
        """Move an open call on a few steps (rules drawn at random rarely take it far)."""
        call_id = data.draw(st.sampled_from(sorted(self.m.calls)), "open call")
        self.advance_call(call_id, data, data.draw(st.integers(1, 4), "moves"))

    def advance_call(self, call_id: str, data: st.DataObject, moves: int) -> None:
        """Up to ``moves`` commands on an open call, mostly what its stage and policy allow."""
        for _ in range(moves):
            call = self.m.calls.get(call_id)
            if call is None:
                return
            finish, unknown = ["succeed", "fail_tool"], "mark_outcome_unknown"
            allowed = {Policy.ASK: "request_permission", Policy.ALLOW: "start_tool"}
            choices = {
                CallStage.REQUESTED: [allowed.get(call.policy, "deny")] * 2 + ["start_tool"],
                CallStage.AWAITING_PERMISSION: ["grant", "grant", "deny"],
                CallStage.GRANTED: ["start_tool", "start_tool", "refuse"],
                CallStage.STARTED: [*finish, "start_tool", unknown, unknown],
                CallStage.OUTCOME_UNKNOWN: [*finish, "start_tool", "settle", "leave_to_person"],
            }
            name = data.draw(st.sampled_from(choices[call.stage]), "command")
            self.call_commands()[name](call_id, data)

    @rule(back=st.integers(-1, 6), summarizer=st.sampled_from(["s", "model:m"]))
    def compact(self, back: int, summarizer: str) -> None:
        m = self.m
        through = m.version - back
        in_range = m.compacted_through < through <= m.version
        error = m.finished_error() or (None if in_range else CompactionRangeError)
        command = self.on_agent(lambda a: a.compact(through, "summary", summarizer=summarizer))
        if self.check(error, command):
            m.version, m.compacted_through = m.version + 1, through

    @precondition(lambda self: self.m.version >= 10)  # not too soon: a finished agent refuses all
    @rule(how=st.sampled_from(["complete", "complete", "fail", "cancel"]), text=texts)
    def finish(self, how: str, text: str) -> None:
        m = self.m
        last_error = m.last_error
        if how == "complete":
            error = m.running_error() or (OpenCallsError if m.calls else None)
            done = self.check(error, lambda: self.app.complete(m.agent_id, text))
            status = Status.COMPLETED
        elif how == "fail":
            done = self.check(m.finished_error(), self.on_agent(lambda a: a.fail(text)))
            status, last_error = Status.FAILED, text
        else:
            done = self.check(m.finished_error(), lambda: self.app.cancel(m.agent_id, text))
            status = Status.CANCELLED
        if done:
            m.version, m.status, m.result, m.last_error = m.version + 1, status, text, last_error

    @rule(snapshot_interval=st.sampled_from([0, SNAPSHOT_INTERVAL]))
    def restart(self, snapshot_interval: int) -> None:
        """A new AgentLog on the same file, as a new process would open it."""
        self.app.close()
        self.app = open_log(self.url, snapshot_interval=snapshot_interval)

    @invariant()
    def stored_agent_matches_model(self) -> None:
        if self.model is None:
            return
        agent = self.app.get(self.model.agent_id)
        state = agent.state()
        head = state.pop("head_hash")
        expected = self.model.state()
        expected["calls"] = {
            call_id: call.model_copy(update={"started_at": self.start_time(call_id)})
            for call_id, call in self.model.calls.items()
        }
        expected["task_started_at"] = self.event_time(self.m.task_started)
        assert state == expected
        assert agent.version == self.model.version
        (last,) = self.app.events.get(agent.id, desc=True, limit=1)
        assert isinstance(last, Agent.Event)
        assert head == last.digest

    def start_time(self, call_id: str) -> datetime | None:
        """When the call's latest ToolStarted event happened (None if it never started)."""
        return self.event_time(self.m.started.get(call_id))

    def event_time(self, version: int | None) -> datetime | None:
        """When the event at ``version`` happened (None for no version)."""
        if version is None:
            return None
        (event,) = self.app.events.get(self.m.agent_id, gt=version - 1, lte=version)
        timestamp: datetime = event.timestamp  # type: ignore[attr-defined]
        return timestamp


TestAgentMachine = settings(stateful_step_count=25)(AgentMachine).TestCase
