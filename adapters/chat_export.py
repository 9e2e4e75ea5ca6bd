"""An agent's events as OpenAI chat messages: what the model sees, or every message.

By default the messages are those the model sees (a compaction's summary in place of
what it covers, as the transcript view holds them); ``raw`` gives every message ever
recorded. An imported agent's messages come back with the keys its import kept in
``extra``, and as an object with its metadata if the transcript was one. Streams: one
event at a time. A LangGraph thread gives the messages of its newest checkpoint
(:mod:`agentlog.adapters.graph_chat`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import singledispatch
from typing import Any, TextIO
from uuid import UUID

from agentlog.adapters.chat_messages import NO_FIRST_USER_MESSAGE, tool_calls_of, with_extra
from agentlog.adapters.graph_chat import thread_messages
from agentlog.domain.agent import Agent
from agentlog.domain.aggregate import Aggregate
from agentlog.domain.application import AgentLog
from agentlog.domain.graph_thread import GraphThread
from agentlog.domain.messages import message_for, summary_message, tool_content

Message = dict[str, Any]


def export_messages(log: AgentLog, agent_id: UUID, out: TextIO, *, raw: bool = False) -> int:
    """Write the agent's messages as JSON (a list, or an object with ``messages``)."""
    (created,) = log.events_of(agent_id, upto=1)
    if isinstance(created, GraphThread.Created):
        return _write(out, [_plain(m) for m in thread_messages(log, agent_id)])
    metadata = created.extra.get("metadata") if isinstance(created, Agent.Created) else None
    compaction = None if raw else _latest_compaction(log, agent_id)
    if isinstance(metadata, dict):
        out.write("{" + "".join(f"{_dumps(k)}:{_dumps(v)}," for k, v in metadata.items()))
        out.write('"messages":')
    count = 0
    for message in _messages(log, agent_id, compaction):
        out.write(("[\n" if count == 0 else ",\n") + _dumps(message))
        count += 1
    out.write("\n]" if count else "[]")
    out.write("}\n" if isinstance(metadata, dict) else "\n")
    return count


def _write(out: TextIO, messages: list[Message]) -> int:
    out.write("[\n" + ",\n".join(map(_dumps, messages)) + "\n]\n" if messages else "[]\n")
    return len(messages)


def _messages(log: AgentLog, agent_id: UUID, compaction: Agent.ContextCompacted | None) -> Any:
    through = compaction.through_version if compaction else 0
    summarised = compaction is None
    for event in log.events_of(agent_id):
        for message in messages_of(event):
            if message["role"] != "system" and event.originator_version <= through:
                continue  # covered by the compaction (a fork's inherited context too)
            if not summarised and message["role"] != "system":
                yield _plain(summary_message(compaction))  # type: ignore[arg-type]
                summarised = True
            yield message
    if not summarised:
        yield _plain(summary_message(compaction))  # type: ignore[arg-type]


def _latest_compaction(log: AgentLog, agent_id: UUID) -> Agent.ContextCompacted | None:
    latest = None
    for event in log.events_of(agent_id):
        if isinstance(event, Agent.ContextCompacted):
            latest = event
    return latest


def messages_of(event: Aggregate.Event) -> Iterator[Message]:
    """The messages an event stands for: a fork's ``Created`` gives its parent's context."""
    inherited = getattr(event, "inherited", None) if isinstance(event, Agent.Created) else None
    if inherited is not None:
        yield from (_plain(message) for message in inherited.context)
    elif (message := message_of(event)) is not None:
        yield message


@singledispatch
def message_of(event: Aggregate.Event) -> Message | None:
    """The OpenAI chat message an event stands for, if any (as the model sees it)."""
    message = message_for(event)
    return None if message is None else _plain(message)


@message_of.register
def _(event: Agent.Created) -> Message | None:
    system = event.extra.get("system_message")
    prompt = event.config.system_prompt
    if isinstance(system, dict):
        return with_extra({"role": "system", "content": prompt}, system)
    return {"role": "system", "content": prompt} if prompt else None


@message_of.register
def _(event: Agent.TaskStarted) -> Message | None:
    if event.extra.get(NO_FIRST_USER_MESSAGE):
        return None
    return with_extra({"role": "user", "content": event.goal}, event.extra)


@message_of.register
def _(event: Agent.UserMessageReceived) -> Message | None:
    return with_extra({"role": "user", "content": event.text}, event.extra)


@message_of.register
def _(event: Agent.ModelResponded) -> Message | None:
    message: Message = {"role": "assistant", "content": event.text}
    if event.tool_calls:
        message["tool_calls"] = tool_calls_of(event.tool_calls)
    return with_extra(message, event.extra)


@message_of.register
def _(event: Agent.ToolSucceeded) -> Message | None:
    content = tool_content(event.result)
    return with_extra(
        {"role": "tool", "tool_call_id": event.call_id, "content": content}, event.extra
    )


def _plain(message: Any) -> Message:
    """A domain ``Message`` as OpenAI's dict."""
    out: Message = {"role": message.role, "content": message.content}
    if message.tool_calls:
        out["tool_calls"] = tool_calls_of(message.tool_calls)
    if message.call_id is not None:
        out["tool_call_id"] = message.call_id
    return out


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)
