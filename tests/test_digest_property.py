"""Digests and argument hashes change with every fact they cover, and with nothing else.

An event's digest must change when its predecessor's hash or any of its content
changes (or the chain would not show the edit), and must not change with the order of a
dict's keys (or the same event would verify on one machine and not on another). The
same goes for a tool call's arguments hash, which binds a grant to the arguments. The
properties compare digests with each other only, never with a recomputation.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from agentlog.domain import (
    Agent,
    AgentConfig,
    EffectClass,
    Lineage,
    Policy,
    TokenUsage,
    ToolCallRequest,
    args_hash,
    event_digest,
)
from agentlog.domain.inheritance import Inheritance
from agentlog.domain.ports import Message

texts = st.text(st.characters(codec="utf-8"), max_size=12)  # no lone surrogates
names = st.from_regex(r"[a-z][a-z0-9_]{0,7}", fullmatch=True)
hashes = st.text("0123456789abcdef", min_size=64, max_size=64)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | texts
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=8,
)
json_objects = st.dictionaries(texts, json_values, max_size=4)
counts = st.integers(0, 2**40)

NON_TEXT: dict[str, st.SearchStrategy[Any]] = {
    "originator_id": st.uuids(),
    "originator_version": st.integers(1, 2**40),
    "timestamp": st.datetimes(min_value=datetime(2000, 1, 1), timezones=st.just(UTC)),
    "caused_by": st.none() | counts,
    "prev_hash": hashes,
    "config": st.builds(
        AgentConfig,
        model=texts,
        system_prompt=texts,
        tool_policies=st.dictionaries(names, st.sampled_from(Policy), max_size=3),
    ),
    "lineage": st.none()
    | st.builds(Lineage, parent_id=st.uuids(), parent_version=st.integers(1), parent_digest=hashes),
    "inherited": st.none()
    | st.builds(
        Inheritance,
        state=json_objects,
        context=st.lists(
            st.builds(Message, role=st.sampled_from(["system", "user"]), content=texts),
            max_size=2,
        ).map(tuple),
    ),
    "tool_calls": st.lists(
        st.builds(ToolCallRequest, call_id=names, tool=names, args=json_objects), max_size=2
    ).map(tuple),
    "usage": st.builds(TokenUsage, prompt=counts, completion=counts),
    "finish_reason": st.none() | texts,
    "value": st.floats(allow_nan=False, allow_infinity=False),
    "args": json_objects,
    "effect": st.sampled_from(EffectClass),
    "policy": st.sampled_from(Policy),
    "attempt": counts,
    "result": json_values,
    "through_version": counts,
    "extra": json_objects,
    "interrupted": st.booleans(),
}
"""Values of the events' fields that are not plain text (any text will do for those)."""
PER_TYPE = settings(max_examples=max(10, settings().max_examples // 3))
"""Every event type gets its own examples: a third of the profile's, at least 10."""
EVENT_TYPES = sorted(
    (
        v
        for v in vars(Agent).values()
        if isinstance(v, type) and issubclass(v, Agent.Event) and v is not Agent.Event
    ),
    key=lambda cls: cls.__name__,
)


def strategy(cls: type[Agent.Event], name: str) -> st.SearchStrategy[Any]:
    """Values for one field of an event type."""
    if cls.model_fields[name].annotation is str and name != "prev_hash":
        return texts
    return NON_TEXT[name]


def fields_of(cls: type[Agent.Event]) -> list[str]:
    """The fields an event stores, but its own digest."""
    return [n for n in cls.model_fields if n != "digest"]


def draw_event(data: st.DataObject, cls: type[Agent.Event]) -> dict[str, Any]:
    """Random values for every field of an event type."""
    return {n: data.draw(strategy(cls, n), label=n) for n in fields_of(cls)}


def reverse_keys(value: Any) -> Any:
    """The same value with every dict's keys in reverse order, at every depth."""
    if isinstance(value, dict):
        return {k: reverse_keys(v) for k, v in reversed(value.items())}
    if isinstance(value, list | tuple):
        return type(value)(reverse_keys(v) for v in value)
    if isinstance(value, BaseModel):
        return type(value).model_validate(reverse_keys(dict(value)))
    return value


def different(data: st.DataObject, values: st.SearchStrategy[Any], old: Any, label: str) -> Any:
    """One of ``values`` that is not ``old``."""

    def not_old(value: Any) -> bool:
        return bool(value != old)

    return data.draw(values.filter(not_old), label=label)


@pytest.mark.parametrize("cls", EVENT_TYPES, ids=lambda cls: cls.__name__)
def test_every_field_of_every_agent_event_is_one_this_test_can_vary(
    cls: type[Agent.Event],
) -> None:
    for name in fields_of(cls):
        is_text = cls.model_fields[name].annotation is str
        assert is_text or name in NON_TEXT, f"add a strategy for {cls.__name__}.{name}"


@pytest.mark.parametrize("cls", EVENT_TYPES, ids=lambda cls: cls.__name__)
@PER_TYPE
@given(data=st.data())
def test_changing_any_one_field_of_an_event_changes_its_digest(
    cls: type[Agent.Event], data: st.DataObject
) -> None:
    fields = draw_event(data, cls)
    event = cls(**fields)
    assert cls(**fields).digest == event.digest  # the same facts, the same digest
    for name in fields:  # prev_hash, identity, time, actor, causation and content alike
        new = different(data, strategy(cls, name), fields[name], name)
        changed = cls(**fields | {name: new})
        assert changed.digest != event.digest, f"{name} does not feed the digest"
        assert changed.compute_digest() != event.compute_digest(), name


@pytest.mark.parametrize("cls", EVENT_TYPES, ids=lambda cls: cls.__name__)
@PER_TYPE
@given(data=st.data())
def test_an_events_digest_does_not_depend_on_the_order_of_dict_keys(
    cls: type[Agent.Event], data: st.DataObject
) -> None:
    fields = draw_event(data, cls)
    event, reordered = cls(**fields), cls(**reverse_keys(fields))
    assert reordered.digest == event.digest
    assert reordered.compute_digest() == event.compute_digest()
    payload = event.stored_state()
    identity = (event.TOPIC, str(event.originator_id), event.originator_version)
    assert event_digest(*identity, reverse_keys(payload)) == event_digest(*identity, payload)


@given(
    payload=st.dictionaries(names, json_values, min_size=1, max_size=6),
    topic=texts,
    originator_id=texts,
    version=counts,
    data=st.data(),
)
def test_event_digest_changes_with_its_topic_identity_version_and_every_payload_key(
    payload: dict[str, Any], topic: str, originator_id: str, version: int, data: st.DataObject
) -> None:
    payload.pop("digest", None)
    digest = event_digest(topic, originator_id, version, payload)
    assert event_digest(topic, originator_id, version, reverse_keys(payload)) == digest
    assert event_digest(topic, originator_id, version, payload | {"digest": "x"}) == digest
    other_topic = different(data, texts, topic, "other topic")
    other_id = different(data, texts, originator_id, "other id")
    assert event_digest(other_topic, originator_id, version, payload) != digest
    assert event_digest(topic, other_id, version, payload) != digest
    assert event_digest(topic, originator_id, version + 1, payload) != digest
    for key, value in payload.items():
        changed = payload | {key: different(data, json_values, value, key)}
        assert event_digest(topic, originator_id, version, changed) != digest, key
    extra = different(data, names.filter(lambda k: k not in payload), "digest", "extra key")
    assert event_digest(topic, originator_id, version, payload | {extra: None}) != digest


arguments = st.dictionaries(names, json_values, min_size=2, max_size=5)


@given(args=arguments, inner=arguments, data=st.data())
def test_args_hash_does_not_depend_on_key_order_at_any_depth(
    args: dict[str, Any], inner: dict[str, Any], data: st.DataObject
) -> None:
    nested = args | {"nested": inner}
    assert args_hash(reverse_keys(nested)) == args_hash(nested)
    assert args_hash(nested | {"nested": reverse_keys(inner)}) == args_hash(nested)
    shuffled = dict(data.draw(st.permutations(list(nested.items())), label="shuffled"))
    assert args_hash(shuffled) == args_hash(nested)


@given(args=arguments, data=st.data())
def test_args_hash_differs_for_different_arguments(
    args: dict[str, Any], data: st.DataObject
) -> None:
    digest = args_hash(args)
    for key, value in args.items():
        assert args_hash(args | {key: different(data, json_values, value, key)}) != digest
        renamed = different(data, names.filter(lambda k: k not in args), key, f"rename {key}")
        moved = {renamed if k == key else k: v for k, v in args.items()}
        assert args_hash(moved) != digest
        assert args_hash({k: v for k, v in args.items() if k != key}) != digest
    assert args_hash({"outer": args}) != digest
