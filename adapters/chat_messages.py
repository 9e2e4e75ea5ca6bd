"""OpenAI chat messages <-> the fields of agentlog's events, one message at a time.

A message's keys that the event's own fields do not give back as they were (unknown
keys, content as a list of parts, ``content: null``, tool calls whose arguments are not
a JSON object...) go to the event's ``extra`` and come back out over the rebuilt
message, so an import followed by an export gives back equivalent messages.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import JsonValue, ValidationError

from agentlog.domain.values import ToolCallRequest

ROLES = ("system", "developer", "user", "assistant", "tool")
"""``developer`` is what newer OpenAI models call the system role; it is kept as given."""
NO_FIRST_USER_MESSAGE = "agentlog:no_message"
"""Key in a TaskStarted's extra: the task started for an assistant message (no user
message came first), so export leaves that start out."""
Message = dict[str, Any]


class MessageError(ValueError):
    """A message that is not an OpenAI chat message agentlog can record."""


def text_of(content: Any) -> str:
    """The text of ``content``: a string, a list of parts (their text joined), or null."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [p.get("text") for p in content if isinstance(p, dict)]
        return "".join(t for t in texts if isinstance(t, str))
    raise MessageError(f"content must be a string, a list of parts or null, not {content!r:.60}")


def requests_of(calls: Any) -> tuple[ToolCallRequest, ...]:
    """The tool calls of an assistant message as agentlog records them."""
    if not isinstance(calls, list):
        raise MessageError("tool_calls must be a list")
    requests = []
    for number, call in enumerate(calls, 1):
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict):
            raise MessageError(f"tool call {number} has no function")
        try:
            requests.append(
                ToolCallRequest(
                    call_id=call.get("id"), tool=function.get("name"), args=_args(function)
                )
            )
        except ValidationError as e:
            error = e.errors()[0]
            where = ".".join(map(str, error["loc"]))
            raise MessageError(f"tool call {number}: {where}: {error['msg']}") from None
    return tuple(requests)


def tool_calls_of(requests: tuple[ToolCallRequest, ...]) -> list[dict[str, Any]]:
    """Recorded tool calls as OpenAI's ``tool_calls`` (arguments as a JSON string)."""
    return [
        {
            "id": r.call_id,
            "type": "function",
            "function": {"name": r.tool, "arguments": json.dumps(r.args, ensure_ascii=False)},
        }
        for r in requests
    ]


def extra_of(message: Message, rebuilt: Message) -> dict[str, JsonValue]:
    """The keys of ``message`` that ``rebuilt`` (from the event's fields) does not give back."""
    return {k: v for k, v in message.items() if k not in rebuilt or not _same(k, rebuilt[k], v)}


def with_extra(rebuilt: Message, extra: dict[str, JsonValue]) -> Message:
    """The message as it came: rebuilt from the event's fields, then its extra keys."""
    return {**rebuilt, **extra}


def equivalent(a: Message, b: Message) -> bool:
    """Whether two messages say the same (tool call arguments compared as JSON)."""
    return a.keys() == b.keys() and all(_same(k, a[k], b[k]) for k in a)


def _same(key: str, a: Any, b: Any) -> bool:
    if key == "tool_calls":
        return _calls_key(a) == _calls_key(b)
    return _strict(a) == _strict(b)


def _calls_key(calls: Any) -> list[str] | str:
    """Tool calls with their arguments parsed (their spacing says nothing)."""
    if not isinstance(calls, list):
        return _strict(calls)
    out = []
    for call in calls:
        function = call.get("function") if isinstance(call, dict) else None
        parsed = call
        if isinstance(function, dict) and isinstance(function.get("arguments"), str):
            try:
                arguments = json.loads(function["arguments"])
            except ValueError:
                arguments = function["arguments"]
            parsed = {**call, "function": {**function, "arguments": _strict(arguments)}}
        out.append(_strict(parsed))
    return out


def _strict(value: Any) -> str:
    """JSON text of a value: 1, 1.0 and true differ; key order does not."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def _args(function: dict[str, Any]) -> dict[str, JsonValue]:
    raw = function.get("arguments", "{}")
    try:
        args = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        return {}  # not JSON: the message's tool_calls are kept as they came, in extra
    return args if isinstance(args, dict) else {}
