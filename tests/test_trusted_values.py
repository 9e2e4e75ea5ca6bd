"""Values a step makes without validating them (``agentlog.domain.trusted``) are the very
values validation makes: equal, hashing alike, the same fields in the same order, the
same fields set, the same JSON."""

from __future__ import annotations

import json
from typing import Any, ClassVar
from uuid import uuid4

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from pydantic import BaseModel, JsonValue
from test_digest_property import json_values

from agentlog.domain.agent import Agent
from agentlog.domain.messages import (
    TranscriptBuilder,
    message_for,
    replay_transcript,
    summary_message,
    tool_content,
)
from agentlog.domain.ports import Message
from agentlog.domain.values import (
    AgentConfig,
    CallStage,
    CallState,
    EffectClass,
    Policy,
    TokenUsage,
    ToolCallRequest,
)

texts = st.text(st.characters(exclude_categories=["Cs"]))  # what an event can hold


def same(made: BaseModel, validated: BaseModel) -> None:
    """``made`` is what validation gave as ``validated``, in every way a reader sees."""
    assert type(made) is type(validated)
    assert made == validated
    try:
        expected_hash = hash(validated)
    except TypeError:  # a value holding a dict (a call's arguments) has no hash
        with pytest.raises(TypeError):
            hash(made)
    else:
        assert hash(made) == expected_hash
    assert list(vars(made)) == list(vars(validated))
    assert made.model_fields_set == validated.model_fields_set
    assert made.model_dump_json() == validated.model_dump_json()
    assert made.model_dump(exclude_unset=True) == validated.model_dump(exclude_unset=True)
    assert type(made).model_validate(made.model_dump()) == made


def running_agent() -> Agent:
    agent = Agent.create("a", AgentConfig(system_prompt="be brief"))
    agent.start_task("goal")
    return agent


@given(args=st.dictionaries(texts, json_values, max_size=3), caused_by=st.integers(1, 9))
def test_a_recorded_call_is_the_call_state_validation_makes(
    args: dict[str, JsonValue], caused_by: int
) -> None:
    agent = running_agent()
    call = ToolCallRequest(call_id="c1", tool="calculator", args=args)
    agent.call_tool(call, effect=EffectClass.IDEMPOTENT, policy=Policy.ASK, caused_by=caused_by)
    event = agent.collect_events()[-1]
    assert isinstance(event, Agent.ToolCalled)
    validated = CallState(
        tool="calculator",
        args_hash=event.args_hash,
        effect=EffectClass.IDEMPOTENT,
        policy=Policy.ASK,
        stage=CallStage.REQUESTED,
        last_version=event.originator_version,
        called_version=event.originator_version,
        asked_version=caused_by,
    )
    same(agent.calls["c1"], validated)


@example(prompt=0, completion=0, before=(3, 4))  # used none: adds none
@example(prompt=0, completion=5, before=(3, 4))
@example(prompt=5, completion=0, before=(0, 0))
@given(
    prompt=st.integers(0, 10**12),
    completion=st.integers(0, 10**12),
    before=st.tuples(st.integers(0, 10**12), st.integers(0, 10**12)),
)
def test_tokens_add_up_to_the_usage_validation_makes(
    prompt: int, completion: int, before: tuple[int, int]
) -> None:
    agent = running_agent()
    agent.tokens = TokenUsage(prompt=before[0], completion=before[1])
    usage = TokenUsage(prompt=prompt, completion=completion)
    agent.record_model_response("hi", model="m", usage=usage)
    same(agent.tokens, TokenUsage(prompt=before[0] + prompt, completion=before[1] + completion))


@given(text=texts, error=texts, args=json_values)
def test_the_models_messages_are_the_messages_validation_makes(
    text: str, error: str, args: JsonValue
) -> None:
    agent = running_agent()
    call = ToolCallRequest(call_id="c1", tool="t", args={"x": args})
    agent.record_model_response(text, model="m", tool_calls=(call,))
    agent.call_tool(call, effect=EffectClass.PURE, policy=Policy.ALLOW)
    agent.reject_tool_call(ToolCallRequest(call_id="c2", tool="u"), error)
    agent.compact(agent.version, text, summarizer="s")
    events = agent.collect_events()
    expected = [
        Message(role="system", content="be brief"),
        Message(role="user", content="goal"),
        Message(role="assistant", content=text, tool_calls=(call,)),
        Message(role="tool", content=f"error: {error}", call_id="c2"),
    ]
    made = [m for m in map(message_for, events) if m is not None]
    for m, validated in zip(made, expected, strict=True):
        same(m, validated)
    compacted = events[-1]
    assert isinstance(compacted, Agent.ContextCompacted)
    summary = Message(role="user", content=summary_message(compacted).content)
    same(summary_message(compacted), summary)
    assert replay_transcript(events) == [expected[0], summary]


@given(result=json_values)
def test_a_results_text_is_its_json_as_json_dumps_writes_it(result: JsonValue) -> None:
    expected = result if isinstance(result, str) else json.dumps(result, ensure_ascii=False)
    assert tool_content(result) == expected


class NoteTaken(Agent.Event):
    """An event of a user's own that says something to the model."""

    TOPIC: ClassVar[str] = "tests:NoteTaken@1"
    note: str


class Subnote(NoteTaken):
    """A note of another kind (no message of its own registered: its base's is used)."""

    TOPIC: ClassVar[str] = "tests:Subnote@1"


def test_a_message_registered_later_replaces_the_one_looked_up_before() -> None:
    agent_id, now = uuid4(), Agent.Event.create_timestamp()
    events = [
        cls(originator_id=agent_id, originator_version=v, timestamp=now, actor="u", note=note)
        for v, (cls, note) in enumerate([(NoteTaken, "one"), (Subnote, "two")], start=1)
    ]
    assert replay_transcript(events) == []  # nothing registered yet: no message

    def first(event: Any) -> Message | None:
        return Message(role="user", content=f"first: {event.note}")

    def second(event: Any) -> Message | None:
        return Message(role="user", content=f"second: {event.note}")

    message_for.register(NoteTaken, first)
    assert [m.content for m in replay_transcript(events)] == ["first: one", "first: two"]
    message_for.register(NoteTaken, second)  # the same class, a new implementation
    assert [m.content for m in TranscriptBuilder().apply(events).messages()] == [
        "second: one",
        "second: two",
    ]

    @message_for.register(Subnote)
    def third(event: Any) -> Message | None:
        return Message(role="user", content=f"third: {event.note}")

    assert [m.content for m in replay_transcript(events)] == ["second: one", "third: two"]
