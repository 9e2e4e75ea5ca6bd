"""What an SDK session's items are in agentlog's terms: chat messages for the
transcript view (and a fork's context), a line for the audit view.

Mapped: ``message`` items of role user, system, developer (as system) and assistant
(their text: a string, or the texts of their parts joined), ``function_call`` (an
assistant message asking for that call, its JSON arguments parsed) and
``function_call_output`` (a tool message). Other items (reasoning, web searches, ...)
are kept in the log and given back to the SDK, but are no message.
"""

from __future__ import annotations

import json

from pydantic import JsonValue

from agentlog.domain.item_session import ItemSession
from agentlog.domain.messages import message_for, tool_content
from agentlog.domain.ports import Message
from agentlog.domain.values import ToolCallRequest


def item_summary(item: dict[str, JsonValue]) -> str:
    """A short line for an item: its kind and its text, name or output."""
    kind = item.get("type") or "message"
    if kind == "function_call":
        return f"function_call {item.get('name')}({item.get('arguments', '')})"
    message = item_message(item)
    text = message.content if message is not None else ""
    label = item.get("role") if kind == "message" else kind
    return f"{label}: {text}" if text else str(label)


def item_message(item: dict[str, JsonValue]) -> Message | None:
    """The chat message an item is, if it is one (a message, a tool call or its output)."""
    kind = item.get("type") or "message"
    call_id = item.get("call_id")
    if kind == "function_call" and isinstance(call_id, str) and call_id:
        call = ToolCallRequest(call_id=call_id, tool=str(item.get("name") or "?"), args=_args(item))
        return Message(role="assistant", content="", tool_calls=(call,))
    if kind == "function_call_output" and isinstance(call_id, str):
        return Message(role="tool", content=tool_content(item.get("output")), call_id=call_id)
    role = {"developer": "system"}.get(str(item.get("role")), item.get("role"))
    if kind == "message" and role in ("system", "user", "assistant"):
        return Message(role=role, content=_text(item.get("content")))
    return None


def _args(item: dict[str, JsonValue]) -> dict[str, JsonValue]:
    raw = item.get("arguments")
    try:
        args = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        args = None
    return args if isinstance(args, dict) else {"arguments": raw}


def _text(content: JsonValue) -> str:
    """A message's text: a string as it is, a list of parts as their texts joined."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text") for p in content if isinstance(p, dict)]
        return "".join(p for p in parts if isinstance(p, str))
    return ""


@message_for.register
def _(event: ItemSession.ItemAdded) -> Message | None:
    try:
        return item_message(event.item)
    except ValueError:  # not a message agentlog can hold (views never fail on an item)
        return None
