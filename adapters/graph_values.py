"""LangGraph values to and from agentlog events: payloads, list deltas, checkpoint tuples.

A list channel whose new value is its previous value (same items, same types) plus
items appended is stored as those items only, with a reference to the event that holds
the base; reading concatenates the chain back. Everything else is stored whole.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any, cast

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import Checkpoint, CheckpointTuple, writes_sort_key
from langgraph.checkpoint.serde.base import SerializerProtocol

from agentlog.domain.graph_index import ThreadIndex
from agentlog.domain.graph_thread import ChannelBlob, GraphThread, Payload, Version

LastValues = dict[tuple[str, str], tuple[int, list[Any]]]
"""(namespace, channel) -> (event version, list value): what the next delta builds on."""


def dump(serde: SerializerProtocol, value: Any) -> Payload:
    """A value as the serializer writes it."""
    kind, data = serde.dumps_typed(value)
    return Payload(type=kind, data=base64.b64encode(data).decode("ascii"))


def load(serde: SerializerProtocol, payload: Payload) -> Any:
    """A value back from its payload."""
    return serde.loads_typed((payload.type, base64.b64decode(payload.data)))


def extends(value: list[Any], prev: list[Any]) -> bool:
    """Whether ``value`` is ``prev`` plus appended items (the same items, same types)."""
    if len(value) < len(prev):
        return False
    return all(a is b or (type(a) is type(b) and a == b) for a, b in zip(prev, value, strict=False))


def channel_blob(
    serde: SerializerProtocol,
    key: tuple[str, str],
    version: Version,
    values: Mapping[str, Any],
    last: LastValues,
) -> ChannelBlob:
    """The blob to store for a channel's new version: empty, whole, or a delta."""
    channel = key[1]
    if channel not in values:
        return ChannelBlob(channel=channel, version=version)
    value = values[channel]
    prev = last.get(key)
    if isinstance(value, list) and prev is not None and extends(value, prev[1]):
        tail = value[len(prev[1]) :]
        return ChannelBlob(channel=channel, version=version, value=dump(serde, tail), base=prev[0])
    return ChannelBlob(channel=channel, version=version, value=dump(serde, value))


def channel_value(
    serde: SerializerProtocol, index: ThreadIndex, ns: str, channel: str, version: Version
) -> tuple[bool, Any]:
    """(found, value) of a channel at a version, deltas concatenated."""
    chain = index.delta_chain(ns, channel, version)
    if chain is None:
        return False, None
    values = [load(serde, blob.value) for blob in chain if blob.value is not None]
    if len(values) == 1:
        return True, values[0]
    return True, [item for part in values for item in part]


def config_of(thread_id: str, ns: str, checkpoint_id: str) -> RunnableConfig:
    """The config LangGraph names a stored checkpoint by."""
    return {
        "configurable": {
            "thread_id": thread_id,
            "checkpoint_ns": ns,
            "checkpoint_id": checkpoint_id,
        }
    }


def checkpoint_tuple(
    serde: SerializerProtocol, thread_id: str, index: ThreadIndex, put: GraphThread.CheckpointPut
) -> CheckpointTuple:
    """The tuple LangGraph reads for a stored checkpoint."""
    ns = put.checkpoint_ns
    checkpoint = load(serde, put.checkpoint)
    values = {}
    for channel, version in checkpoint["channel_versions"].items():
        found, value = channel_value(serde, index, ns, channel, version)
        if found:
            values[channel] = value
    stored = index.writes.get((ns, put.checkpoint_id), {})
    writes = sorted(stored.values(), key=lambda w: writes_sort_key(w.task_path, w.task_id, w.index))
    return CheckpointTuple(
        config=config_of(thread_id, ns, put.checkpoint_id),
        checkpoint=cast(Checkpoint, {**checkpoint, "channel_values": values}),
        metadata=load(serde, put.metadata),
        parent_config=config_of(thread_id, ns, put.parent_id) if put.parent_id else None,
        pending_writes=[(w.task_id, w.channel, load(serde, w.value)) for w in writes],
    )
