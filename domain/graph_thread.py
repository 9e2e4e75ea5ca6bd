"""A LangGraph thread as an aggregate: every checkpoint and write a graph stores is an
event in its hash chain.

The aggregate's own state is bounded (the thread id, counters, whether it is deleted,
where it was copied from); the checkpoints themselves are read by folding the events
into a :class:`agentlog.domain.graph_index.ThreadIndex`. Values are stored as LangGraph's
serializer wrote them (:class:`Payload`); a list channel that only grew since the
thread's previous value of it stores just the appended items (``ChannelBlob.base``).
"""

from __future__ import annotations

from typing import ClassVar
from uuid import NAMESPACE_URL, UUID, uuid5

from pydantic import BaseModel

from agentlog.domain.aggregate import Aggregate
from agentlog.domain.values import Frozen, Lineage

THREAD_NAMESPACE = uuid5(NAMESPACE_URL, "agentlog:langgraph-thread")
Version = int | float | str
"""A LangGraph channel version."""


def thread_uuid(thread_id: str) -> UUID:
    """The aggregate id of a LangGraph thread id (the same in every store)."""
    return uuid5(THREAD_NAMESPACE, thread_id)


class Payload(Frozen):
    """A value as LangGraph's serializer wrote it: its type tag and bytes (base64)."""

    type: str
    data: str


class ChannelBlob(Frozen):
    """A channel's value at a version; ``value`` None: the channel is empty there."""

    channel: str
    version: Version
    value: Payload | None = None
    base: int | None = None
    """Set: ``value`` holds only the items appended to the list this channel held in the
    blob of the event at this thread version (so a growing message list costs a step
    only its new messages)."""


class StoredWrite(Frozen):
    """One pending write of a task, at its index (LangGraph's special channels < 0)."""

    task_id: str
    index: int
    channel: str
    value: Payload
    task_path: str = ""


class CheckpointRef(Frozen):
    """A checkpoint of a thread, by namespace and id."""

    checkpoint_ns: str
    checkpoint_id: str


class GraphThreadState(BaseModel):
    """What a snapshot of a thread holds (bounded)."""

    thread_id: str
    checkpoints: int
    deleted: bool
    generation: int
    copied_from: Lineage | None
    head_hash: str


class GraphThread(Aggregate):
    """A LangGraph thread (all its checkpoint namespaces) stored in an agentlog log."""

    TOPIC: ClassVar[str] = "agentlog:GraphThread@1"
    State: ClassVar[type[BaseModel]] = GraphThreadState

    class Event(Aggregate.Event): ...

    class Created(Aggregate.Created, Event):
        """A graph first stored something under this thread id."""

        thread_id: str

    class CheckpointPut(Event):
        """A checkpoint, its metadata and the channel values that changed with it."""

        checkpoint_ns: str
        checkpoint_id: str
        parent_id: str | None
        checkpoint: Payload
        metadata: Payload
        blobs: tuple[ChannelBlob, ...]
        source: str | None = None
        step: int | None = None
        run_id: str | None = None

        def apply(self, thread: GraphThread) -> None:
            thread.checkpoints += 1
            thread.deleted = False

    class WritesPut(Event):
        """A task's pending writes against a checkpoint."""

        checkpoint_ns: str
        checkpoint_id: str
        writes: tuple[StoredWrite, ...]

    class CheckpointsRemoved(Event):
        """Checkpoints (and their writes) taken out of the thread: prune, runs deleted."""

        removed: tuple[CheckpointRef, ...]
        reason: str

        def apply(self, thread: GraphThread) -> None:
            thread.checkpoints -= len(self.removed)

    class ThreadCopied(Event):
        """The checkpoints that follow were copied from another thread at a version."""

        source_thread_id: str
        lineage: Lineage

        def apply(self, thread: GraphThread) -> None:
            thread.copied_from = self.lineage

    class ThreadDeleted(Event):
        """Everything stored in the thread before this is gone for readers."""

        def apply(self, thread: GraphThread) -> None:
            thread.checkpoints = 0
            thread.deleted = True
            thread.generation = self.originator_version

    @staticmethod
    def create_id(thread_id: str) -> UUID:
        """The same id for the same thread id (see :func:`thread_uuid`)."""
        return thread_uuid(thread_id)

    def __init__(self, thread_id: str, actor: str = "langgraph") -> None:
        self.thread_id = thread_id
        self.checkpoints = 0
        self.deleted = False
        self.generation = 0
        """The version of the last ``ThreadDeleted`` (0: none): what follows it is a new
        history, under keys of its own in an erasable store."""
        self.copied_from: Lineage | None = None
