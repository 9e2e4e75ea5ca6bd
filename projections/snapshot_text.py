"""An agent's snapshot state as JSON text, for the agent-row views' ``state`` column.

Both agent-row views (state, runnable) write every agent they touched with its snapshot
state, and a follower under load writes about one row per event: encoding the state was
a seventh of its CPU. Three things make it cheaper:

- pydantic writes the JSON itself (C code) instead of building a dict for ``json.dumps``
  to walk (about half the time). The text differs from ``json.dumps`` of
  ``snapshot_state()`` only in how it spells the same values (non-ASCII characters as
  they are); parsed, it is the same state.
- The agent's attributes go to the ``State`` model's serializer as they are, without
  validating them into a model first (:mod:`agentlog.projections.direct_state`): the
  text is the one the validated model gives, byte for byte, or the validated way is
  taken.
- The views share one text per agent and version: an agent's ``head_hash`` chains its
  whole history, so the same id, version and head is the same state, whichever view
  replayed it (or read it back from its table).

An aggregate class that overrides ``snapshot_state`` gets ``json.dumps`` of its own.
"""

from __future__ import annotations

import json
import threading
from datetime import datetime

from agentlog.domain import Aggregate
from agentlog.projections.direct_state import direct_json

_DEFAULT = Aggregate.snapshot_state
_DEFAULT_EXTRAS = Aggregate.snapshot_extras


def snapshot_text(agent: Aggregate) -> str:
    """The agent's snapshot state as compact JSON: parsed, ``agent.snapshot_state()``."""
    cls = type(agent)
    if cls.snapshot_state is not _DEFAULT:
        return json.dumps(agent.snapshot_state(), separators=(",", ":"))
    body = direct_json(agent)
    if body is None:
        body = cls.State.model_validate(agent.state()).model_dump_json()
    tail = _extras_text(agent)
    return "{" + tail + "}" if body == "{}" else body[:-1] + "," + tail + "}"


def _extras_text(agent: Aggregate) -> str:
    """``json.dumps(agent.snapshot_extras())`` without its braces; the default extras
    (two times, the schema, the class version past 1) spelled out directly."""
    cls = type(agent)
    created, modified, schema = agent.created_on, agent.modified_on, cls.SNAPSHOT_SCHEMA
    version = getattr(cls, "class_version", 1)
    if (
        cls.snapshot_extras is not _DEFAULT_EXTRAS
        or type(created) is not datetime
        or type(modified) is not datetime
        or type(schema) is not int
        or type(version) is not int
    ):
        return json.dumps(agent.snapshot_extras(), separators=(",", ":"))[1:-1]
    # isoformat() is digits and "-:.+T": JSON strings as they are.
    text = f'"_created_on":"{created.isoformat()}","_modified_on":"{modified.isoformat()}"'
    text += f',"_schema":{schema}'
    return text if version <= 1 else f'{text},"class_version":{version}'


class SnapshotTexts:
    """Snapshot texts of the agents written lately, one per agent: the views that write
    the same agent at the same version encode it once."""

    def __init__(self, capacity: int = 20_000) -> None:
        self.capacity = capacity
        self._texts: dict[int, tuple[int, str, str]] = {}  # id -> version, head, text
        self._lock = threading.Lock()

    def text(self, agent: Aggregate) -> str:
        """The agent's snapshot text (made now unless made for this version and head)."""
        key, version, head = agent.id.int, agent.version, agent.head_hash
        found = self._texts.get(key)
        if found is not None and found[0] == version and found[1] == head and head:
            return found[2]
        text = snapshot_text(agent)
        with self._lock:
            if len(self._texts) >= self.capacity:
                self._texts.clear()
            self._texts[key] = (version, head, text)
        return text


TEXTS = SnapshotTexts()
"""Shared by every agent-row view of the process (followers in several threads too)."""
