"""OpenAI chat transcripts in and out: what agent harnesses write, as an agent's events.

Import records each message through the agent's own commands, with actor
``import:<file name>``: the system prompt in ``Created``, the first user message as the
task's goal and later ones as ``UserMessageReceived``, assistant messages as
``ModelResponded`` with their tool calls, and each tool result as a call that was
recorded, started and succeeded (``ToolCalled``, ``ToolStarted``, ``ToolSucceeded``):
results already obtained, no tool runs. Calls left without a result wait for a person
(policy ``ask``), so no worker runs them either. Everything is written in one
transaction (:mod:`agentlog.adapters.bulk_insert`), a batch at a time.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO, Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from pydantic import JsonValue

from agentlog.adapters.bulk_insert import insert_batches
from agentlog.adapters.chat_export import export_messages
from agentlog.adapters.chat_file import ChatFile
from agentlog.adapters.chat_messages import (
    NO_FIRST_USER_MESSAGE,
    ROLES,
    MessageError,
    extra_of,
    requests_of,
    text_of,
    tool_calls_of,
)
from agentlog.domain.agent import Agent
from agentlog.domain.application import AgentLog
from agentlog.domain.errors import AgentError, ImportFileError
from agentlog.domain.values import AgentConfig, EffectClass, Policy, Status, ToolCallRequest

__all__ = ["export_messages", "import_messages"]

BATCH_MESSAGES = 200
SYSTEM_ROLES = ("system", "developer")


def import_messages(log: AgentLog, file: IO[bytes], *, source: str, name: str) -> UUID:
    """Record the transcript in ``file`` as a new agent; return its id."""
    chat = ChatFile(file)
    try:
        recorder = _ChatRecorder(log, source, name, chat.metadata)
        insert_batches(log.recorder, recorder.batches(chat.messages()))
    finally:
        chat.close()
    agent = recorder.agent
    if agent is None:
        raise ImportFileError(None, "the transcript holds no messages")
    if (
        log.snapshots is not None
        and log.snapshot_interval
        and agent.version >= log.snapshot_interval
    ):
        log.snapshots.put([agent.Snapshot.take(agent)])  # resume from here, not from event 1
    return agent.id


class _ChatRecorder:
    """Turns messages into the agent's events (held in memory a batch at a time)."""

    def __init__(self, log: AgentLog, source: str, name: str, metadata: Any) -> None:
        self.log, self.name, self.metadata = log, name, metadata
        self.actor = f"import:{source}"
        self.agent: Agent | None = None
        self.model = str(metadata.get("model", "unknown")) if metadata else "unknown"
        self.asked: dict[str, tuple[ToolCallRequest, int]] = {}
        """Calls of the latest assistant message that have no result yet."""

    def batches(self, messages: Iterator[tuple[int, Any]]) -> Iterator[list[StoredEvent]]:
        """The stored events, ``BATCH_MESSAGES`` messages at a time."""
        for number, message in messages:
            try:
                self._record(message)
            except (MessageError, AgentError) as e:
                raise ImportFileError(number, str(e), unit="message") from None
            if number % BATCH_MESSAGES == 0:
                yield self._collect()
        if self.agent is not None:
            self._leave_open_calls_to_a_person()
            yield self._collect()

    def _collect(self) -> list[StoredEvent]:
        assert self.agent is not None
        return [self.log.mapper.to_stored_event(e) for e in self.agent.collect_events()]

    def _record(self, message: Any) -> None:
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise MessageError(f"a message is an object with a role ({', '.join(ROLES)})")
        if self.agent is None:
            self.agent = self._create(message)
            if message["role"] in SYSTEM_ROLES:
                return
        role = message["role"]
        if role == "tool":
            self._tool_result(self.agent, message)
            return
        self._leave_open_calls_to_a_person()
        if role == "assistant":
            if self.agent.status is Status.IDLE:
                # No user message came first: the task starts with no goal, marked so
                # that export leaves that start out.
                self.agent.start_task("", actor=self.actor, extra={NO_FIRST_USER_MESSAGE: True})
            self._model_response(self.agent, message)
        else:
            self._user_message(self.agent, message)

    def _create(self, first: dict[str, Any]) -> Agent:
        extra: dict[str, JsonValue] = {}
        prompt = ""
        if first["role"] in SYSTEM_ROLES:
            prompt = text_of(first.get("content"))
            extra["system_message"] = extra_of(first, {"role": "system", "content": prompt})
        if self.metadata is not None:
            extra["metadata"] = self.metadata
        config = AgentConfig(model="none", system_prompt=prompt)
        return Agent.create(self.name, config, actor=self.actor, extra=extra)

    def _user_message(self, agent: Agent, message: dict[str, Any]) -> None:
        text = text_of(message.get("content"))
        extra = extra_of(message, {"role": "user", "content": text})
        if message["role"] == "user" and agent.status is Status.IDLE:
            agent.start_task(text, actor=self.actor, extra=extra)
        else:  # a later system message is recorded as a message; its role is kept
            agent.receive_user_message(text, actor=self.actor, extra=extra)

    def _model_response(self, agent: Agent, message: dict[str, Any]) -> None:
        text = text_of(message.get("content"))
        calls = message.get("tool_calls")
        requests = requests_of(calls) if calls is not None else ()
        rebuilt: dict[str, Any] = {"role": "assistant", "content": text}
        if requests:
            rebuilt["tool_calls"] = tool_calls_of(requests)
        agent.record_model_response(
            text,
            model=self.model,
            tool_calls=requests,
            actor=self.actor,
            extra=extra_of(message, rebuilt),
        )
        self.asked = {r.call_id: (r, agent.version) for r in requests}

    def _tool_result(self, agent: Agent, message: dict[str, Any]) -> None:
        call_id = message.get("tool_call_id")
        if not isinstance(call_id, str) or call_id not in self.asked:
            raise MessageError(f"a tool result for {call_id!r}, which no open call has")
        request, asked_in = self.asked.pop(call_id)
        text = text_of(message.get("content"))
        extra = extra_of(message, {"role": "tool", "tool_call_id": call_id, "content": text})
        agent.call_tool(
            request,
            effect=EffectClass.SIDE_EFFECTING,  # unknown: never re-run it blindly
            policy=Policy.ALLOW,
            actor=self.actor,
            caused_by=asked_in,
        )
        agent.start_tool(call_id, worker_id=self.actor, actor=self.actor)
        agent.succeed(call_id, text, actor=self.actor, extra=extra)

    def _leave_open_calls_to_a_person(self) -> None:
        """Calls asked for whose results the transcript does not hold: a person decides."""
        agent = self.agent
        assert agent is not None
        for request, asked_in in self.asked.values():
            agent.call_tool(
                request,
                effect=EffectClass.SIDE_EFFECTING,
                policy=Policy.ASK,
                actor=self.actor,
                caused_by=asked_in,
            )
            agent.request_permission(request.call_id, actor=self.actor)
        self.asked = {}
