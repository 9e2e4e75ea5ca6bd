"""The export format: ``agentlog-events`` version 1, JSON Lines (docs/export-import.md).

Line 1 is the header, then one line per stored event (agent id, version, topic, time,
the stored JSON state exactly as stored, and the event's chain digest), then a trailer
with the counts, so a file cut short at a line boundary is recognised as cut. Every
line is compact JSON in UTF-8; the header holds nothing that differs between two
exports of the same events, so equal logs give byte-identical files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from agentlog.domain.errors import ImportFileError

FORMAT = "agentlog-events"
VERSION = 1
EVENT_KEYS = ("agent", "version", "topic", "time", "state", "digest")


@dataclass(frozen=True)
class EventLine:
    """One stored event as the file holds it."""

    agent: UUID
    version: int
    topic: str
    state: dict[str, Any]
    digest: str


def dumps(value: Any) -> str:
    """One line of compact JSON (keys in the order given: stored state stays as stored)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def header(source: str) -> str:
    """The first line: format, version and the application the events come from."""
    return dumps({"format": FORMAT, "version": VERSION, "source": source})


def event_line(agent: UUID, version: int, topic: str, state: dict[str, Any], digest: str) -> str:
    """An event's line; ``time`` is the state's timestamp, for people and tools."""
    time = state.get("timestamp")
    return dumps(
        {
            "agent": str(agent),
            "version": version,
            "topic": topic,
            "time": time if isinstance(time, str) else None,
            "state": state,
            "digest": digest,
        }
    )


def trailer(events: int, agents: int) -> str:
    """The last line: how many events and agents the file holds."""
    return dumps({"end": {"events": events, "agents": agents}})


def check_header(number: int, text: str) -> str:
    """The source the header names; raises :class:`ImportFileError` if it is no header."""
    value = _json(number, text)
    if value.get("format") != FORMAT:
        raise ImportFileError(number, f"not an {FORMAT} file (its first line has no format)")
    if value.get("version") != VERSION:
        reason = f"format version {value.get('version')!r}; this agentlog reads {VERSION}"
        raise ImportFileError(number, reason)
    return str(value.get("source", ""))


def parse(number: int, text: str) -> EventLine | tuple[int, int]:
    """An event line, or the trailer's (events, agents); raises :class:`ImportFileError`."""
    value = _json(number, text)
    if "end" in value:
        end = value["end"]
        events, agents = (end.get("events"), end.get("agents")) if isinstance(end, dict) else (0, 0)
        if type(events) is not int or type(agents) is not int:
            raise ImportFileError(number, "the trailer must hold the counts of events and agents")
        return events, agents
    missing = [k for k in EVENT_KEYS if k not in value]
    if missing or len(value) != len(EVENT_KEYS):
        extra = sorted(set(value) - set(EVENT_KEYS))
        raise ImportFileError(
            number, f"an event line needs {EVENT_KEYS}; missing {missing}, unknown {extra}"
        )
    try:
        agent = UUID(value["agent"])
    except (TypeError, ValueError, AttributeError):
        raise ImportFileError(number, f"agent {value['agent']!r} is not a UUID") from None
    version, topic, state, digest = (value[k] for k in ("version", "topic", "state", "digest"))
    if type(version) is not int or version < 1:
        raise ImportFileError(number, f"version {version!r} is not a positive integer")
    if not isinstance(topic, str) or not topic:
        raise ImportFileError(number, "topic must be a non-empty string")
    if not isinstance(state, dict):
        raise ImportFileError(number, "state must be a JSON object")
    if not isinstance(digest, str):
        raise ImportFileError(number, "digest must be a string")
    return EventLine(agent, version, topic, state, digest)


def _json(number: int, text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as e:
        raise ImportFileError(number, f"not JSON: {e}") from None
    if not isinstance(value, dict):
        raise ImportFileError(number, "a line must be a JSON object")
    return value
