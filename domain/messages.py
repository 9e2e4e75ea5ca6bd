"""The messages a model sees, derived from events: one definition for the transcript
view and for replaying a transcript straight from the log."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable, Iterator
from functools import singledispatch
from typing import Any

from pydantic import JsonValue

from agentlog.domain.agent import Agent
from agentlog.domain.aggregate import Aggregate
from agentlog.domain.chain import json_encoder
from agentlog.domain.ports import Message, Role
from agentlog.domain.trusted import made
from agentlog.domain.values import ToolCallRequest

SUMMARY_PREFIX = "[summary of the conversation so far]\n"


@singledispatch
def message_for(event: Aggregate.Event) -> Message | None:
    """The chat message an event adds to the model's context, if any."""
    return None


@message_for.register
def _(event: Agent.Created) -> Message | None:
    prompt = event.config.system_prompt
    return _message("system", prompt) if prompt else None


@message_for.register
def _(event: Agent.TaskStarted) -> Message | None:
    return _message("user", event.goal)


@message_for.register
def _(event: Agent.UserMessageReceived) -> Message | None:
    return _message("user", event.text)


@message_for.register
def _(event: Agent.ModelResponded) -> Message | None:
    return _message("assistant", event.text, event.tool_calls, given=_WITH_CALLS)


@message_for.register
def _(event: Agent.ToolSucceeded) -> Message | None:
    return _tool(event.call_id, tool_content(event.result))


def tool_content(result: JsonValue) -> str:
    """A tool's result as the text of its ``tool`` message (OpenAI-compatible APIs take
    a string): a string as it is, any other JSON as JSON text. The one place a result
    becomes text: the model's context, the transcript view and chat exports use it."""
    if isinstance(result, str):
        return result
    if _ENCODE is None:  # pragma: no cover - CPython always has the C encoder
        return json.dumps(result, ensure_ascii=False)
    return "".join(_ENCODE(result, 0))


_ENCODE = json_encoder(json.JSONEncoder(ensure_ascii=False))
"""What ``json.dumps(result, ensure_ascii=False)`` builds on every call, built once (a
stored result is JSON: it holds no cycles to look for)."""


@message_for.register
def _(event: Agent.ToolFailed) -> Message | None:
    return _tool(event.call_id, f"error: {event.error}")


@message_for.register
def _(event: Agent.ToolCallRejected) -> Message | None:
    return _tool(event.call_id, f"error: {event.reason}")


@message_for.register
def _(event: Agent.ToolCallRefused) -> Message | None:
    return _tool(event.call_id, f"error: refused: {event.reason}")


@message_for.register
def _(event: Agent.PermissionDenied) -> Message | None:
    return _tool(event.call_id, f"denied by {event.approver}: {event.reason}".rstrip(": "))


def seq_of(event: Aggregate.Event, message: Message) -> int:
    """Where a message sits: the system prompt first (0), others at their event's version,
    so a summary of everything through version v can take v's place."""
    return 0 if message.role == "system" else event.originator_version


def entries_for(event: Aggregate.Event) -> Iterator[tuple[int, Message]]:
    """The messages an event adds, each with its place (``seq_of``).

    A fork's ``Created`` adds its parent's whole context, in order, at places -n..-1:
    before anything the fork records, and covered by the fork's own compactions.
    """
    if isinstance(event, Agent.Created) and event.inherited is not None:
        context = event.inherited.context
        yield from ((i - len(context), message) for i, message in enumerate(context))
    elif (message := _message_for(event)) is not None:
        yield seq_of(event, message), message


def _message_for(event: Aggregate.Event) -> Message | None:
    """``message_for(event)``, its implementation for the event's class kept in a plain
    dict (singledispatch's own cache makes a weak reference per call); forgotten
    whenever an implementation is registered."""
    cls = type(event)
    handler = _HANDLERS.get(cls)
    if handler is None:
        handler = _HANDLERS[cls] = message_for.dispatch(cls)
    return handler(event)


_HANDLERS: dict[type[Any], Callable[[Any], Message | None]] = {}


def _forgetting(register: Callable[..., Any]) -> Callable[..., Any]:
    """``message_for.register`` that forgets the implementations ``_message_for`` kept
    (as singledispatch forgets its own), however it is called."""

    @functools.wraps(register)
    def register_and_forget(cls: Any, func: Callable[..., Any] | None = None) -> Any:
        if func is None and isinstance(cls, type):  # @message_for.register(SomeEvent)
            return lambda f: register_and_forget(cls, f)
        try:
            return register(cls, func)
        finally:
            _HANDLERS.clear()

    return register_and_forget


message_for.register = _forgetting(message_for.register)  # type: ignore[method-assign]


def summary_message(event: Agent.ContextCompacted) -> Message:
    """What replaces the messages a compaction covers."""
    return _message("user", SUMMARY_PREFIX + event.summary)


class TranscriptBuilder:
    """The model's messages, built event by event (and extended later with newer ones)."""

    def __init__(self) -> None:
        self._messages: dict[int, Message] = {}
        self._in_order = True
        """Whether the places were added in increasing order (mostly: events come in
        version order), so that the messages need no sorting."""

    def apply(self, events: Iterable[Aggregate.Event]) -> TranscriptBuilder:
        """Add what these events say, in order; a compaction replaces what it covers."""
        messages = self._messages
        for event in events:
            if isinstance(event, Agent.ContextCompacted):
                covered = [
                    v
                    for v, m in messages.items()
                    if v <= event.through_version and m.role != "system"
                ]
                for version in covered:
                    del messages[version]
                self._add(event.through_version, summary_message(event))
            elif not isinstance(event, Agent.Created):  # one message at most (entries_for)
                message = _message_for(event)
                if message is not None:
                    self._add(seq_of(event, message), message)
            else:
                for seq, message in entries_for(event):
                    self._add(seq, message)
        return self

    def _add(self, seq: int, message: Message) -> None:
        messages = self._messages
        if self._in_order and messages and seq not in messages and seq < next(reversed(messages)):
            self._in_order = False
        messages[seq] = message

    def _sorted(self) -> dict[int, Message]:
        if not self._in_order:
            self._messages = dict(sorted(self._messages.items(), key=lambda entry: entry[0]))
            self._in_order = True
        return self._messages

    def messages(self) -> list[Message]:
        """The messages so far, in order."""
        return list(self._sorted().values())

    def entries(self) -> list[tuple[int, Message]]:
        """The messages so far, in order, each with its place (``seq_of``)."""
        return list(self._sorted().items())


def replay_transcript(events: Iterable[Aggregate.Event]) -> list[Message]:
    """The model's messages from an agent's events (the log is the fallback source)."""
    return TranscriptBuilder().apply(events).messages()


def _tool(call_id: str, content: str) -> Message:
    return _message("tool", content, call_id=call_id, given=_WITH_CALL_ID)


def _message(
    role: Role,
    content: str,
    tool_calls: tuple[ToolCallRequest, ...] = (),
    call_id: str | None = None,
    given: frozenset[str] = frozenset({"role", "content"}),
) -> Message:
    """``Message(role=..., content=..., ...)`` from a validated event's fields (each of its
    type already), made without validating them again (a model step builds the messages
    of the events since its last one); ``given``: the fields named in that call."""
    fields = {"role": role, "content": content, "tool_calls": tool_calls, "call_id": call_id}
    return made(Message, fields, given)


_WITH_CALLS = frozenset({"role", "content", "tool_calls"})
_WITH_CALL_ID = frozenset({"role", "content", "call_id"})
