"""No tool call runs without its permission, whatever the model asks and people decide.

On a real SQLite store, hypothesis picks the custom tools' own policies, the agent's
default policy (or none) and per-tool overrides (of custom and built-in tools), a script
of model decisions (known and unknown tools, multi-key arguments in any key order, bad
arguments), and a sequence of actions: worker steps, grants and denials (many bound to
other arguments, or to the same arguments with their keys in another order), attempts
to start calls behind the rules' back, and edits of a call's stored arguments. Then the
log and what the tools really ran (recorded outside the store, with the arguments they
got) must agree: a call runs only if its effective policy is 'allow' or a grant of its
exact arguments exists, and only with the arguments the model asked for.

The effective policy, as docs/runtime.md states it: the agent's explicit policy for the
tool, else the agent's default policy, else the tool's own.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import event, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, JsonValue

from agentlog.adapters.scripted import ScriptedModel
from agentlog.adapters.storage import open_log, sqlite_path
from agentlog.adapters.tools import builtin_tools
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
from agentlog.domain.ports import Decision, Tool
from agentlog.domain.runtime import Runtime

from counting_tools import Ledger, counting_tools

SCRATCH = "/dev/shm" if Path("/dev/shm").is_dir() else None
"""Where stores go: a RAM disk if there is one (this is about rules, not durability)."""
TOOLS = ["pure", "idempotent", "side_effecting"]
BUILTINS = ["read_file", "write_file", "calculator", "clock"]
BUILTIN_POLICY = {
    "read_file": Policy.ALLOW,
    "write_file": Policy.ASK,
    "calculator": Policy.ALLOW,
    "clock": Policy.ALLOW,
}
"""The built-in tools' own policies, as documented (docs/runtime.md)."""
policies = st.sampled_from(list(Policy))
names = st.text("abcxyz", min_size=1, max_size=3)
extras = st.dictionaries(names, st.integers(-2, 2) | st.text(max_size=3), max_size=3)


def labelled(extra: dict[str, JsonValue], label: str, first: bool) -> dict[str, JsonValue]:
    """A label among other keys, first or last: key order must not matter anywhere."""
    rest = {k: v for k, v in extra.items() if k != "label"}
    return {"label": label, **rest} if first else {**rest, "label": label}


labels = st.builds(labelled, extras, st.text(max_size=4), st.booleans())
invalid = st.just({"label": 7})  # the call is rejected (as is one of a missing tool)
builtin_args = {
    "read_file": st.fixed_dictionaries({"path": st.sampled_from(["a.txt", "b.txt"])}),
    "write_file": st.fixed_dictionaries(
        {"content": st.text("xy", max_size=3), "path": st.sampled_from(["a.txt", "b.txt"])}
    ),
    "calculator": st.fixed_dictionaries({"expression": st.sampled_from(["1+1", "2*3"])}),
    "clock": st.just({}),
}
custom = st.tuples(st.sampled_from(TOOLS), st.one_of(*[labels] * 7, invalid))
builtin = st.sampled_from(BUILTINS).flatmap(lambda t: st.tuples(st.just(t), builtin_args[t]))
requests = st.one_of(custom, custom, builtin, st.tuples(st.just("missing"), labels))
scripts = st.lists(st.lists(requests, min_size=1, max_size=3), min_size=2, max_size=4)
Script = list[list[tuple[str, dict[str, JsonValue]]]]
picks = st.integers(0, 3)
actions = st.lists(
    st.one_of(
        st.tuples(st.just("advance"), st.integers(1, 4), st.just(True)),
        st.tuples(st.just("advance"), st.integers(1, 4), st.just(True)),
        st.tuples(st.just("grant"), picks, st.sampled_from([True, True, False, False])),
        st.tuples(st.just("grant"), picks, st.just(False)),
        st.tuples(st.just("deny"), picks, st.just(True)),
        st.tuples(st.just("start_behind_the_rules_back"), picks, st.just(True)),
        st.tuples(st.just("start_behind_the_rules_back"), picks, st.just(True)),
        st.tuples(st.just("tamper"), picks, st.booleans()),
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


class Recorded:
    """A tool (custom or built-in) that notes every run, with the arguments it got."""

    def __init__(self, tool: Tool, runs: list[tuple[str, str, dict[str, Any]]]) -> None:
        self.tool, self.runs = tool, runs
        self.name, self.description, self.args_model = tool.name, tool.description, tool.args_model
        self.effect, self.policy = tool.effect, tool.policy

    def run(self, args: BaseModel, idempotency_key: str) -> JsonValue:
        """Note the run, then run the tool."""
        self.runs.append((self.name, idempotency_key, args.model_dump()))
        return self.tool.run(args, idempotency_key)

    def reconcile(self, idempotency_key: str) -> bool | None:
        """The tool's own answer."""
        return self.tool.reconcile(idempotency_key)


def expected_policy(tool: str, own: dict[str, Policy], config: AgentConfig) -> Policy:
    """The documented precedence: explicit per-tool > the agent's default > the tool's own."""
    if tool in config.tool_policies:
        return config.tool_policies[tool]
    if config.default_policy is not None:
        return config.default_policy
    return own[tool]


class World:
    """One agent on a fresh SQLite store, with counting and built-in tools, and a script."""

    def __init__(self, own: dict[str, Policy], config: AgentConfig, script: Script) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="agentlog-permissions-", dir=SCRATCH))
        self.url = f"sqlite:///{self.folder / 'agentlog.db'}"
        self.log = open_log(self.url, snapshot_interval=0)
        self.ledger = Ledger(self.folder / "ledger")
        model = ScriptedModel(decisions(script))
        sandbox = self.folder / "sandbox"
        sandbox.mkdir()
        for name in ("a.txt", "b.txt"):
            (sandbox / name).write_text(name)
        self.runs: list[tuple[str, str, dict[str, Any]]] = []
        plain = counting_tools(self.ledger, delay=0.0, policies=own) | builtin_tools(sandbox)
        self.tools = {name: Recorded(tool, self.runs) for name, tool in plain.items()}
        self.runtime = Runtime(self.log, model, self.tools, worker_id="w")
        self.own = own | BUILTIN_POLICY
        self.config = config
        self.requested = {c.call_id: c.args for d in model.decisions for c in d.tool_calls}
        self.tampered: set[str] = set()
        self.agent_id = self.log.create_agent("a", config)
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
            elif name == "tamper":
                self.tamper(call_id, also_hash=flag)
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
        asked = self.requested[call_id]
        reordered = dict(reversed(list(asked.items())))  # what a person saw, keys in any order
        seen = reordered if honest else {**asked, "sneaked": "in"}
        try:
            self.log.grant(self.agent_id, call_id, approver="ann", args_hash=args_hash(seen))
        except ArgsHashMismatchError:
            assert not honest or call_id in self.tampered
            event("a grant bound to other arguments was refused")
        except AgentError:
            assert call.stage is not CallStage.AWAITING_PERMISSION
        else:
            assert honest or call_id in self.tampered
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

    def tamper(self, call_id: str, *, also_hash: bool) -> None:
        """Someone edits the call's stored arguments (and maybe their hash) in the file."""
        version = self.log.get(self.agent_id).calls[call_id].called_version
        where = "WHERE originator_id=? AND originator_version=?"
        key = (self.agent_id.hex, version)
        with sqlite3.connect(sqlite_path(self.url)) as db:
            (raw,) = db.execute(f"SELECT state FROM stored_events {where}", key).fetchone()
            state = json.loads(raw)
            state["args"] = {**state["args"], "label": "evil", "path": "b.txt", "content": "evil"}
            if also_hash:
                state["args_hash"] = args_hash(state["args"])
            db.execute(f"UPDATE stored_events SET state=? {where}", (json.dumps(state), *key))
        self.tampered.add(call_id)
        event("a call's stored arguments were edited")

    def check(self) -> None:
        """Every start and every real run: effective policy 'allow', or a grant of the
        arguments the model asked for; never 'deny'; and only with those arguments."""
        called: dict[str, Agent.ToolCalled] = {}
        granted: dict[str, str] = {}
        started: dict[str, str] = {}
        for fact in self.log.events_of(self.agent_id):
            if isinstance(fact, Agent.PermissionDenied):
                event(f"a call was denied by {fact.approver}")
            elif isinstance(fact, Agent.ToolCalled):
                called[fact.call_id] = fact
                assert fact.policy is expected_policy(fact.tool, self.own, self.config)
            elif isinstance(fact, Agent.PermissionGranted):
                granted[fact.call_id] = fact.args_hash
            elif isinstance(fact, Agent.ToolStarted):
                self._check_allowed(called[fact.call_id], granted)
                started[fact.idempotency_key] = fact.call_id
            elif isinstance(fact, Agent.ToolCallRefused):
                # An edited row also breaks the chain its turn's other calls rest on.
                assert self.tampered, f"{fact.call_id} refused though nothing was edited"
                event("a call resting on an edited row was refused")
        for tool, key, args in self.runs:
            assert key in started, f"{key} ran without a start in the log"
            call_id = started[key]
            self._check_allowed(called[call_id], granted)
            asked = self.tools[tool].args_model.model_validate(self.requested[call_id])
            assert args == asked.model_dump(), f"{call_id} ran with other arguments"
            event(f"a call under policy {called[call_id].policy} ran")

    def _check_allowed(self, call: Agent.ToolCalled, granted: dict[str, str]) -> None:
        policy = expected_policy(call.tool, self.own, self.config)
        assert policy is not Policy.DENY, f"{call.call_id} is denied by policy"
        if policy is Policy.ASK:
            honest = args_hash(self.requested[call.call_id])
            assert granted.get(call.call_id) == honest, f"{call.call_id} not granted"

    def _pick(self, n: int, *, waiting_first: bool = False) -> str | None:
        agent = self.log.get(self.agent_id)
        calls = sorted((waiting_first and agent.awaiting_permission) or agent.calls)
        return calls[n % len(calls)] if calls else None

    def close(self) -> None:
        """Close the store and remove its folder."""
        self.log.close()
        shutil.rmtree(self.folder, ignore_errors=True)


configs = st.builds(
    AgentConfig,
    tool_policies=st.dictionaries(st.sampled_from([*TOOLS, *BUILTINS]), policies, max_size=4),
    default_policy=st.none() | policies,
    max_tool_failures=st.just(10),
)


@settings(deadline=None, max_examples=max(100, settings().max_examples))
@given(
    own=st.fixed_dictionaries({t: policies for t in TOOLS}),
    config=configs,
    script=scripts,
    actions=actions,
)
def test_a_call_runs_only_under_its_effective_policy_or_a_grant_of_its_arguments(
    own: dict[str, Policy],
    config: AgentConfig,
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
