"""Where a compaction may cut the model's context: never between tool calls and results.

A compaction through version v replaces the context's messages up to v with a summary.
If the model asked for a tool at or before v and its result comes after v (or has not
come yet), the context would keep a ``tool`` message whose assistant ``tool_calls`` were
summarised away: OpenAI-style APIs reject such a request, and the model would read a
result it never asked for. So v is safe when every call asked for at or before it has
its result at or before it. Safety of v depends only on the events up to v, so a version
found safe stays safe whatever is recorded later.

An explicit cut that is not safe is refused (:class:`CompactionSplitsCallError`, naming
the nearest safe versions on either side): what a person asked to summarise is recorded
exactly or not at all. The default cut (the latest version) stops at the last safe one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from uuid import UUID

from agentlog.domain.errors import CompactionSplitsCallError
from agentlog.domain.ports import Message


@dataclass(frozen=True)
class Span:
    """Versions no cut may fall on: from a model response that asked for tools up to,
    not including, its last result (``end`` None: a result is still missing)."""

    start: int
    end: int | None
    call_id: str
    """A call whose result comes at ``end`` or later (the one an error names)."""

    def holds(self, version: int) -> bool:
        """Whether a cut through ``version`` would split this span."""
        return self.start <= version and (self.end is None or version < self.end)


@dataclass(frozen=True)
class Cut:
    """Where a compaction cuts, and the call that held the default cut back, if one did."""

    through: int
    held_back_by: Span | None = None


def spans(entries: Iterable[tuple[int, Message]]) -> list[Span]:
    """The unsafe spans of a context given as ``(place, message)`` pairs in order."""
    found: list[tuple[int, str, set[str], int]] = []  # start, a call id, missing, last result
    asked: dict[str, int] = {}  # call id -> its response's index in ``found``
    for seq, message in entries:
        if message.tool_calls:
            ids = {c.call_id for c in message.tool_calls}
            asked |= dict.fromkeys(ids, len(found))
            found.append((seq, message.tool_calls[0].call_id, ids, seq))
        elif message.role == "tool" and (i := asked.pop(message.call_id or "", None)) is not None:
            start, call_id, missing, _ = found[i]
            missing.discard(message.call_id or "")
            found[i] = (start, message.call_id or call_id, missing, seq)
    return [
        Span(start, None if missing else last, min(missing, default=call_id))
        for start, call_id, missing, last in found
    ]


def check_cut(agent_id: UUID, found: list[Span], through: int, low: int) -> int:
    """``through`` if no span holds it; else :class:`CompactionSplitsCallError` naming the
    nearest safe versions: above ``low`` before it, and at a last result after it."""
    holding = [s for s in found if s.holds(through)]
    if not holding:
        return through
    first = min(holding, key=lambda s: s.start)
    before, after = _safe_before(found, through, low), _safe_after(found, through)
    raise CompactionSplitsCallError(agent_id, through, first.call_id, before, after)


def _safe_before(found: list[Span], version: int, low: int) -> int | None:
    while version > low and (held := [s for s in found if s.holds(version)]):
        version = min(s.start for s in held) - 1
    return version if version > low else None


def _safe_after(found: list[Span], version: int) -> int | None:
    while held := [s for s in found if s.holds(version)]:
        ends = [s.end for s in held]
        if None in ends:
            return None
        version = max(e for e in ends if e is not None)
    return version


def latest_cut(agent_id: UUID, found: list[Span], latest: int, low: int) -> Cut:
    """The latest safe version above ``low``, and the span that kept it from ``latest``
    (only a call without a result can hold the latest version)."""
    holding = [s for s in found if s.holds(latest)]
    if not holding:
        return Cut(latest)  # nothing new to cover: the compaction itself will say so
    first = min(holding, key=lambda s: s.start)
    through = _safe_before(found, latest, low)
    if through is None:
        raise CompactionSplitsCallError(agent_id, latest, first.call_id, None, None)
    return Cut(through, first)
