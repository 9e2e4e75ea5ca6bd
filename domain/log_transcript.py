"""Where the model's messages come from: a :class:`TranscriptSource`, by default the
:class:`LogTranscript` read from the log itself (no view needed)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable
from typing import Protocol
from uuid import UUID

from agentlog.domain.agent import Agent
from agentlog.domain.aggregate import Aggregate
from agentlog.domain.application import AgentLog
from agentlog.domain.messages import TranscriptBuilder
from agentlog.domain.ports import Message

__all__ = ["LogTranscript", "TranscriptSource"]


class TranscriptSource(Protocol):
    """Where the model's messages come from (the transcript view, or the log)."""

    def messages(self, agent: Agent) -> list[Message]:
        """The agent's messages as of its current version."""
        ...


class LogTranscript:
    """Messages read from the log: the system prompt, the latest compaction's summary and
    the events after what it covers. O(context), never O(history); no view needed.

    With ``cache_size``, the contexts of the agents seen last are kept, and the next call
    for the same agent reads only the events after the cached version (the log is
    append-only, so what was read stays true); a new compaction starts afresh.
    """

    def __init__(self, log: AgentLog, cache_size: int = 0) -> None:
        self.log = log
        self.cache_size = cache_size
        self._cache: OrderedDict[UUID, tuple[int, int, TranscriptBuilder]] = OrderedDict()
        self._lock = threading.Lock()  # a worker's turn threads share the cache

    def messages(self, agent: Agent) -> list[Message]:
        """The agent's messages as of its loaded version."""
        with self._lock:  # taken out while it is read on: one thread per agent uses it
            covered, cached = agent.compacted_through, self._cache.pop(agent.id, None)
        if cached is not None and cached[0] == covered and cached[1] <= agent.version:
            builder = cached[2].apply(
                self.log.recent_events(agent.id, after=cached[1], upto=agent.version)
            )
        else:
            builder = TranscriptBuilder().apply(self._events(agent))
        if self.cache_size > 0:
            with self._lock:
                self._cache[agent.id] = (covered, agent.version, builder)
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        return builder.messages()

    def _events(self, agent: Agent) -> Iterable[Aggregate.Event]:
        return self.log.context_events(agent)
