"""Import an ``agentlog-events`` file: all of it, in one transaction, or nothing.

One pass, streaming: each line is parsed, its agent's chain is checked through
:class:`~agentlog.domain.chain.ChainLinks`, its state must decode into its event class,
and it is written in batches inside one open transaction
(:mod:`agentlog.adapters.bulk_insert`). A malformed or chain-breaking line, a missing
trailer (a file cut short), or an agent the store already holds with other events
raises before the commit, so nothing is imported. An agent already stored with exactly
the file's events is left as it is (importing the same file twice is a no-op). Memory
holds one batch plus a few hashes per agent, however long the file is. After the
commit, each imported agent with at least a snapshot interval of events gets a snapshot
(replayed a page at a time), so loading it does not replay its whole history.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import cast
from uuid import UUID

from eventsourcing.persistence import StoredEvent

from agentlog.adapters import event_lines
from agentlog.adapters.bulk_insert import insert_batches
from agentlog.adapters.event_lines import EventLine
from agentlog.adapters.mapper import PydanticMapper
from agentlog.adapters.snapshot_taking import take_snapshot
from agentlog.domain.application import AgentLog
from agentlog.domain.chain import ChainLinks, canonical
from agentlog.domain.errors import AgentExistsError, ImportFileError, StoredEventError

BATCH = 1000
COMPARE_PAGE = 50
Progress = Callable[[int], None]
"""Called with the number of bytes read so far."""


@dataclass(frozen=True)
class ImportReport:
    """What an import did."""

    events: int
    """Events written."""
    agents: int
    """Agents written (new to the store)."""
    unchanged: int
    """Agents the store already held with exactly the file's events (left as they were)."""


@dataclass
class _Agent:
    links: ChainLinks = field(default_factory=ChainLinks)
    stored: Iterator[StoredEvent] | None = None
    """The store's events of an agent it already holds (compared, never written)."""


def import_events(
    log: AgentLog, lines: Iterable[bytes], progress: Progress | None = None
) -> ImportReport:
    """Import the file whose lines (bytes, as read from it) are given."""
    reader = _Reader(log, progress)
    written = insert_batches(log.recorder, reader.batches(lines))
    new = [agent_id for agent_id, agent in reader.agents.items() if agent.stored is None]
    for agent_id in new:  # snapshots are not exported: long histories get one now
        if (reader.agents[agent_id].links.prev_version or 0) >= log.snapshot_interval > 0:
            take_snapshot(log, agent_id)
    return ImportReport(written, len(new), len(reader.agents) - len(new))


class _Reader:
    def __init__(self, log: AgentLog, progress: Progress | None) -> None:
        self.log, self.progress = log, progress
        self.mapper = cast(PydanticMapper, log.mapper)
        self.agents: dict[UUID, _Agent] = {}
        self.events = 0
        self.end: tuple[int, int] | None = None

    def batches(self, lines: Iterable[bytes]) -> Iterator[list[StoredEvent]]:
        """Stored events to write, checked line by line; raises at the first bad one."""
        numbered = enumerate(lines, 1)
        first = next(numbered, None)
        if first is None:
            raise ImportFileError(None, "the file is empty")
        event_lines.check_header(1, _text(*first))
        batch: list[StoredEvent] = []
        done = len(first[1])
        for number, raw in numbered:
            if self.end is not None:
                raise ImportFileError(number, "a line after the trailer")
            parsed = event_lines.parse(number, _text(number, raw))
            if isinstance(parsed, tuple):
                self.end = parsed
            elif (stored := self._take(number, parsed)) is not None:
                batch.append(stored)
            done += len(raw)
            if len(batch) >= BATCH:
                yield batch
                batch = []
                if self.progress:
                    self.progress(done)
        self._finish()
        if batch:
            yield batch
        if self.progress:
            self.progress(done)

    def _take(self, number: int, line: EventLine) -> StoredEvent | None:
        agent = self.agents.get(line.agent)
        if agent is None:
            if line.version != 1:
                reason = f"agent {line.agent} starts at version {line.version}: events are missing"
                raise ImportFileError(number, reason)
            agent = self.agents[line.agent] = _Agent(stored=self._stored(line.agent))
        try:
            digest = agent.links.feed(line.topic, str(line.agent), line.version, line.state)
        except ValueError as e:
            raise ImportFileError(
                number, f"agent {line.agent}, version {line.version}: {e}"
            ) from None
        if digest != line.digest:
            reason = f"agent {line.agent}, version {line.version}: its digest is not the event's"
            raise ImportFileError(number, reason)
        self.events += 1
        stored = StoredEvent(
            line.agent, line.version, line.topic, self.mapper.encode_state(line.state)
        )
        if agent.stored is not None:
            self._compare(line, next(agent.stored, None))
            return None
        try:
            self.mapper.to_domain_event(stored)
        except StoredEventError as e:
            raise ImportFileError(number, str(e)) from None
        return stored

    def _stored(self, agent_id: UUID) -> Iterator[StoredEvent] | None:
        if not self.log.recorder.select_events(agent_id, limit=1):
            return None
        return _paged(self.log, agent_id)

    def _compare(self, line: EventLine, stored: StoredEvent | None) -> None:
        if stored is None:
            raise AgentExistsError(
                line.agent, f"the file has more events, from version {line.version}"
            )
        same = stored.topic == line.topic and canonical(
            self.mapper.decode_state(stored)
        ) == canonical(line.state)
        if not same:
            raise AgentExistsError(line.agent, f"they differ at version {line.version}")

    def _finish(self) -> None:
        if self.end is None:
            raise ImportFileError(None, "the file ends without its trailer line (cut short?)")
        if self.end != (self.events, len(self.agents)):
            found = f"{self.events} events of {len(self.agents)} agents"
            counted = f"{self.end[0]} events of {self.end[1]} agents"
            reason = f"the trailer counts {counted}; the file holds {found}"
            raise ImportFileError(None, reason)
        for agent_id, agent in self.agents.items():
            if agent.stored is not None and next(agent.stored, None) is not None:
                raise AgentExistsError(agent_id, "the store has more events than the file")


def _paged(log: AgentLog, agent_id: UUID) -> Iterator[StoredEvent]:
    after = 0
    while page := log.recorder.select_events(agent_id, gt=after, limit=COMPARE_PAGE):
        yield from page
        after = page[-1].originator_version


def _text(number: int, raw: bytes) -> str:
    try:
        text = raw.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError as e:
        raise ImportFileError(number, f"not UTF-8: {e}") from None
    if not text.strip():
        raise ImportFileError(number, "an empty line")
    return text
