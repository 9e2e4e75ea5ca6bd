"""One audit row per tool call, and what each event of the call changes in it.

A call's row starts at its ``ToolCalled`` event (or a ``ToolCallRejected``: the model
asked for a call that could not be made) and is changed by the events that follow it:
who decided (a policy, a person, the runtime) and when, then what came of it. The
handling of an event class is worked out once per class.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agentlog.domain import Agent, ItemSession, Policy, args_hash
from agentlog.projections.graph_messages import text_of
from agentlog.projections.seal import Seal
from agentlog.projections.view import clean

COLUMNS = (
    "agent_id",
    "called_version",  # the ToolCalled (or ToolCallRejected) event's version: the call's key
    "position",
    "call_id",
    "tool",
    "args",  # JSON; sealed with a cipher key
    "args_hash",
    "effect",
    "policy",
    "requested_by",
    "called_at",
    "decision",
    "decided_by",
    "decided_at",
    "outcome",
    "attempts",
    "started_at",
    "finished_at",
    "finished_by",
    "result_size",
    "detail",  # why it was denied, refused or failed; sealed with a cipher key
    "last_version",  # the version of the call's latest event
)
(AGENT, VERSION, _POSITION, _CALL_ID, _TOOL, _ARGS, _HASH, _EFFECT, _POLICY, _REQUESTED_BY) = range(
    10
)
(CALLED_AT, DECISION, DECIDED_BY, DECIDED_AT, OUTCOME, ATTEMPTS) = range(10, 16)
(STARTED_AT, FINISHED_AT, FINISHED_BY, RESULT_SIZE, DETAIL, LAST_VERSION) = range(16, 22)

DECISIONS = ("auto", "approved", "denied", "refused", "waiting")
"""auto: allowed by policy; approved, denied: by a person (or denied by policy);
refused: the runtime would not record the call (unknown tool, invalid arguments);
waiting: a person is asked."""
OUTCOMES = ("pending", "running", "succeeded", "failed", "unknown", "refused", "not_run")
"""refused: not run, its arguments failed their hashes; not_run: denied."""

Row = list[Any]
Update = Callable[[Row, Any, Seal], None]
_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
"""Compact JSON (one encoder: ``json.dumps`` with options makes a new one per call)."""


def called_row(agent_id: str, position: int, event: Agent.ToolCalled, seal: Seal) -> Row:
    """The row of a recorded call: decided at once if its policy allows it."""
    args = _json(event.args)
    auto, when = event.policy is Policy.ALLOW, event.timestamp
    return [
        *(agent_id, event.originator_version, position, clean(event.call_id), clean(event.tool)),
        *(seal.close(clean(args)), event.args_hash, event.effect.value, event.policy.value),
        *(clean(event.actor), when),
        *(("auto", "policy", when) if auto else (None, None, None)),
        *("pending", 0, None, None, None, None, None, event.originator_version),
    ]


def rejected_row(agent_id: str, position: int, event: Agent.ToolCallRejected, seal: Seal) -> Row:
    """The row of a call the runtime would not record (unknown tool, invalid arguments):
    the arguments the model gave, but no hash (the call was never recorded)."""
    actor, when = clean(event.actor), event.timestamp
    args = None if event.args is None else seal.close(clean(_json(event.args)))
    return [
        *(agent_id, event.originator_version, position, clean(event.call_id), clean(event.tool)),
        *(args, None, None, None, actor, when, "refused", actor, when),
        *("refused", 0, None, when, actor, None, seal.close(clean(event.reason))),
        event.originator_version,
    ]


def _asked(row: Row, event: Any, seal: Seal) -> None:
    row[DECISION] = "waiting"


def _granted(row: Row, event: Any, seal: Seal) -> None:
    row[DECISION : DECIDED_AT + 1] = "approved", clean(event.approver), event.timestamp


def _denied(row: Row, event: Any, seal: Seal) -> None:
    approver, when = clean(event.approver), event.timestamp
    row[DECISION : DECIDED_AT + 1] = "denied", approver, when
    _finish(row, event, "not_run", seal.close(clean(event.reason) or None))


def _started(row: Row, event: Any, seal: Seal) -> None:
    row[OUTCOME], row[ATTEMPTS] = "running", event.attempt
    if row[STARTED_AT] is None:
        row[STARTED_AT] = event.timestamp


def _succeeded(row: Row, event: Any, seal: Seal) -> None:
    _finish(row, event, "succeeded", None)
    row[RESULT_SIZE] = len(_json(event.result).encode())


def _failed(row: Row, event: Any, seal: Seal) -> None:
    _finish(row, event, "failed", seal.close(clean(event.error)))


def _unknown(row: Row, event: Any, seal: Seal) -> None:
    row[OUTCOME] = "unknown"


def _undecided(row: Row, event: Any, seal: Seal) -> None:
    row[DETAIL] = seal.close(clean(event.reason))


def _refused(row: Row, event: Any, seal: Seal) -> None:
    _finish(row, event, "refused", seal.close(clean(event.reason)))


def _finish(row: Row, event: Any, outcome: str, detail: str | None) -> None:
    row[OUTCOME], row[FINISHED_AT], row[FINISHED_BY] = outcome, event.timestamp, clean(event.actor)
    row[DETAIL] = detail


def sdk_call_row(agent_id: str, position: int, event: Any, seal: Seal) -> Row:
    """The row of a function call an OpenAI Agents SDK session recorded (the SDK ran it:
    no agentlog policy or grant decided it)."""
    item, when = event.item, event.timestamp
    args = item.get("arguments")
    text = args if isinstance(args, str) else _json(args)
    return [
        *(agent_id, event.originator_version, position, clean(str(item.get("call_id")))),
        *(clean(str(item.get("name") or "?")), seal.close(clean(text)), None, None, None),
        *(clean(event.actor), when, None, None, None, "pending", 0, None, None, None, None),
        *(None, event.originator_version),
    ]


def _sdk_output(row: Row, event: Any, seal: Seal) -> None:
    output = event.item.get("output")
    text = output if isinstance(output, str) else _json(output)
    _finish(row, event, "succeeded", None)
    row[RESULT_SIZE] = len(text.encode())


@dataclass(frozen=True)
class Kind:
    """What an event of one class does to the audit: start a row, or change its call's."""

    starts: Callable[[str, int, Any, Seal], Row] | None
    update: Update | None
    opens: bool = False  # a call the agent keeps open under its id
    closes: bool = False  # the agent has no call with that id any more (until a new ToolCalled)
    by_item: bool = False  # an SDK session's item: what it does depends on its type


_KINDS: tuple[tuple[type[Any], Kind], ...] = (
    (Agent.ToolCalled, Kind(called_row, None, opens=True)),
    (Agent.ToolCallRejected, Kind(rejected_row, None)),  # never an open call
    (Agent.PermissionRequested, Kind(None, _asked)),
    (Agent.PermissionGranted, Kind(None, _granted)),
    (Agent.PermissionDenied, Kind(None, _denied, closes=True)),
    (Agent.ToolStarted, Kind(None, _started)),
    (Agent.ToolSucceeded, Kind(None, _succeeded, closes=True)),
    (Agent.ToolFailed, Kind(None, _failed, closes=True)),
    (Agent.ToolOutcomeUnknown, Kind(None, _unknown)),
    (Agent.OutcomeUndecided, Kind(None, _undecided)),
    (Agent.ToolCallRefused, Kind(None, _refused, closes=True)),
    (ItemSession.ItemAdded, Kind(None, None, by_item=True)),
)
_ITEMS = {
    "function_call": Kind(sdk_call_row, None, opens=True),
    "function_call_output": Kind(None, _sdk_output, closes=True),
}


def item_kind(event: Any) -> Kind | None:
    """What an SDK session's item does: a function call starts a row, its output ends it."""
    item = event.item
    kind = _ITEMS.get(item.get("type"))
    return kind if kind is not None and isinstance(item.get("call_id"), str) else None


KINDS: dict[type[Any], Kind | None] = {}
"""What events of each class seen so far do (filled by :func:`kind_of`)."""
MISSING = Kind(None, None)
"""Stands for a class not in ``KINDS`` yet."""


def kind_of(cls: type[Any]) -> Kind | None:
    """What events of this class do to the audit (None: nothing); worked out once."""
    found = KINDS.get(cls, MISSING)
    if found is MISSING:
        found = KINDS[cls] = next((k for c, k in _KINDS if issubclass(cls, c)), None)
    return found


def graph_call_row(
    agent_id: str, position: int, event: Any, call: tuple[str, str, dict[str, Any]], seal: Seal
) -> Row:
    """The row of a tool call a LangGraph thread's AI message asked for (LangGraph ran
    it: no agentlog policy or grant decided it)."""
    call_id, tool, args = call
    try:
        digest: str | None = args_hash(args)
    except (TypeError, ValueError):  # arguments JSON cannot hold: not hashed
        digest = None
    when, version = event.timestamp, event.originator_version
    return [
        *(agent_id, version, position, clean(call_id), clean(tool)),
        *(seal.close(clean(_json(args))), digest, None, None, clean(event.actor), when),
        *(None, None, None, "pending", 0, None, None, None, None, None, version),
    ]


def graph_result(row: Row, event: Any, message: dict[str, Any], seal: Seal) -> None:
    """A LangGraph tool message settles its call: failed if its status says error."""
    text = text_of(message.get("content"))
    failed = message.get("status") == "error"
    _finish(
        row, event, "failed" if failed else "succeeded", seal.close(clean(text)) if failed else None
    )
    row[RESULT_SIZE] = len(text.encode())
    row[LAST_VERSION] = event.originator_version
