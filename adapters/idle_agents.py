"""Agents a worker just found with nothing to do, skipped until the views say more.

The runnable view may be a moment behind the log (one worker of the store follows it,
between turns: ``adapters/view_follower.py``; or ``agentlog projections run`` does): an
agent whose turn just ended waiting, blocked or finished may still show as runnable.
Without a memory of that, a worker would take it again at once, and again, each time
loading it to find nothing to do. So an agent whose turn made no progress at version v
is skipped while its row in the view is at v or older (the view has seen nothing newer
than the worker did), for a few seconds at most: what changes with time alone (a claim's
holder found gone, an expiry) is looked at again soon.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping
from uuid import UUID

from agentlog.domain.runtime import Step, StepKind

REST_SECONDS = 2.0
"""How long an agent with nothing to do is skipped unless the view moves past it."""
CAPACITY = 10_000
"""Agents remembered at most (beyond it, the oldest are forgotten: they are looked at)."""


class IdleAgents:
    """The agents whose last turn made no progress: at which version, until when."""

    def __init__(self, seconds: float = REST_SECONDS) -> None:
        self.seconds = seconds
        self._idle: dict[UUID, tuple[int, float]] = {}
        self._lock = threading.Lock()

    def note(self, steps: Iterable[Step]) -> None:
        """Remember the agents whose turn ended with these steps without progress (not
        those busy elsewhere: their lease or claim may end any moment)."""
        until = time.monotonic() + self.seconds
        with self._lock:
            for step in steps:
                if step.progressed:
                    self._idle.pop(step.agent_id, None)
                elif step.kind is not StepKind.BUSY:
                    self._idle.pop(step.agent_id, None)  # re-inserted last: newest
                    self._idle[step.agent_id] = (step.version, until)
            while len(self._idle) > CAPACITY:
                del self._idle[next(iter(self._idle))]

    def worth_a_look(self, agents: Iterable[UUID], versions: Mapping[UUID, int]) -> list[UUID]:
        """Those of ``agents`` to try: not idle, or the view has seen newer events, or
        they rested long enough."""
        now = time.monotonic()
        with self._lock:
            chosen = []
            for agent_id in agents:
                seen = self._idle.get(agent_id)
                if seen is not None and versions.get(agent_id, 0) <= seen[0] and now < seen[1]:
                    continue
                self._idle.pop(agent_id, None)
                chosen.append(agent_id)
            return chosen


__all__ = ["REST_SECONDS", "IdleAgents"]
