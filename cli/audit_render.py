"""How tool calls look in ``agentlog audit`` (table, JSON, CSV) and in ``agentlog show``."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from pydantic import JsonValue
from rich.markup import escape
from rich.table import Table

from agentlog.cli.render import iso, printable
from agentlog.projections.audit_rows import COLUMNS

ARGS_WIDTH = 40
"""Characters of a call's arguments the table shows (``--json`` and ``--csv`` show all)."""
_TIMES = ("called_at", "decided_at", "started_at", "finished_at")


def short(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters, an ellipsis showing the cut."""
    return text if len(text) <= width else text[: width - 1] + "…"


def decision_text(row: dict[str, Any]) -> str:
    """Who or what decided: ``auto (policy)``, ``approved by ana``, ``waiting``, ``-``."""
    decision, by = row["decision"], row["decided_by"]
    if decision is None:
        return "-"
    if decision == "auto":
        return f"auto ({by})"
    if decision in ("approved", "denied"):
        return f"{decision} by {by}"
    return str(decision)


def size_text(size: int | None) -> str:
    """A result's size in bytes, short: ``512 B``, ``1.2 KB``, ``3.4 MB``."""
    if size is None:
        return "-"
    for unit, scale in (("MB", 1 << 20), ("KB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


def audit_calls_table(rows: list[dict[str, Any]]) -> Table:
    """One line per tool call: when, agent, call, tool, arguments, effect, decision,
    outcome, result size."""
    table = Table(
        "CALLED (UTC)",
        "AGENT",
        "CALL",
        "TOOL",
        "ARGS",
        "EFFECT",
        "DECISION",
        "OUTCOME",
        "RESULT",
        box=None,
    )
    for row in rows:
        cells = (
            row["called_at"].strftime("%Y-%m-%d %H:%M:%S"),
            row["agent_id"][:8],
            row["call_id"],
            row["tool"],
            short(row["args"] or "-", ARGS_WIDTH),
            row["effect"] or "-",
            decision_text(row),
            row["outcome"],
            size_text(row["result_size"]),
        )
        table.add_row(*(escape(printable(cell)) for cell in cells))
    return table


def audit_call_json(row: dict[str, Any]) -> dict[str, Any]:
    """A call as JSON: its arguments whole (as JSON, not text), times in ISO 8601."""
    data = dict(row)
    data["args"] = _parsed(row["args"])
    for name in _TIMES:
        data[name] = None if row[name] is None else iso(row[name])
    return data


def _parsed(args: str | None) -> Any:
    """Arguments as JSON; as text if they are not JSON (an SDK's function call can say
    anything)."""
    try:
        return None if args is None else json.loads(args)
    except ValueError:
        return args


def audit_csv(rows: list[dict[str, Any]]) -> str:
    """The calls as CSV with a header line: every column, arguments as JSON text."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        times = {name: None if row[name] is None else iso(row[name]) for name in _TIMES}
        writer.writerow({**row, **times})
    return out.getvalue()


def add_call_args(table: Table, args: dict[str, dict[str, JsonValue]]) -> None:
    """Rows for ``agentlog show``: each open call's arguments, whole, as JSON."""
    for call_id, call_args in args.items():
        text = json.dumps(call_args, ensure_ascii=False, sort_keys=True)
        label = escape(printable(f"call {call_id} args"))
        table.add_row(f"[bold]{label}[/]", escape(printable(text)))


def with_call_args(
    agent: dict[str, JsonValue], args: dict[str, dict[str, JsonValue]]
) -> dict[str, JsonValue]:
    """``agentlog show --json``: each open call with its arguments."""
    calls = agent.get("calls")
    if not isinstance(calls, dict):
        return agent
    opened: dict[str, JsonValue] = {
        call_id: {**call, "args": args.get(call_id)} if isinstance(call, dict) else call
        for call_id, call in calls.items()
    }
    return {**agent, "calls": opened}
