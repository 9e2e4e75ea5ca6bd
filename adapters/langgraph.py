"""A LangGraph checkpointer on an agentlog store (the ``langgraph`` extra).

``AgentLogSaver(url)`` is a ``BaseCheckpointSaver``: each thread is a
:class:`~agentlog.domain.graph_thread.GraphThread` aggregate (id ``uuid5`` of the thread
id), every ``put`` and ``put_writes`` is an event in its hash chain, and reads fold the
thread's events into a :class:`~agentlog.domain.graph_index.ThreadIndex`, kept per thread
in memory and caught up with one query (the events after its version) per call, so other
processes' writes are seen. Listing without a thread and ``delete_for_runs`` ask a
:class:`~agentlog.domain.graph_index.StoreIndex` (folded from the graph events of the
whole store, caught up the same way) which threads hold live checkpoints (of the runs
named), and read only those. Deletion, pruning and ``delete_for_runs`` append events that
make readers skip what they name; the events stay in the log, and with ``erasable=True``
the thread's payloads are encrypted under keys that ``delete_thread`` destroys (see
docs/integrations.md). The async methods run the sync ones in a worker thread
(:class:`~agentlog.adapters.graph_async.AsyncFromSync`); one lock serializes a saver's calls.
"""

from __future__ import annotations

import builtins
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from copy import deepcopy
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self, cast
from uuid import UUID

from eventsourcing.persistence import IntegrityError
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    get_checkpoint_id,
    get_checkpoint_metadata,
)
from langgraph.checkpoint.serde.base import SerializerProtocol

from agentlog.adapters.graph_async import AsyncFromSync
from agentlog.adapters.graph_copy import copied_events
from agentlog.adapters.graph_values import (
    LastValues,
    channel_blob,
    checkpoint_tuple,
    config_of,
    dump,
    load,
)
from agentlog.adapters.storage import DEFAULT_URL, open_log
from agentlog.adapters.thread_keys import ThreadCipher, ThreadKeys
from agentlog.domain.application import AgentLog
from agentlog.domain.graph_index import StoreIndex, ThreadIndex
from agentlog.domain.graph_thread import CheckpointRef, GraphThread, StoredWrite, thread_uuid

SAVE_ATTEMPTS = 3
PRUNE_STRATEGIES = ("keep_latest", "delete")
INDEXED = tuple(
    event.TOPIC
    for event in (
        GraphThread.Created,
        GraphThread.CheckpointPut,
        GraphThread.CheckpointsRemoved,
        GraphThread.ThreadDeleted,
    )
)
"""The events the store index folds (a copy's checkpoints are ``CheckpointPut`` too)."""


@dataclass
class _Thread:
    aggregate: GraphThread
    index: ThreadIndex = field(default_factory=ThreadIndex)
    last: LastValues = field(default_factory=dict)


Command = Callable[[_Thread], dict[tuple[str, str], tuple[int, list[Any]] | None]]
"""Triggers a thread's events; returns the list values the next deltas build on."""


class AgentLogSaver(AsyncFromSync):
    """A LangGraph checkpointer whose threads are hash-chained aggregates in agentlog."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        log: AgentLog | None = None,
        serde: SerializerProtocol | None = None,
        cipher_key: str | None = None,
        actor: str = "langgraph",
        erasable: bool = False,
        cached_threads: int = 64,
    ) -> None:
        """``url``: the store (or pass an open ``log``, and its URL if ``erasable``);
        ``erasable``: encrypt each thread under keys of its own that ``delete_thread``
        destroys (crypto-shredding, :mod:`agentlog.adapters.thread_keys`);
        ``cached_threads``: how many threads to keep folded in memory (the least
        recently used are read again when needed)."""
        super().__init__(serde=serde)
        self._owns_log = log is None
        self.log = log if log is not None else open_log(url, cipher_key=cipher_key)
        self._keys = ThreadKeys(url) if erasable else None
        self.actor = actor
        self._threads: OrderedDict[UUID, _Thread] = OrderedDict()
        self._store_index = StoreIndex()
        self.cached_threads = cached_threads
        self._lock = threading.RLock()

    def close(self) -> None:
        """Close the store if this saver opened it."""
        if self._keys is not None:
            self._keys.close()
        if self._owns_log:
            self.log.close()

    def _serde(self, thread: _Thread) -> SerializerProtocol:
        """The serializer for a thread's payloads: under its generation's key if erasable."""
        if self._keys is None:
            return self.serde
        aggregate = thread.aggregate
        return ThreadCipher(self.serde, self._keys, f"{aggregate.id}:{aggregate.generation}")

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- reading ---------------------------------------------------------------------
    def load_thread(self, thread_id: str) -> GraphThread | None:
        """A copy of the thread's aggregate (id, version, chain head, where it was copied
        from), or None if nothing was ever stored under the thread id."""
        with self._lock:
            thread = self._load(thread_id)
            return deepcopy(thread.aggregate) if thread else None

    def _load(self, thread_id: str) -> _Thread | None:
        return self._load_id(thread_uuid(thread_id))

    def _load_id(self, aggregate_id: UUID) -> _Thread | None:
        thread = self._threads.get(aggregate_id)
        after = thread.aggregate.version if thread else None
        for stored in self.log.events.get(aggregate_id, gt=after):
            event = cast(GraphThread.Event, stored)
            if thread is None:
                thread = _Thread(cast(GraphThread, event.mutate(None)))
            else:
                event.mutate(thread.aggregate)
            self._fold(thread, event)
        if thread is not None:
            self._cache(thread)
        return thread

    def _cache(self, thread: _Thread) -> None:
        self._threads[thread.aggregate.id] = thread
        self._threads.move_to_end(thread.aggregate.id)
        while len(self._threads) > self.cached_threads:
            self._threads.popitem(last=False)

    @staticmethod
    def _fold(thread: _Thread, event: GraphThread.Event) -> None:
        thread.index.apply(event)
        if isinstance(event, GraphThread.ThreadDeleted):
            thread.last.clear()

    def _indexed(self) -> StoreIndex:
        """The store index, caught up with the graph events written since the last call
        (by any process); it reads those events, never whole threads."""
        recorder, index = self.log.recorder, self._store_index
        while page := recorder.select_notifications(index.position + 1, 500, topics=INDEXED):
            for notification in page:
                index.apply(cast(GraphThread.Event, self.log.mapper.to_domain_event(notification)))
            index.position = page[-1].id
        return index

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """The checkpoint the config names, or the thread's latest in its namespace."""
        with self._lock:
            thread = self._load(config["configurable"]["thread_id"])
            if thread is None:
                return None
            by_id = thread.index.checkpoints.get(config["configurable"].get("checkpoint_ns", ""))
            if not by_id:
                return None
            checkpoint_id = get_checkpoint_id(config) or max(by_id)
            put = by_id.get(checkpoint_id)
            if put is None:
                return None
            return checkpoint_tuple(
                self._serde(thread), thread.aggregate.thread_id, thread.index, put
            )

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,  # LangGraph's name
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        """Checkpoints newest first per namespace: of one thread (or all), filtered by
        metadata, before a checkpoint id, at most ``limit``."""
        with self._lock:
            found = self._list(config, filter or {}, before, limit)
        yield from found

    def _list(
        self,
        config: RunnableConfig | None,
        wanted: dict[str, Any],
        before: RunnableConfig | None,
        limit: int | None,
    ) -> builtins.list[CheckpointTuple]:
        conf = config["configurable"] if config else {}
        ns, checkpoint_id = conf.get("checkpoint_ns"), conf.get("checkpoint_id")
        before_id = get_checkpoint_id(before) if before else None
        found: builtins.list[CheckpointTuple] = []
        if limit is not None and limit <= 0:
            return found
        for thread in self._listed_threads(conf, wanted):
            serde = self._serde(thread)
            for put in thread.index.live():
                if limit is not None and len(found) >= limit:
                    break
                if (
                    (ns is not None and put.checkpoint_ns != ns)
                    or (checkpoint_id and put.checkpoint_id != checkpoint_id)
                    or (before_id and put.checkpoint_id >= before_id)
                ):
                    continue
                metadata = load(serde, put.metadata)
                if all(metadata.get(k) == v for k, v in wanted.items()):
                    tid = thread.aggregate.thread_id
                    found.append(checkpoint_tuple(serde, tid, thread.index, put))
            if limit is not None and len(found) >= limit:
                break  # before the next thread is read
        return found

    def _listed_threads(self, conf: dict[str, Any], wanted: dict[str, Any]) -> Iterator[_Thread]:
        """The thread the config names, or, one at a time, every thread the store index
        says has live checkpoints (of the run the filter names, if it names one)."""
        if "thread_id" in conf:
            ids = [thread_uuid(conf["thread_id"])]
        else:
            runs = {str(wanted["run_id"])} if wanted.get("run_id") is not None else None
            ids = self._indexed().threads(runs)
        for aggregate_id in ids:
            if (thread := self._load_id(aggregate_id)) is not None:
                yield thread

    # -- writing ---------------------------------------------------------------------
    def _append(self, thread_id: str, command: Command, *, create: bool = True) -> None:
        def new() -> GraphThread | None:
            return GraphThread(thread_id, actor=self.actor) if create else None

        self._append_id(thread_uuid(thread_id), command, new)

    def _append_id(
        self,
        aggregate_id: UUID,
        command: Command,
        new: Callable[[], GraphThread | None] = lambda: None,
    ) -> None:
        """Load the thread (or start it with ``new``), run the command, save; again from
        the log if another process saved first."""
        with self._lock:
            for attempt in range(SAVE_ATTEMPTS):
                thread = self._load_id(aggregate_id)
                if thread is None:
                    if (aggregate := new()) is None:
                        return
                    thread = _Thread(aggregate)
                try:
                    updates = command(thread)
                    recordings = self.log.save(thread.aggregate)
                except IntegrityError:  # another process wrote first: catch up, redo
                    self._threads.pop(thread.aggregate.id, None)
                    if attempt == SAVE_ATTEMPTS - 1:
                        raise
                    continue
                except BaseException:  # unsaved events must not stay in the cached thread
                    self._threads.pop(thread.aggregate.id, None)
                    raise
                self._cache(thread)
                for recording in recordings:
                    self._fold(thread, cast(GraphThread.Event, recording.domain_event))
                for key, value in updates.items():
                    if value is None:
                        thread.last.pop(key, None)
                    else:
                        thread.last[key] = value
                return

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Record a checkpoint and its new channel values (list growth as deltas)."""
        conf = config["configurable"]
        ns: str = conf.get("checkpoint_ns", "")
        stored: dict[str, Any] = dict(checkpoint)
        values: dict[str, Any] = stored.pop("channel_values")
        meta = get_checkpoint_metadata(config, metadata)

        def command(thread: _Thread) -> dict[tuple[str, str], tuple[int, list[Any]] | None]:
            event_version = thread.aggregate.version + 1
            serde = self._serde(thread)
            blobs, updates = [], {}
            for channel, version in new_versions.items():
                blobs.append(channel_blob(serde, (ns, channel), version, values, thread.last))
                value = values.get(channel)
                updates[ns, channel] = (
                    (event_version, list(value)) if isinstance(value, list) else None
                )
            thread.aggregate.trigger_event(
                GraphThread.CheckpointPut,
                checkpoint_ns=ns,
                checkpoint_id=checkpoint["id"],
                parent_id=conf.get("checkpoint_id"),
                checkpoint=dump(serde, stored),
                metadata=dump(serde, meta),
                blobs=tuple(blobs),
                source=_text(meta.get("source")),
                step=meta.get("step") if isinstance(meta.get("step"), int) else None,
                run_id=_text(meta.get("run_id")),
                actor=self.actor,
            )
            return updates

        self._append(conf["thread_id"], command)
        return config_of(conf["thread_id"], ns, checkpoint["id"])

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Record a task's pending writes (a regular write already stored is kept)."""
        conf = config["configurable"]
        ns, checkpoint_id = conf.get("checkpoint_ns", ""), conf["checkpoint_id"]

        def command(thread: _Thread) -> dict[tuple[str, str], tuple[int, list[Any]] | None]:
            existing = thread.index.writes.get((ns, checkpoint_id), {})
            serde = self._serde(thread)
            new = [
                StoredWrite(
                    task_id=task_id,
                    index=index,
                    channel=channel,
                    value=dump(serde, value),
                    task_path=task_path,
                )
                for i, (channel, value) in enumerate(writes)
                if (index := WRITES_IDX_MAP.get(channel, i)) < 0 or (task_id, index) not in existing
            ]
            if new:
                thread.aggregate.trigger_event(
                    GraphThread.WritesPut,
                    checkpoint_ns=ns,
                    checkpoint_id=checkpoint_id,
                    writes=tuple(new),
                    actor=self.actor,
                )
            return {}

        self._append(conf["thread_id"], command)

    def delete_thread(self, thread_id: str) -> None:
        """Record ``ThreadDeleted``: readers see no checkpoint or write of the thread
        from before it (the events stay in the log, and the chain still verifies)."""

        def command(thread: _Thread) -> dict[tuple[str, str], tuple[int, list[Any]] | None]:
            if not thread.aggregate.deleted:
                thread.aggregate.trigger_event(GraphThread.ThreadDeleted, actor=self.actor)
            return {}

        with self._lock:
            self._append(thread_id, command, create=False)
            if self._keys is not None:  # after the event: a crash between leaves keys, not data
                self._keys.destroy(f"{thread_uuid(thread_id)}:")

    def _remove(
        self, thread_id: str, pick: Callable[[_Thread], builtins.list[CheckpointRef]], why: str
    ) -> None:
        self._remove_id(thread_uuid(thread_id), pick, why)

    def _remove_id(
        self, aggregate_id: UUID, pick: Callable[[_Thread], builtins.list[CheckpointRef]], why: str
    ) -> None:
        def command(thread: _Thread) -> dict[tuple[str, str], tuple[int, list[Any]] | None]:
            if removed := pick(thread):
                thread.aggregate.trigger_event(
                    GraphThread.CheckpointsRemoved,
                    removed=tuple(removed),
                    reason=why,
                    actor=self.actor,
                )
            return {}

        self._append_id(aggregate_id, command)

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Remove, in every thread, the checkpoints (and writes) these runs made."""
        runs = {str(r) for r in run_ids}

        def pick(thread: _Thread) -> builtins.list[CheckpointRef]:
            return [_ref(p) for p in thread.index.live() if p.run_id in runs]

        with self._lock:
            for aggregate_id in self._indexed().threads(runs) if runs else []:
                self._remove_id(aggregate_id, pick, "delete_for_runs")

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """``keep_latest``: remove all but each namespace's newest checkpoint;
        ``delete``: remove every checkpoint of the threads."""
        if strategy not in PRUNE_STRATEGIES:
            raise ValueError(f"unknown prune strategy {strategy!r}: use {PRUNE_STRATEGIES}")

        def pick(thread: _Thread) -> builtins.list[CheckpointRef]:
            keep = {max(ids) for ids in thread.index.checkpoints.values() if ids}
            return [
                _ref(p)
                for p in thread.index.live()
                if strategy == "delete" or p.checkpoint_id not in keep
            ]

        for thread_id in thread_ids:
            self._remove(thread_id, pick, f"prune {strategy}")

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Copy the live checkpoints and writes of a thread into another, recording
        where they came from (``ThreadCopied``: the source's id, version and chain head)."""
        with self._lock:
            source = self._load(source_thread_id)
            if source is None or not source.index.live():
                return

            def command(thread: _Thread) -> dict[tuple[str, str], tuple[int, list[Any]] | None]:
                for event_class, fields in copied_events(
                    self._serde(source), source, self._serde(thread)
                ):
                    thread.aggregate.trigger_event(event_class, actor=self.actor, **fields)
                return {}

            self._append(target_thread_id, command)


def _ref(put: GraphThread.CheckpointPut) -> CheckpointRef:
    return CheckpointRef(checkpoint_ns=put.checkpoint_ns, checkpoint_id=put.checkpoint_id)


def _text(value: Any) -> str | None:
    return None if value is None else str(value)
