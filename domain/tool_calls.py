"""The tool side-effect protocol's rules, per call id.

``ToolCalled -> [PermissionRequested -> PermissionGranted | PermissionDenied] ->
ToolStarted -> ToolSucceeded | ToolFailed``, or, found on resume after a crash,
``ToolOutcomeUnknown``. Mixed into :class:`~agentlog.domain.agent.Agent`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from uuid import UUID

from pydantic import JsonValue

from agentlog.domain.errors import (
    ArgsHashMismatchError,
    CallStageError,
    PermissionRequiredError,
    RerunNotAllowedError,
    ToolDeniedError,
    UnknownCallError,
)
from agentlog.domain.values import CallStage, CallState, EffectClass, Policy

_STARTABLE = (CallStage.REQUESTED, CallStage.GRANTED, CallStage.STARTED, CallStage.OUTCOME_UNKNOWN)


class ToolCallRules:
    """Commands of the tool-call protocol; the events are nested in the aggregate."""

    if TYPE_CHECKING:

        @property
        def id(self) -> UUID: ...  # provided by the aggregate

    calls: dict[str, CallState]
    PermissionRequested: Any
    PermissionGranted: Any
    PermissionDenied: Any
    ToolStarted: Any
    ToolSucceeded: Any
    ToolFailed: Any
    ToolOutcomeUnknown: Any
    ToolCallRefused: Any
    OutcomeUndecided: Any

    trigger_event: Callable[..., None]  # provided by the aggregate
    check_running: Callable[[], None]  # provided by the aggregate

    def request_permission(self, call_id: str, *, actor: str = "worker") -> None:
        """Ask a person to allow a call whose policy is 'ask'."""
        call = self._call_in(call_id, "request permission for", CallStage.REQUESTED)
        if call.policy is not Policy.ASK:
            raise CallStageError(self.id, call_id, f"under policy {call.policy}", "ask about")
        self.trigger_event(
            self.PermissionRequested,
            call_id=call_id,
            args_hash=call.args_hash,
            actor=actor,
            caused_by=call.last_version,
        )

    def grant(self, call_id: str, args_hash: str | None = None, *, approver: str) -> None:
        """Allow exactly this call: the grant is bound to the arguments' hash.

        ``args_hash`` is the hash the approver saw; omitted, it is the recorded one.
        """
        call = self._call_in(call_id, "grant", CallStage.AWAITING_PERMISSION)
        args_hash = self._check_hash(call_id, call, args_hash)
        self.trigger_event(
            self.PermissionGranted,
            call_id=call_id,
            args_hash=args_hash,
            approver=approver,
            actor=approver,
            caused_by=call.last_version,
        )

    def deny(
        self, call_id: str, args_hash: str | None = None, *, approver: str, reason: str = ""
    ) -> None:
        """Refuse a call (asked about, or not yet started); it is closed and never runs."""
        call = self._call_in(call_id, "deny", CallStage.REQUESTED, CallStage.AWAITING_PERMISSION)
        args_hash = self._check_hash(call_id, call, args_hash)
        self.trigger_event(
            self.PermissionDenied,
            call_id=call_id,
            args_hash=args_hash,
            approver=approver,
            reason=reason,
            actor=approver,
            caused_by=call.last_version,
        )

    def start_tool(self, call_id: str, *, worker_id: str, actor: str | None = None) -> None:
        """Record that a worker is about to run the call; save this before running it.

        A call started before without an outcome may be re-run only if re-running is
        harmless (pure or idempotent) or a person decided after its outcome was unknown.
        """
        call = self._call_in(call_id, "start", *_STARTABLE)
        if call.policy is Policy.DENY:
            raise ToolDeniedError(self.id, call_id, call.tool)
        if call.policy is Policy.ASK and call.approver is None:
            raise PermissionRequiredError(self.id, call_id, call.tool)
        if call.stage is CallStage.STARTED and call.effect is EffectClass.SIDE_EFFECTING:
            raise RerunNotAllowedError(self.id, call_id)
        self.trigger_event(
            self.ToolStarted,
            call_id=call_id,
            attempt=call.attempt + 1,
            worker_id=worker_id,
            # Model-chosen call ids can repeat across turns; the ToolCalled version cannot.
            idempotency_key=call.idempotency_key or f"{self.id}:{call.called_version}:{call_id}",
            actor=actor or f"worker:{worker_id}",
            caused_by=call.last_version,
        )

    def succeed(
        self,
        call_id: str,
        result: JsonValue,
        *,
        actor: str = "worker",
        extra: dict[str, JsonValue] | None = None,
    ) -> None:
        """Record the call's result."""
        call = self._call_in(call_id, "record a result for", *_FINISHABLE)
        self.trigger_event(
            self.ToolSucceeded,
            call_id=call_id,
            result=result,
            actor=actor,
            caused_by=call.last_version,
            extra=extra or {},
        )

    def fail_tool(
        self, call_id: str, error: str, *, actor: str = "worker", interrupted: bool = False
    ) -> None:
        """Record the call's error (``interrupted``: its worker was stopped while it ran,
        which does not count toward ``max_tool_failures``)."""
        call = self._call_in(call_id, "record an error for", *_FINISHABLE)
        self.trigger_event(
            self.ToolFailed,
            call_id=call_id,
            error=error,
            interrupted=interrupted,
            actor=actor,
            caused_by=call.last_version,
        )

    def settle(self, call_id: str, *, happened: bool, by: str) -> None:
        """A person's decision on a call whose outcome is unknown."""
        self._call_in(call_id, "settle", CallStage.OUTCOME_UNKNOWN)
        if happened:
            self.succeed(call_id, {"settled_by": by, "happened": True}, actor=by)
        else:
            self.fail_tool(call_id, f"settled by {by}: the effect did not happen", actor=by)

    def mark_outcome_unknown(self, call_id: str, *, actor: str = "worker") -> None:
        """Record that a started call left no outcome (found on resume)."""
        call = self._call_in(call_id, "mark the outcome unknown of", CallStage.STARTED)
        self.trigger_event(
            self.ToolOutcomeUnknown,
            call_id=call_id,
            attempt=call.attempt,
            actor=actor,
            caused_by=call.last_version,
        )

    def refuse(self, call_id: str, reason: str, *, actor: str = "worker") -> None:
        """Close a call the runtime will not run (its arguments fail their hashes)."""
        call = self._call_in(call_id, "refuse", *_STARTABLE)
        self.trigger_event(
            self.ToolCallRefused,
            call_id=call_id,
            reason=reason,
            actor=actor,
            caused_by=call.last_version,
        )

    def leave_to_person(self, call_id: str, reason: str, *, actor: str = "worker") -> None:
        """Record that nothing but a person can settle a call whose outcome is unknown."""
        call = self._call_in(call_id, "leave to a person", CallStage.OUTCOME_UNKNOWN)
        if call.needs_person:
            raise CallStageError(self.id, call_id, "already left to a person", "leave to a person")
        self.trigger_event(
            self.OutcomeUndecided,
            call_id=call_id,
            reason=reason,
            actor=actor,
            caused_by=call.last_version,
        )

    def _call_in(self, call_id: str, command: str, *stages: CallStage) -> CallState:
        self.check_running()
        try:
            call = self.calls[call_id]
        except KeyError:
            raise UnknownCallError(self.id, call_id) from None
        if call.stage not in stages:
            raise CallStageError(self.id, call_id, call.stage, command)
        return call

    def _check_hash(self, call_id: str, call: CallState, given: str | None) -> str:
        if given is not None and given != call.args_hash:
            raise ArgsHashMismatchError(self.id, call_id, call.args_hash, given)
        return call.args_hash


_FINISHABLE = (CallStage.STARTED, CallStage.OUTCOME_UNKNOWN)
