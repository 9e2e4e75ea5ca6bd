"""What a LangGraph thread holds now, folded from its events: the live checkpoints per
namespace, their pending writes, and every channel blob (deltas need their bases); and,
for a whole store, which threads hold live checkpoints of which runs (:class:`StoreIndex`).

A ``ThreadDeleted`` empties it, so whatever follows starts a new thread under the same
id; ``CheckpointsRemoved`` drops checkpoints and their writes but keeps the blobs, which
later checkpoints may still read or build on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from uuid import UUID

from agentlog.domain.graph_thread import ChannelBlob, GraphThread, StoredWrite, Version

WriteKey = tuple[str, int]
"""(task id, write index)"""


@dataclass
class ThreadIndex:
    """The readable state of one thread; ``apply`` each of its events in order."""

    checkpoints: dict[str, dict[str, GraphThread.CheckpointPut]] = field(default_factory=dict)
    writes: dict[tuple[str, str], dict[WriteKey, StoredWrite]] = field(default_factory=dict)
    blobs: dict[tuple[str, str, Version], tuple[int, ChannelBlob]] = field(default_factory=dict)
    """(namespace, channel, version) -> (event version, blob): what a checkpoint reads."""
    by_event: dict[tuple[int, str], ChannelBlob] = field(default_factory=dict)
    """(event version, channel) -> blob: what a delta builds on."""

    def apply(self, event: GraphThread.Event) -> None:
        """Fold one event of the thread in."""
        if isinstance(event, GraphThread.CheckpointPut):
            self._put(event)
        elif isinstance(event, GraphThread.WritesPut):
            stored = self.writes.setdefault((event.checkpoint_ns, event.checkpoint_id), {})
            for write in event.writes:
                stored[write.task_id, write.index] = write
        elif isinstance(event, GraphThread.CheckpointsRemoved):
            for ref in event.removed:
                self.checkpoints.get(ref.checkpoint_ns, {}).pop(ref.checkpoint_id, None)
                self.writes.pop((ref.checkpoint_ns, ref.checkpoint_id), None)
        elif isinstance(event, GraphThread.ThreadDeleted):
            for part in (self.checkpoints, self.writes, self.blobs, self.by_event):
                part.clear()

    def _put(self, event: GraphThread.CheckpointPut) -> None:
        self.checkpoints.setdefault(event.checkpoint_ns, {})[event.checkpoint_id] = event
        for blob in event.blobs:
            self.blobs[event.checkpoint_ns, blob.channel, blob.version] = (
                event.originator_version,
                blob,
            )
            self.by_event[event.originator_version, blob.channel] = blob

    def delta_chain(self, ns: str, channel: str, version: Version) -> list[ChannelBlob] | None:
        """The blobs that make a channel's value at a version, oldest (a whole value)
        first; None if the thread has no value for it."""
        found = self.blobs.get((ns, channel, version))
        if found is None or found[1].value is None:
            return None
        chain = [found[1]]
        while chain[-1].base is not None:
            base = self.by_event.get((chain[-1].base, channel))
            if base is None or base.value is None:
                return None  # a damaged log: never a wrong value
            chain.append(base)
        return chain[::-1]

    def live(self) -> list[GraphThread.CheckpointPut]:
        """Every live checkpoint, namespaces in order of first use, ids descending."""
        return [
            put
            for by_id in self.checkpoints.values()
            for _, put in sorted(by_id.items(), reverse=True)
        ]


@dataclass
class StoreIndex:
    """Which threads of a store hold live checkpoints, and of which runs: folded from the
    graph events of every thread in log order, so that listing every thread and deleting
    by run read only the threads they return or change, never the whole store."""

    live: dict[UUID, dict[tuple[str, str], str | None]] = field(default_factory=dict)
    """thread aggregate id -> (namespace, checkpoint id) -> run id, in order of creation"""
    position: int = 0
    """The last notification folded in."""

    def apply(self, event: GraphThread.Event) -> None:
        """Fold in one event of any thread."""
        thread = event.originator_id
        if isinstance(event, GraphThread.CheckpointPut):
            key = (event.checkpoint_ns, event.checkpoint_id)
            self.live.setdefault(thread, {})[key] = event.run_id
        elif isinstance(event, GraphThread.CheckpointsRemoved):
            checkpoints = self.live.get(thread, {})
            for ref in event.removed:
                checkpoints.pop((ref.checkpoint_ns, ref.checkpoint_id), None)
        elif isinstance(event, GraphThread.ThreadDeleted | GraphThread.Created):
            self.live[thread] = {}

    def threads(self, runs: set[str] | None = None) -> list[UUID]:
        """Threads with live checkpoints (of one of ``runs``, if given), oldest first."""
        return [
            thread
            for thread, checkpoints in self.live.items()
            if checkpoints and (runs is None or not runs.isdisjoint(checkpoints.values()))
        ]
