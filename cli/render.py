"""How agents and events look in a terminal and in JSON."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from eventsourcing.utils import TopicError, get_topic, resolve_topic
from pydantic import JsonValue
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from agentlog.domain import Agent, AgentState, Aggregate, GraphThread, ItemSession
from agentlog.domain.runtime import Step
from agentlog.projections import ViewStatus

_CONTROLS = "\\x00-\\x08\\x0b-\\x1f\\x7f-\\x9f\\u061c\\u200e\\u200f\\u202a-\\u202e\\u2066-\\u2069"
"""Control characters (C0 but tab and newline, DEL, C1) and bidirectional overrides."""
_UNSAFE = re.compile(f"[{_CONTROLS}]")
_UNSAFE_WITH_NEWLINE = re.compile(f"[{_CONTROLS}\\n]")


def printable(text: str, *, keep_newlines: bool = False) -> str:
    """Text from the log, safe to print to a terminal: control characters (ESC, so no
    ANSI or OSC sequences) and bidirectional overrides shown escaped (``\\x1b``)."""
    pattern = _UNSAFE if keep_newlines else _UNSAFE_WITH_NEWLINE
    return pattern.sub(_escaped, text)


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


_BASE_FIELDS = {
    "originator_id",
    "originator_version",
    "timestamp",
    "actor",
    "caused_by",
    "prev_hash",
    "digest",
    "originator_topic",
}


def agent_json(agent: Aggregate) -> dict[str, JsonValue]:
    """The agent's (or any aggregate's) id, version and state as JSON; an agent's status
    is the word ``ls`` shows (``Agent.phase``)."""
    state: dict[str, JsonValue] = (
        type(agent).State.model_validate(agent.state()).model_dump(mode="json")
    )
    head: dict[str, JsonValue] = {"id": str(agent.id), "version": agent.version}
    if not isinstance(agent, Agent):
        head["type"] = get_topic(type(agent))
        return {**head, **state}
    return {**head, **state, "status": agent.phase.value}


def kind_of(topic: str) -> str:
    """What a state row holds, by its topic: ``agent``, ``session`` (an SDK session) or
    ``langgraph`` (a LangGraph thread)."""
    if topic == GraphThread.TOPIC:
        return "langgraph"
    try:
        cls = resolve_topic(topic)
    except TopicError:  # an agent class of the user's, not loaded: still an agent
        return "agent"
    return "session" if isinstance(cls, type) and issubclass(cls, ItemSession) else "agent"


def state_table(rows: list[dict[str, Any]]) -> Table:
    """One row per agent (or thread): id, name, status, steps, version, kind, goal."""
    table = Table("ID", "NAME", "STATUS", "STEPS", "VERSION", "KIND", "GOAL", box=None)
    for row in rows:
        cells = (
            row["agent_id"],
            row["name"],
            row["status"],
            str(row["steps"]),
            str(row["version"]),
            kind_of(row["topic"]),
            row["goal"] or "",
        )
        table.add_row(*map(_cell, cells))
    return table


def state_json(row: dict[str, Any]) -> dict[str, Any]:
    """A state-view row as JSON (pending approvals as a list, and its kind)."""
    data = {k: v for k, v in row.items() if k not in ("topic", "agent_id")}
    pending = data.pop("pending_approvals")
    return {
        "id": row["agent_id"],
        "kind": kind_of(row["topic"]),
        **data,
        "pending_approvals": pending.split(",") if pending else [],
    }


def agent_details(agent: Aggregate) -> Table:
    """A two-column glance at one agent (or any aggregate: its state's fields)."""
    if not isinstance(agent, Agent):
        return _two_columns([("id", str(agent.id)), ("type", get_topic(type(agent)))], agent)
    table = Table(show_header=False, box=None)
    rows: list[tuple[str, str]] = [
        ("id", str(agent.id)),
        ("name", agent.name),
        ("status", agent.phase.value),  # the word `agentlog ls` shows
        ("goal", agent.goal or "-"),
        ("version", str(agent.version)),
        ("steps", str(agent.steps)),
        (
            "tokens",
            f"{agent.tokens.total} ({agent.tokens.prompt} in, {agent.tokens.completion} out)",
        ),
        ("model", agent.config.model),
    ]
    rows += [(f"call {cid}", f"{c.tool} ({c.stage})") for cid, c in agent.calls.items()]
    rows += [("last error", agent.last_error or "-"), ("result", agent.result or "-")]
    if agent.lineage:
        rows.append(("forked from", f"{agent.lineage.parent_id} @ {agent.lineage.parent_version}"))
    for key, value in rows:
        table.add_row(f"[bold]{_cell(key)}[/]", _cell(value))
    return _own_fields(table, agent, set(AgentState.model_fields))


def _two_columns(rows: list[tuple[str, str]], aggregate: Aggregate) -> Table:
    table = Table(show_header=False, box=None)
    for key, value in [*rows, ("version", str(aggregate.version))]:
        table.add_row(f"[bold]{_cell(key)}[/]", _cell(value))
    return _own_fields(table, aggregate, {"head_hash"})


def _own_fields(table: Table, aggregate: Aggregate, shown: set[str]) -> Table:
    """Rows for the state fields a subclass or sibling aggregate adds, as short JSON."""
    state = agent_json(aggregate)
    for key in type(aggregate).State.model_fields:
        if key not in shown:
            value = json.dumps(state[key], ensure_ascii=False, separators=(",", ":"))
            table.add_row(f"[bold]{_cell(key)}[/]", _cell(value[:200]))
    return table


def event_json(event: Any) -> dict[str, JsonValue]:
    """An event as JSON, with its type and version up front."""
    body: dict[str, JsonValue] = event.model_dump(mode="json")
    return {"type": type(event).__name__, "topic": event.TOPIC, **body}


def short_payload(event: Any, width: int, hidden: frozenset[str] = frozenset()) -> str:
    """An event's own fields (not its identity, time, actor or chain) as compact JSON, cut
    to ``width`` characters; ``hidden`` names more fields to leave out."""
    payload = {
        k: v
        for k, v in event.model_dump(mode="json").items()
        if k not in _BASE_FIELDS and k not in hidden
    }
    if extra := payload.pop("extra", None):  # what an import kept: after the event's own
        payload["extra"] = extra
    short = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return short if len(short) <= width else short[: width - 1] + "…"


def event_line(event: Any, width: int = 70) -> str:
    """version, time, type, actor, short payload."""
    short = short_payload(event, width)
    time = event.timestamp.strftime("%Y-%m-%d %H:%M:%S")
    return printable(
        f"{event.originator_version:>5}  {time}  {type(event).__name__:<20} "
        f"{event.actor:<16} {short}"
    )


def _cell(text: str) -> str:
    """A table cell: printable, and no rich markup."""
    return escape(printable(text))


def print_table(table: Table) -> None:
    """Print a rich table to stdout, plain when not on a terminal."""
    width = None if sys.stdout.isatty() else 1000  # pipes get whole rows, not wrapped cells
    Console(soft_wrap=True, width=width).print(table)


def dumps(value: Any) -> str:
    """JSON for machines: stable key order, UUIDs as strings."""
    return json.dumps(value, indent=2, default=_default, ensure_ascii=False)


def iso(moment: datetime) -> str:
    """ISO 8601 with its offset; the views' times are UTC (SQLite drops the zone)."""
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).isoformat()


def _default(value: Any) -> str:
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, datetime):
        return iso(value)
    raise TypeError(type(value).__name__)


def dumps_line(value: Any) -> str:
    """Compact one-line JSON (for JSON Lines)."""
    return json.dumps(value, default=_default, ensure_ascii=False, separators=(",", ":"))


def view_status(status: ViewStatus, gone: Callable[[str], bool]) -> dict[str, Any]:
    """One view's position, lag, versions, rebuild and error, as JSON.

    ``rebuild``: ``building``; ``stalled`` (the rebuild that owns the build is gone:
    ``projections run`` finishes it, or rebuild again); ``abandoned`` (interrupted: its
    tables were dropped); or None. ``shards`` (a log in several shards): each shard's
    position, head and lag (``position`` and ``head`` are then shard 0's).
    """
    active, building = status.active, status.building
    rebuild = None
    if building is not None:
        stalled = building.owner is not None and gone(building.owner)
        rebuild = "stalled" if stalled else "building"
    elif status.abandoned is not None:
        rebuild = "abandoned"
    return {
        "view": status.name,
        "version": status.version,
        "serving_version": active.version if active else None,
        "serving_made_by": active.made_by if active else None,
        "position": active.position if active else None,
        "head": status.head,
        "lag": status.lag,
        "rebuild": rebuild,
        "rebuilding_at": building.position if building else None,
        "rebuild_owner": building.owner if building else None,
        "error": (active.error if active else None) or (building.error if building else None),
        "skipped": status.skipped,
        "unknown_topic": status.unknown_topic,
        "shards": [
            {"shard": shard, "position": position, "head": head, "lag": head - position}
            for shard, (position, head) in enumerate(status.shards)
        ],
    }


def view_status_table(rows: list[dict[str, Any]]) -> Table:
    """The views' status as a table."""
    table = Table("VIEW", "VERSION", "POSITION", "LAG", "SKIPPED", "REBUILDING", "ERROR", box=None)
    for row in rows:
        version = str(row["version"])
        if row["serving_version"] not in (None, row["version"]):
            version = f"{row['serving_version']} -> {row['version']}"
        rebuilding = {
            None: "",
            "building": f"at {row['rebuilding_at']}",
            "stalled": f"stalled at {row['rebuilding_at']}: {row['rebuild_owner']} is gone",
            "abandoned": "abandoned (interrupted)",
        }[row["rebuild"]]
        cells = (
            row["view"],
            version,
            _positions(row),
            str(row["lag"]),
            str(row["skipped"]),
            rebuilding,
            row["error"] or "",
        )
        table.add_row(*map(_cell, cells))
    return table


def _positions(row: dict[str, Any]) -> str:
    """The position, or each shard's as ``shard:position``."""
    shards = row["shards"]
    if not shards:
        return str(row["position"])
    return " ".join(f"{s['shard']}:{s['position']}" for s in shards)


def step_line(step: Step) -> str:
    """One line per step for the live view."""
    return printable(f"{str(step.agent_id)[:8]}  v{step.version:<5} {step.kind:<12} {step.detail}")
