"""No tool call runs without its permission, whatever the model asks and people decide.

On a real SQLite store, hypothesis picks the tools' own policies, the agent config's
overrides, a script of model decisions (known and unknown tools, good and bad
arguments), and a sequence of actions: worker steps, grants and denials (some bound to
other arguments), and attempts to start calls behind the rules' back. Then the log and
the execution counters outside the store must agree that no 'ask' call ran without a
grant bound to its exact arguments and no 'deny' call ran. Both only grow, so a breach
at any moment is still visible at the end.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from hypothesis import event, given, settings
from hypothesis import strategies as st
from pydantic import JsonValue

from agentlog.adapters.scripted import ScriptedModel
from agentlog.adapters.storage import open_log
from agentlog.domain import (
    Agent,
    AgentConfig,
    AgentError,
    ArgsHashMismatchError,
    CallStage,
    PermissionRequiredError,
    Policy,
    ToolCallRequest,
    ToolDeniedError,
    args_hash,
)
from agentlog.domain.ports import Decision
from agentlog.domain.runtime import Runtime

from counting_tools import Ledger, counting_tools

SCRATCH = "/dev/shm" if Path("/dev/shm").is_dir() else None
"""Where stores go: a RAM disk if there is one (this is about rules, not durability)."""
TOOLS = ["pure", "idempotent", "side_effecting"]
policies = st.sampled_from(list(Policy))
labels = st.fixed_dictionaries({"label": st.text(max_size=4)})
invalid = st.just({"label": 7})  # the call is rejected (as is one of a missing tool)
arguments = st.one_of(labels, labels, labels, labels, labels, labels, labels, invalid)
requests = st.tuples(st.sampled_from([*TOOLS * 3, "missing"]), arguments)
scripts = st.lists(st.lists(requests, min_size=1, max_size=3), min_size=2, max_size=4)
Script = list[list[tuple[str, dict[str, JsonValue]]]]
picks = st.integers(0, 3)
actions = st.lists(
    st.one_of(
        st.tuples(st.just("advance"), st.integers(1, 4), st.just(True)),
        st.tuples(st.just("advance"), st.integers(1, 4), st.just(True)),
        st.tuples(st.just("grant"), picks, st.sampled_from([True, True, False])),
        st.tuples(st.just("deny"), picks, st.just(True)),
        st.tuples(st.just("start_behind_the_rules_back"), picks, st.just(True)),
    ),
    min_size=10,
    max_size=30,
)


def decisions(script: Script) -> list[Decision]:
    """Turns of tool calls (call ids unique across the script), then the model is done."""
    turns = [
        Decision(
            text=f"turn {t}",
            tool_calls=tuple(
                ToolCallRequest(call_id=f"c{t}.{i}", tool=tool, args=args)
                for i, (tool, args) in enumerate(calls)
            ),
        )
        for t, calls in enumerate(script)
    ]
    return [*turns, Decision(text="done", done=True)]


class World:
    """One agent on a fresh SQLite store, with counting tools and a scripted model."""

    def __init__(self, own: dict[str, Policy], config: dict[str, Policy], script: Script) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="agentlog-permissions-", dir=SCRATCH))
        self.log = open_log(f"sqlite:///{self.folder / 'agentlog.db'}")
        self.ledger = Ledger(self.folder / "ledger")
        model = ScriptedModel(decisions(script))
        tools = counting_tools(self.ledger, delay=0.0, policies=own)
        self.runtime = Runtime(self.log, model, tools, worker_id="w")
        self.policy = own | config
        self.requested = {c.call_id: c.args for d in model.decisions for c in d.tool_calls}
        agent_config = AgentConfig(tool_policies=config, max_tool_failures=10)
        self.agent_id = self.log.create_agent("a", agent_config)
        self.log.start_task(self.agent_id, "do as you are told")
        self.runtime.advance(self.agent_id)  # the model's first turn: calls to decide on

    def act(self, action: tuple[str, int, bool]) -> None:
        """Do one drawn action."""
        name, n, flag = action
        if name == "advance":
            self.advance(n)
        elif (call_id := self._pick(n, waiting_first=name == "grant")) is not None:
            if name == "grant":
                self.grant(call_id, honest=flag)
            elif name == "deny":
                self.deny(call_id)
            else:
                self.start_behind_the_rules_back(call_id)

    def advance(self, steps: int) -> None:
        """A worker takes a few steps, or fewer if the agent waits for someone."""
        for _ in range(steps):
            if not self.runtime.advance(self.agent_id).progressed:
                return

    def grant(self, call_id: str, *, honest: bool) -> None:
        """A person grants a call, having seen its arguments (or other ones)."""
        call = self.log.get(self.agent_id).calls[call_id]
        seen = self.requested[call_id] if honest else {"label": "something else"}
        try:
            self.log.grant(self.agent_id, call_id, approver="ann", args_hash=args_hash(seen))
        except ArgsHashMismatchError:
            assert not honest
            event("a grant bound to other arguments was refused")
        except AgentError:
            assert call.stage is not CallStage.AWAITING_PERMISSION
        else:
            assert honest
            assert call.stage is CallStage.AWAITING_PERMISSION
            event("a call was granted")

    def deny(self, call_id: str) -> None:
        """A person refuses a call (only one not started can be refused)."""
        stage = self.log.get(self.agent_id).calls[call_id].stage
        try:
            self.log.deny(self.agent_id, call_id, approver="bob", reason="no")
        except AgentError:
            assert stage not in (CallStage.REQUESTED, CallStage.AWAITING_PERMISSION)

    def start_behind_the_rules_back(self, call_id: str) -> None:
        """A rogue worker tries to claim a call; the aggregate refuses unpermitted ones."""
        agent = self.log.get(self.agent_id)
        call = agent.calls[call_id]
        try:
            agent.start_tool(call_id, worker_id="rogue")  # never saved
        except PermissionRequiredError:
            assert call.policy is Policy.ASK
            assert call.approver is None
            event("a rogue start of an ungranted call was refused")
        except ToolDeniedError:
            assert call.policy is Policy.DENY
        except AgentError:
            pass  # e.g. a side-effecting call that is running
        else:
            assert call.policy is Policy.ALLOW or call.approver is not None

    def check(self) -> None:
        """The log: every start of an 'ask' call follows a grant of its exact arguments;
        no 'deny' call starts. The counters: nothing ran that the log did not start."""
        called: dict[str, Agent.ToolCalled] = {}
        granted: dict[str, str] = {}
        started: dict[str, str] = {}
        for fact in self.log.events_of(self.agent_id):
            if isinstance(fact, Agent.PermissionDenied):
                event(f"a call was denied by {fact.approver}")
            elif isinstance(fact, Agent.ToolCalled):
                called[fact.call_id] = fact
                assert fact.policy is self.policy.get(fact.tool, Policy.ALLOW)
                assert fact.args_hash == args_hash(self.requested[fact.call_id])
            elif isinstance(fact, Agent.PermissionGranted):
                granted[fact.call_id] = fact.args_hash
            elif isinstance(fact, Agent.ToolStarted):
                self._check_start(called[fact.call_id], granted)
                started[fact.idempotency_key] = fact.call_id
            elif isinstance(fact, Agent.ToolSucceeded):
                assert fact.result == {  # the tool ran with the arguments that were granted
                    "label": self.requested[fact.call_id]["label"],
                    "tool": called[fact.call_id].tool,
                }
        for key in self.ledger.runs():
            assert key in started, f"{key} ran without a start in the log"
            self._check_start(called[started[key]], granted)
            event(f"a call under policy {called[started[key]].policy} ran")

    def _check_start(self, call: Agent.ToolCalled, granted: dict[str, str]) -> None:
        assert call.policy is not Policy.DENY, f"{call.call_id} is denied by policy"
        if call.policy is Policy.ASK:
            assert granted.get(call.call_id) == call.args_hash, f"{call.call_id} not granted"

    def _pick(self, n: int, *, waiting_first: bool = False) -> str | None:
        agent = self.log.get(self.agent_id)
        calls = sorted((waiting_first and agent.awaiting_permission) or agent.calls)
        return calls[n % len(calls)] if calls else None

    def close(self) -> None:
        """Close the store and remove its folder."""
        self.log.close()
        shutil.rmtree(self.folder, ignore_errors=True)


@settings(deadline=None, max_examples=max(100, settings().max_examples))
@given(
    own=st.fixed_dictionaries({t: policies for t in TOOLS}),
    config=st.dictionaries(st.sampled_from(TOOLS), policies),
    script=scripts,
    actions=actions,
)
def test_no_ask_call_runs_without_a_grant_of_its_arguments_and_no_deny_call_runs(
    own: dict[str, Policy],
    config: dict[str, Policy],
    script: Script,
    actions: list[tuple[str, int, bool]],
) -> None:
    world = World(own, config, script)
    try:
        for action in actions:
            world.act(action)
        world.check()  # the log and the counters only grow: a breach anywhere stays visible
    finally:
        world.close()
