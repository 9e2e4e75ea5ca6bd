"""The steps that move a requested tool call on: deny or ask by policy, run it, recover
it when its claim is dead, reconcile an unknown outcome, and record what it gave.

The order inside a step is what makes tool side effects happen at most once: a call is
recorded as requested before anything runs, a call under policy 'ask' waits for a grant
bound to its arguments, and a call is saved as started before its tool runs. A started
call found later without an outcome is handled by its effect class: pure and idempotent
calls run again with the same idempotency key; a side-effecting call is never re-run
blindly: its outcome is recorded as unknown and the tool's ``reconcile`` (or a person)
decides.

A claim (``ToolStarted``) ends when the call outlives its timeout, or at once when its
worker is known to be gone (``domain/claims.py``). A worker told to stop (``interrupt``)
starts nothing more: a pure or idempotent call it is running is recorded as failed with
the error ``interrupted`` (the model may ask for it again; no tool failed, so it does not
count toward ``max_tool_failures``); a side-effecting one is left as it is, started, for
the next worker to settle as an unknown outcome.
"""

from __future__ import annotations

import logging
from uuid import UUID

from eventsourcing.persistence import IntegrityError, InterfaceError, OperationalError

from agentlog.domain.agent import Agent
from agentlog.domain.application import require_agent
from agentlog.domain.call_check import checked_args
from agentlog.domain.claims import claim_is_dead
from agentlog.domain.errors import AgentError, CallTamperedError
from agentlog.domain.runtime_base import RACE_RETRIES, RuntimeBase
from agentlog.domain.steps import Step, StepKind
from agentlog.domain.tool_runner import Outcome, run_tool, still_running
from agentlog.domain.values import CallStage, CallState, EffectClass, Policy

__all__ = ["ToolCallSteps"]

# The name this logger had before the runtime was split: users' logging config keeps working.
log = logging.getLogger("agentlog.domain.runtime")


class ToolCallSteps(RuntimeBase):
    """The runtime's part that handles an agent's open tool calls, one per step."""

    def _handle_call(self, agent: Agent, call_id: str, call: CallState) -> Step | None:
        if call.stage is CallStage.REQUESTED:
            return self._requested(agent, call_id, call)
        if call.stage is CallStage.GRANTED:
            return self._run_call(agent, call_id, call)
        if call.stage is CallStage.STARTED and claim_is_dead(
            self.log, agent, call, self.now(), self.gone
        ):
            return self._recover(agent, call_id, call)
        if call.stage is CallStage.OUTCOME_UNKNOWN:
            return self._reconcile(agent, call_id, call)
        return None

    def _requested(self, agent: Agent, call_id: str, call: CallState) -> Step:
        if call.policy is Policy.DENY:
            agent.deny(call_id, approver="policy", reason=f"{call.tool} is denied by policy")
            self.log.save(agent)
            return self._step(agent, StepKind.DENIED, call_id)
        if call.policy is Policy.ASK:
            agent.request_permission(call_id, actor=self.actor)
            self.log.save(agent)
            return self._step(agent, StepKind.ASKED, call_id)
        return self._run_call(agent, call_id, call)

    def _recover(self, agent: Agent, call_id: str, call: CallState) -> Step:
        if call.effect is EffectClass.SIDE_EFFECTING:
            agent.mark_outcome_unknown(call_id, actor=self.actor)
            self.log.save(agent)
            return self._step(agent, StepKind.UNKNOWN, call_id)
        return self._run_call(agent, call_id, call)  # same idempotency key, next attempt

    def _reconcile(self, agent: Agent, call_id: str, call: CallState) -> Step | None:
        if still_running(call.idempotency_key):  # timed out here, but its thread goes on
            return self._step(agent, StepKind.BUSY, f"{call_id} is still running after its timeout")
        tool = self.tools.get(call.tool)
        happened = tool.reconcile(call.idempotency_key) if tool is not None else None
        if happened is None:  # a person decides (agentlog settle ...); other calls go on
            why = "no such tool here" if tool is None else f"{call.tool} cannot tell"
            agent.leave_to_person(call_id, why, actor=self.actor)
            self.log.save(agent)
            return self._step(agent, StepKind.UNDECIDED, f"{call_id}: {why}")
        if happened:
            agent.succeed(call_id, {"reconciled": True}, actor=self.actor)
            self.log.save(agent)
            return self._step(agent, StepKind.RECONCILED, f"{call_id}: it had happened")
        return self._run_call(agent, call_id, call)  # it did not happen: run it now

    def _run_call(self, agent: Agent, call_id: str, call: CallState) -> Step:
        tool = self.tools.get(call.tool)
        try:
            args = checked_args(self.log, agent, call_id, call)
        except CallTamperedError as e:
            return self._refuse(agent, e)
        if self.interrupt.is_set():  # told to stop: a call not started is not started
            return self._step(agent, StepKind.INTERRUPTED, f"{call_id} not started")
        agent.start_tool(call_id, worker_id=self.worker_id)
        self.log.save(agent)  # saved before the tool runs: this is the claim on the call
        key, timeout = agent.calls[call_id].idempotency_key, agent.config.tool_timeout
        outcome = run_tool(tool, call.tool, args, key, timeout, interrupt=self.interrupt)
        if outcome.interrupted and call.effect is EffectClass.SIDE_EFFECTING:
            detail = f"{call_id} left started: the next worker settles its outcome"
            return self._step(agent, StepKind.INTERRUPTED, detail)
        return self._record_outcome(agent, call_id, call.effect, outcome)

    def _refuse(self, agent: Agent, error: CallTamperedError) -> Step:
        log.warning("%s", error)
        agent.refuse(error.call_id, error.reason, actor=self.actor)
        self.log.save(agent)
        detail = f"{error.call_id}: {error.reason}"
        return self._limit(agent) or self._step(agent, StepKind.REFUSED, detail)

    def _record_outcome(
        self, claimed: Agent, call_id: str, effect: EffectClass, outcome: Outcome
    ) -> Step:
        """Record what the tool gave, first on the agent as this worker claimed the call,
        without reading the store: nobody else wrote meanwhile, as a rule. If someone did
        (a message, a cancel, a worker that took the call over), that save loses the race
        and the outcome is recorded on the agent as stored. While the store is out of
        reach, wait for it (``patience``): the tool ran, and its outcome must not be lost."""
        held: Agent | None = claimed
        while True:
            try:
                return self._try_record_outcome(claimed.id, call_id, effect, outcome, held)
            except (OperationalError, InterfaceError) as e:
                held = None  # whether its save went through is unknown: read the store
                if not self.patience(e):
                    raise

    def _try_record_outcome(
        self,
        agent_id: UUID,
        call_id: str,
        effect: EffectClass,
        outcome: Outcome,
        held: Agent | None,
    ) -> Step:
        kind = StepKind.INTERRUPTED if outcome.interrupted else StepKind.TOOL
        for _ in range(RACE_RETRIES):  # re-record the result, never re-run the tool
            agent = held if held is not None else require_agent(self.log.take(agent_id))
            held = None  # a save that lost a race leaves it as nobody stored it
            try:
                if outcome.timed_out and effect is EffectClass.SIDE_EFFECTING:
                    agent.mark_outcome_unknown(call_id, actor=self.actor)
                elif outcome.error is not None:
                    agent.fail_tool(
                        call_id, outcome.error, actor=self.actor, interrupted=outcome.interrupted
                    )
                else:
                    agent.succeed(call_id, outcome.result, actor=self.actor)
                self.log.save(agent)
            except IntegrityError:
                continue
            except AgentError as e:  # another worker took the call over (it looked dead)
                return self._step(agent, StepKind.BUSY, f"{call_id}: {e}")
            return self._limit(agent) or self._step(agent, kind, f"{call_id}: {outcome.summary}")
        return self._step(self.log.get(agent_id), StepKind.BUSY, "lost too many races")
