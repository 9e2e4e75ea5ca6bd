"""Export stored events, exactly as stored, to the ``agentlog-events`` format.

Streams: the log is read in pages and written line by line, so memory does not grow
with the log. Each event's chain is checked on the way out (a file that would not
import is never written). Encrypted or compressed stores export their decrypted JSON
state: the file is portable, and the store it is imported into stores it under its own
key. Snapshots are not exported: they are derived, and the importing store takes its own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, TextIO, cast
from uuid import UUID

from eventsourcing.persistence import StoredEvent

from agentlog.adapters import event_lines
from agentlog.adapters.mapper import PydanticMapper
from agentlog.domain.application import AgentLog
from agentlog.domain.chain import ChainLinks
from agentlog.domain.errors import BrokenChainError, UnknownAgentError

PAGE = 500
Progress = Callable[[int], None]
"""Called with the number of events written so far."""


def export_events(
    log: AgentLog,
    out: TextIO,
    agents: Iterable[UUID] | None = None,
    progress: Progress | None = None,
) -> int:
    """Write the header, the events (of ``agents``, or all of them) and the trailer.

    Without ``agents`` the whole log goes out in the order it was stored (as its
    notification log holds it); with them, each agent's events in version order, agent
    after agent. Returns the number of events written.
    """
    mapper = cast(PydanticMapper, log.mapper)
    out.write(event_lines.header(log.name) + "\n")
    stored = _whole_log(log) if agents is None else _agents(log, agents)
    links: dict[UUID, ChainLinks] = {}
    count = 0
    for event in stored:
        agent_id = _uuid(event.originator_id)
        state = mapper.decode_state(event)
        chain = links.setdefault(agent_id, ChainLinks())
        try:
            digest = chain.feed(event.topic, str(agent_id), event.originator_version, state)
        except ValueError as e:
            raise BrokenChainError(
                agent_id, event.originator_version, event.topic, str(e)
            ) from None
        out.write(
            event_lines.event_line(agent_id, event.originator_version, event.topic, state, digest)
            + "\n"
        )
        count += 1
        if progress and count % PAGE == 0:
            progress(count)
    out.write(event_lines.trailer(count, len(links)) + "\n")
    if progress:
        progress(count)
    return count


def _whole_log(log: AgentLog) -> Iterator[StoredEvent]:
    start = 1
    while notifications := log.recorder.select_notifications(start, PAGE):
        yield from notifications
        start = notifications[-1].id + 1


def _agents(log: AgentLog, agents: Iterable[UUID]) -> Iterator[StoredEvent]:
    for agent_id in dict.fromkeys(agents):  # each agent once, in the order given
        after = 0
        while page := log.recorder.select_events(agent_id, gt=after, limit=PAGE):
            yield from page
            after = page[-1].originator_version
        if after == 0:
            raise UnknownAgentError(agent_id)


def _uuid(value: Any) -> UUID:
    return value if type(value) is UUID else UUID(str(value))
