"""The messages of a LangGraph thread, as the views read them from ``GraphThread`` events.

A thread's transcript is its root namespace's ``messages`` channel (LangChain messages,
as ``MessagesState`` and ``add_messages`` keep them). Each ``CheckpointPut`` that stores
a new value of it holds either the messages appended (a delta) or the whole list; the
views take only what is new (:class:`ThreadMarks`).

Payloads are decoded here without LangGraph or LangChain: LangGraph's serializer writes
msgpack, and each LangChain message is an extension holding (module, class, fields); the
fields are read as plain data and no class named in the log is ever imported. Payloads
that cannot be read here give nothing: encrypted ones (an erasable thread's: their keys
are not the views' to hold), pickles, or msgpack without ``ormsgpack`` installed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Iterator
from typing import Any

from agentlog.domain.graph_thread import GraphThread, Payload
from agentlog.domain.ports import Message
from agentlog.domain.values import ToolCallRequest
from agentlog.projections.view import clean

CHANNEL, NAMESPACE = "messages", ""
"""The channel and checkpoint namespace a thread's transcript comes from."""
ROLES = {"human": "user", "ai": "assistant", "tool": "tool", "system": "system"}
"""LangChain message types and the chat roles they map to (others are not mapped)."""
_EXT_FIELDS = frozenset({4, 5})  # LangGraph's pydantic v1 and v2 extensions: (module, name, fields)
_EXT_ARGS = frozenset({0, 1, 2, 3})  # constructor and method calls: (module, name, args, ...)

GraphMessage = dict[str, Any]
"""A LangChain message's fields, as LangGraph serialized them (``type``, ``content``...)."""


def messages_blob(event: GraphThread.CheckpointPut) -> Any | None:
    """The blob of the root namespace's ``messages`` channel this checkpoint stored, if any."""
    if event.checkpoint_ns != NAMESPACE:
        return None
    return next((b for b in event.blobs if b.channel == CHANNEL and b.value is not None), None)


def decode(payload: Payload) -> Any | None:
    """A payload's value as plain data; None if the views cannot read it."""
    try:
        data = base64.b64decode(payload.data, validate=True)
        if payload.type == "json":
            return json.loads(data)
        if payload.type == "msgpack":
            import ormsgpack  # installed with langgraph, which wrote the payload

            return ormsgpack.unpackb(data, ext_hook=_ext, option=ormsgpack.OPT_NON_STR_KEYS)
    except (ImportError, binascii.Error, ValueError, TypeError):  # ormsgpack's errors too
        return None
    return None  # encrypted (+aesgcm), pickle, bytes: not the views' to read


def _ext(code: int, data: bytes) -> Any:
    import ormsgpack

    parts = ormsgpack.unpackb(data, ext_hook=_ext, option=ormsgpack.OPT_NON_STR_KEYS)
    if code in _EXT_FIELDS or code in _EXT_ARGS:
        return parts[2] if isinstance(parts, list | tuple) and len(parts) > 2 else None
    return None  # numpy arrays, delta snapshots: not messages


def graph_messages(value: Any) -> list[GraphMessage]:
    """The LangChain messages in a decoded list (other items are left out)."""
    if not isinstance(value, list):
        return []
    return [m for m in value if isinstance(m, dict) and isinstance(m.get("type"), str)]


def message_for(message: GraphMessage) -> Message | None:
    """The chat message a LangChain message stands for (None: a type not mapped)."""
    role = ROLES.get(message["type"])
    if role is None:
        return None
    calls = tuple(
        ToolCallRequest(call_id=call_id, tool=name, args=args)
        for call_id, name, args in tool_calls(message)
    )
    call_id = message.get("tool_call_id") if role == "tool" else None
    return Message(
        role=role,
        content=clean(text_of(message.get("content"))) or "",
        tool_calls=calls,
        call_id=clean(str(call_id)) if call_id is not None else None,
    )


def tool_calls(message: GraphMessage) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(call id, tool, arguments) of each tool call an AI message asks for."""
    if message.get("type") != "ai":
        return
    for call in message.get("tool_calls") or ():
        if not isinstance(call, dict):
            continue
        call_id, name, args = call.get("id"), call.get("name"), call.get("args")
        if isinstance(call_id, str) and call_id and isinstance(name, str) and name:
            yield call_id, name, args if isinstance(args, dict) else {}


def text_of(content: Any) -> str:
    """A message's content as text: a string, or the text parts of a list joined."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p if isinstance(p, str) else p.get("text") for p in content if _texty(p)]
        return "".join(p for p in parts if isinstance(p, str))
    return "" if content is None else json.dumps(content, default=str)


def _texty(part: Any) -> bool:
    return isinstance(part, str) or (isinstance(part, dict) and part.get("type") == "text")


def chained(digest: str, messages: list[GraphMessage]) -> str:
    """The running digest of a thread's messages after these (chained from ``digest``).

    A message is hashed as Python prints its decoded fields: the serializer writes a
    message's fields in one order, so the same message gives the same text whether it
    came in a delta or a whole list (``repr`` is cheaper than sorted JSON). Should a
    new serializer order them otherwise, a whole list reads as rewritten: replaced."""
    for message in messages:
        digest = hashlib.sha256(f"{digest}\n{message!r}".encode()).hexdigest()
    return digest
