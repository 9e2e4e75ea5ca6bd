"""The shortcuts a worker's step takes give exactly what the long way gives.

* An event sealed here keeps the state it hashed, and the mapper stores that very
  state: the bytes are those ``stored_state()`` would give, and they decode to the same
  event, field for field, whose digest the stored row verifies.
* A copy of a sealed event (``model_copy``, ``deepcopy``) is stored as what it holds,
  never as what the original was sealed with: a copy edited in memory does not verify.
* A row read back byte for byte as this process stored it is that very event, with
  that link; any other row (edited, resealed, under another topic) is decoded and hashed
  from what was read, and an edit breaks the chain as before.
* The JSON encoders built once write what ``json.dumps`` writes, errors included; small
  states deflate to a zlib stream any inflate reads.
"""

from __future__ import annotations

import copy
import json
import zlib
from typing import Any
from uuid import uuid4

import pytest
from eventsourcing.domain import ProgrammingError
from eventsourcing.persistence import StoredEvent
from hypothesis import given
from hypothesis import strategies as st
from test_digest_property import EVENT_TYPES, PER_TYPE, draw_event

from agentlog.adapters.mapper import (
    COMPRESS_AT,
    SMALL,
    JSONTranscoder,
    LargeStateCompressor,
    PydanticMapper,
    deflate,
)
from agentlog.domain import Agent, AgentConfig, Aggregate
from agentlog.domain.chain import ChainLinks, Link, canonical
from agentlog.domain.messages import TranscriptBuilder, entries_for, summary_message
from agentlog.domain.ports import Message
from agentlog.domain.stored_tail import read_row
from agentlog.domain.values import TokenUsage

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=10,
)


def mapper() -> PydanticMapper:
    """The mapper a store uses by default (JSON, large states compressed)."""
    return PydanticMapper(transcoder=JSONTranscoder(), compressor=LargeStateCompressor())


def outcome(encode: Any, value: Any) -> tuple[str, Any]:
    """What encoding gives: the bytes, or the error's type and message."""
    try:
        return "value", encode(value)
    except Exception as e:  # the error itself is compared
        return type(e).__name__, str(e)


def link_of(stored: StoredEvent, m: PydanticMapper) -> Link:
    """The link the long way makes of a stored row: decoded and hashed as read."""
    state = m.decode_state(stored)
    return Link.of(stored.topic, str(stored.originator_id), stored.originator_version, state)


# --- an event is sealed once, and stored as it was sealed --------------------------------


@pytest.mark.parametrize("cls", EVENT_TYPES, ids=lambda cls: cls.__name__)
@PER_TYPE
@given(data=st.data())
def test_an_event_sealed_here_is_stored_as_its_stored_state_byte_for_byte(
    cls: type[Agent.Event], data: st.DataObject
) -> None:
    m = mapper()
    event = cls(**draw_event(data, cls))
    assert event.sealed() == event.stored_state()
    stored = m.to_stored_event(event)
    # stored as canonical JSON (what its digest hashes), read back in that key order
    assert stored.state == m.pack(canonical(event.stored_state()))
    assert stored.state == m.encode_state(m.decode_state(stored))  # as verify re-encodes
    decoded = m.to_domain_event(stored)
    assert decoded == event
    assert decoded.model_dump() == event.model_dump()
    assert decoded.sealed() is None  # read from a row: nothing sealed here
    assert m.to_stored_event(decoded).state == stored.state  # and stored alike once more
    assert event.sealed() is None  # stored: the sealed state is not carried on
    assert m.to_stored_event(event).state == stored.state  # the long way, the same bytes
    assert link_of(stored, m).digest == event.digest == event.compute_digest()


def test_a_copy_edited_in_memory_is_stored_as_it_is_and_fails_verification() -> None:
    m = mapper()
    agent = Agent.create("a", AgentConfig())
    agent.trigger_event(Agent.TaskStarted, goal="honest goal", actor="user")
    (created, started) = agent.collect_events()
    edited = started.model_copy(update={"goal": "evil goal"})
    assert edited.digest == started.digest  # what an edit in memory keeps
    assert edited.sealed() is None
    stored = m.to_stored_event(edited)
    assert m.decode_state(stored)["goal"] == "evil goal"  # not the state sealed before
    links = ChainLinks()
    links.feed(created.TOPIC, str(agent.id), 1, m.decode_state(m.to_stored_event(created)))
    with pytest.raises(ValueError, match="stored digest does not match its content"):
        links.follow(link_of(stored, m))


def test_a_deep_copy_of_a_sealed_event_is_stored_as_the_long_way_stores_it() -> None:
    m = mapper()
    agent = Agent.create("a", AgentConfig())
    agent.trigger_event(Agent.TaskStarted, goal="goal", actor="user")
    (_, started) = agent.collect_events()
    twin = copy.deepcopy(started)
    assert twin.sealed() is None  # another object: its own state is built
    assert m.to_stored_event(twin).state == m.to_stored_event(started).state


def test_an_event_whose_digest_was_changed_after_sealing_is_not_stored_as_sealed() -> None:
    agent = Agent.create("a", AgentConfig())
    agent.trigger_event(Agent.TaskStarted, goal="goal", actor="user")
    (_, started) = agent.collect_events()
    object.__setattr__(started, "digest", "0" * 64)
    assert started.sealed() is None
    assert m_state(started)["digest"] == "0" * 64


def m_state(event: Aggregate.Event) -> dict[str, Any]:
    """The state the mapper stores for the event, decoded."""
    m = mapper()
    return m.decode_state(m.to_stored_event(event))


# --- a row read back unchanged is the event stored; any other is decoded ---------------


def stored_call() -> tuple[PydanticMapper, Aggregate.Event, StoredEvent]:
    """A model response sealed and stored by this process (large: compressed)."""
    agent = Agent.create("a", AgentConfig())
    agent.trigger_event(Agent.TaskStarted, goal="goal", actor="user")
    agent.record_model_response("x" * 2 * COMPRESS_AT, model="m", usage=TokenUsage(prompt=1))
    event = agent.collect_events()[-1]
    m = mapper()
    return m, event, m.to_stored_event(event)


def test_a_row_read_back_unchanged_is_the_event_stored_with_the_link_the_long_way_gives() -> None:
    m, event, stored = stored_call()
    row = read_row(m, stored, event)
    assert row.event is event  # not decoded again
    assert row.link == link_of(stored, m)  # what decoding and hashing the bytes gives


def edited(stored: StoredEvent, **changes: Any) -> StoredEvent:
    """The row with its state edited (the same digest: not resealed)."""
    state = json.loads(zlib.decompress(stored.state))
    state.update(changes)
    return StoredEvent(
        stored.originator_id, stored.originator_version, stored.topic, json.dumps(state).encode()
    )


def test_an_edited_row_is_decoded_from_what_was_read_and_breaks_the_chain() -> None:
    m, event, stored = stored_call()
    row = read_row(m, edited(stored, text="evil"), event)
    assert row.event is not event
    assert isinstance(row.event, Agent.ModelResponded)
    assert row.event.text == "evil"
    assert row.link is not None
    with pytest.raises(ValueError, match="stored digest does not match its content"):
        ChainLinks().follow(row.link)


def test_a_row_under_another_topic_or_version_or_id_is_decoded() -> None:
    m, event, stored = stored_call()
    others = [
        StoredEvent(stored.originator_id, stored.originator_version, "other:Topic@1", stored.state),
        StoredEvent(
            stored.originator_id, stored.originator_version + 1, stored.topic, stored.state
        ),
        StoredEvent(uuid4(), stored.originator_version, stored.topic, stored.state),
    ]
    for other in others:
        assert read_row(m, other, event).event is not event


def test_a_copy_of_an_event_read_or_stored_here_is_no_stand_in_for_its_row() -> None:
    m, event, stored = stored_call()
    twin = event.model_copy()  # carries the original's notes: they are not its own
    assert read_row(m, stored, twin).event is not twin
    decoded = read_row(m, stored).event  # decoded here: it now stands for that row
    assert decoded is not None
    assert read_row(m, stored, decoded).event is decoded


def test_the_row_of_an_event_read_from_a_store_stands_for_it_when_read_again() -> None:
    m, _, stored = stored_call()
    first = read_row(m, stored)
    assert first.event is not None
    again = read_row(m, edited(stored, text="evil"), first.event)
    assert again.event is not first.event  # an edit since is read as it is


# --- the JSON encoders built once, and deflating small states --------------------------


@given(json_values)
def test_canonical_json_is_what_json_dumps_writes_errors_included(value: Any) -> None:
    def dumps(v: Any) -> bytes:
        return json.dumps(
            v, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        ).encode()

    assert outcome(canonical, value) == outcome(dumps, value)


@given(st.dictionaries(st.text(), json_values, max_size=5))
def test_stored_json_is_what_json_dumps_writes_errors_included(state: dict[str, Any]) -> None:
    def dumps(v: Any) -> bytes:
        return json.dumps(v, separators=(",", ":"), ensure_ascii=False).encode()

    assert outcome(JSONTranscoder().encode, state) == outcome(dumps, state)


@given(st.binary(min_size=COMPRESS_AT, max_size=2 * SMALL) | st.text(min_size=100).map(str.encode))
def test_a_deflated_state_is_a_zlib_stream_any_inflate_reads(data: bytes) -> None:
    packed = deflate(data)
    assert packed[:2] == zlib.compress(data)[:2]  # the same header: window and level
    assert zlib.decompress(packed) == data
    if len(data) >= SMALL:
        assert packed == zlib.compress(data)


def test_triggering_the_base_event_or_an_unregistered_topic_is_refused() -> None:
    class Stray(Agent.Event):
        TOPIC = "tests:Stray@1"

    agent = Agent.create("a", AgentConfig())
    with pytest.raises(ProgrammingError, match="Triggering base 'Event' class is prohibited"):
        agent.trigger_event(Agent.Event, actor="user")
    Stray.TOPIC = "tests:StrayUnregistered@1"
    with pytest.raises(ProgrammingError, match="is not registered"):
        agent.trigger_event(Stray, actor="user")
    assert agent.version == 1


# --- the model's messages come out in order without sorting them every step ------------


class SortingBuilder:
    """The transcript as it was built before: every message by its place, sorted on read."""

    def __init__(self) -> None:
        self.messages: dict[int, Message] = {}

    def apply(self, event: Aggregate.Event) -> None:
        if isinstance(event, Agent.ContextCompacted):
            for v in [v for v, m in self.messages.items() if v <= event.through_version]:
                if self.messages[v].role != "system":
                    del self.messages[v]
            self.messages[event.through_version] = summary_message(event)
        else:
            self.messages.update(entries_for(event))

    def read(self) -> list[Message]:
        return [self.messages[v] for v in sorted(self.messages)]


@given(st.lists(st.tuples(st.booleans(), st.integers(0, 6), st.booleans()), max_size=25))
def test_the_messages_come_out_in_the_order_of_their_places(
    steps: list[tuple[bool, int, bool]],
) -> None:
    agent = Agent.create("a", AgentConfig(system_prompt="be brief"))
    agent.trigger_event(Agent.TaskStarted, goal="goal", actor="user")
    builder, oracle = TranscriptBuilder(), SortingBuilder()
    for event in agent.collect_events():
        builder.apply([event])
        oracle.apply(event)
    for compact, back, read in steps:
        if compact and agent.version - back > agent.compacted_through:
            agent.compact(agent.version - back, f"summary {agent.version}", summarizer="s")
        else:
            agent.receive_user_message(f"message {agent.version}")
        (event,) = agent.collect_events()
        builder.apply([event])
        oracle.apply(event)
        if read:
            assert builder.messages() == oracle.read()
            assert [m for _, m in builder.entries()] == oracle.read()
    assert builder.messages() == oracle.read()
