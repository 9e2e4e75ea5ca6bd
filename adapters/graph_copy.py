"""The events that copy a LangGraph thread into another: a ``ThreadCopied`` naming the
source at its version and chain head (the fork's lineage), then each live checkpoint
with the blobs it reads and its writes. Deltas are written whole in the copy, since
their bases may be checkpoints the copy leaves out (pruned ones)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

from langgraph.checkpoint.serde.base import SerializerProtocol

from agentlog.adapters.graph_values import channel_value, dump, load
from agentlog.domain.graph_index import ThreadIndex
from agentlog.domain.graph_thread import ChannelBlob, GraphThread, Payload, Version
from agentlog.domain.values import Lineage


class _Source(Protocol):
    aggregate: GraphThread
    index: ThreadIndex


def copied_events(
    serde: SerializerProtocol, source: _Source, target: SerializerProtocol
) -> Iterator[tuple[type, dict[str, Any]]]:
    """(event class, fields) to trigger on the target thread, in order; payloads are
    re-encoded from the source's serializer to the target's when they differ (erasable
    threads each have their own key)."""

    def recode(payload: Payload) -> Payload:
        return payload if target is serde else dump(target, load(serde, payload))

    thread = source.aggregate
    lineage = Lineage(
        parent_id=thread.id, parent_version=thread.version, parent_digest=thread.head_hash
    )
    yield GraphThread.ThreadCopied, {"source_thread_id": thread.thread_id, "lineage": lineage}
    emitted: set[tuple[str, str, Version]] = set()
    for put in reversed(source.index.live()):
        blobs = []
        versions = load(serde, put.checkpoint)["channel_versions"]
        for channel, version in versions.items():
            key = (put.checkpoint_ns, channel, version)
            found = source.index.blobs.get(key)
            if found is None or key in emitted:
                continue
            emitted.add(key)
            blob = _whole(serde, source.index, key, found[1])
            if blob.value is not None:
                blob = blob.model_copy(update={"value": recode(blob.value)})
            blobs.append(blob)
        fields = put.model_dump(exclude={"originator_id", "originator_version", "timestamp"})
        for name in ("actor", "caused_by", "prev_hash", "digest"):
            fields.pop(name)
        fields.update(
            checkpoint=recode(put.checkpoint), metadata=recode(put.metadata), blobs=tuple(blobs)
        )
        yield GraphThread.CheckpointPut, fields
        writes = source.index.writes.get((put.checkpoint_ns, put.checkpoint_id))
        if writes:
            yield (
                GraphThread.WritesPut,
                {
                    "checkpoint_ns": put.checkpoint_ns,
                    "checkpoint_id": put.checkpoint_id,
                    "writes": tuple(
                        w.model_copy(update={"value": recode(w.value)}) for w in writes.values()
                    ),
                },
            )


def _whole(
    serde: SerializerProtocol,
    index: ThreadIndex,
    key: tuple[str, str, Version],
    blob: ChannelBlob,
) -> ChannelBlob:
    if blob.base is None:
        return blob
    _, value = channel_value(serde, index, *key)
    return ChannelBlob(channel=blob.channel, version=blob.version, value=dump(serde, value))
