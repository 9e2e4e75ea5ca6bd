"""The mapper's direct read (pydantic validating the stored JSON bytes) gives exactly the
event the general read gives (``json.loads``, upcast, ``model_validate``), for every event
type, and an edited row gives exactly the general read's outcome: the same event, or the
same clear error.

``PydanticMapper.to_domain_event`` tries :meth:`PydanticMapper.read_direct` first and
falls back to the general read when it returns None; the tests compare the two reads of
the same stored bytes, and check that the direct read did apply (or the comparison would
prove nothing).
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, ClassVar, get_args
from uuid import UUID

import pytest
from eventsourcing.cipher import AESCipher
from eventsourcing.persistence import StoredEvent
from eventsourcing.utils import Environment
from hypothesis import given
from hypothesis import strategies as st
from test_digest_property import NON_TEXT, PER_TYPE, json_objects, names, texts
from test_upcast_chain import Parcel

from agentlog.adapters.mapper import (
    JSONTranscoder,
    LargeStateCompressor,
    PydanticMapper,
    deflate,
)
from agentlog.domain import Agent, Aggregate, EffectClass, Policy, StoredEventError, ToolCallRequest
from agentlog.domain.graph_thread import (
    ChannelBlob,
    CheckpointRef,
    GraphThread,
    Payload,
    StoredWrite,
)
from agentlog.domain.item_session import ItemSession

payloads = st.builds(Payload, type=names, data=texts)
versions = st.integers(0, 2**40) | st.floats(allow_nan=False, allow_infinity=False) | texts
FIELDS: dict[str, st.SearchStrategy[Any]] = NON_TEXT | {
    "item": json_objects,
    "parent_id": st.none() | texts,
    "checkpoint": payloads,
    "metadata": payloads,
    "blobs": st.lists(
        st.builds(
            ChannelBlob,
            channel=names,
            version=versions,
            value=st.none() | payloads,
            base=st.none() | st.integers(0, 2**40),
        ),
        max_size=2,
    ).map(tuple),
    "source": st.none() | texts,
    "step": st.none() | st.integers(-1, 2**40),
    "run_id": st.none() | texts,
    "writes": st.lists(
        st.builds(
            StoredWrite, task_id=names, index=st.integers(0, 99), channel=names, value=payloads
        ),
        max_size=2,
    ).map(tuple),
    "removed": st.lists(
        st.builds(CheckpointRef, checkpoint_ns=texts, checkpoint_id=names), max_size=2
    ).map(tuple),
}
"""Values of every non-text field of the events of agents, item sessions and graph threads."""


def event_types() -> list[type[Aggregate.Event]]:
    """Every concrete event type of the built-in aggregates."""
    found = []
    for aggregate in (Agent, ItemSession, GraphThread):
        for value in vars(aggregate).values():
            is_event = isinstance(value, type) and issubclass(value, Aggregate.Event)
            if is_event and value.__name__ != "Event":
                found.append(value)
    return sorted(found, key=lambda cls: cls.TOPIC)


EVENT_TYPES = event_types()


def strategy(cls: type[Aggregate.Event], name: str) -> st.SearchStrategy[Any]:
    """Values for one field of an event type (None only where the field takes it)."""
    annotation = cls.model_fields[name].annotation
    if annotation is str and name != "prev_hash":
        return texts
    if type(None) in get_args(annotation):
        return FIELDS[name]
    return FIELDS[name].filter(lambda value: value is not None)


def cipher() -> AESCipher:
    return AESCipher(Environment(env={AESCipher.CIPHER_KEY: AESCipher.create_key(16)}))


MAPPERS: dict[str, Callable[[], PydanticMapper]] = {
    "plain": lambda: PydanticMapper(transcoder=JSONTranscoder()),
    "compressed": lambda: PydanticMapper(
        transcoder=JSONTranscoder(), compressor=LargeStateCompressor(threshold=0)
    ),
    "encrypted": lambda: PydanticMapper(
        transcoder=JSONTranscoder(), compressor=LargeStateCompressor(), cipher=cipher()
    ),
}


def general(mapper: PydanticMapper, stored: StoredEvent) -> Any:
    """The general read: decode the state to a dict, upcast, validate."""
    return mapper.event_from_state(stored, mapper.decode_state(stored))


def outcome(read: Callable[[StoredEvent], Any], stored: StoredEvent) -> tuple[Any, ...]:
    """What a read gives: the event (type, fields, dump) or the error (type, message)."""
    try:
        event = read(stored)
    except Exception as e:
        return ("error", type(e), str(e))
    # repr, not ==: it tells tuples from lists, -0.0 from 0, and NaN equals its own repr.
    return ("event", type(event), repr(event), json.dumps(event.stored_state()))


def test_every_field_of_every_event_type_has_a_strategy() -> None:
    assert len(EVENT_TYPES) > 40
    for cls in EVENT_TYPES:
        for name, field in cls.model_fields.items():
            if name != "digest" and field.annotation is not str:
                assert name in FIELDS, f"add a strategy for {cls.__name__}.{name}"


@pytest.mark.parametrize("cls", EVENT_TYPES, ids=lambda cls: cls.TOPIC)
@pytest.mark.parametrize("kind", list(MAPPERS))
@PER_TYPE
@given(data=st.data())
def test_the_direct_read_gives_the_general_reads_event(
    cls: type[Aggregate.Event], kind: str, data: st.DataObject
) -> None:
    mapper = MAPPERS[kind]()
    fields = {
        name: data.draw(strategy(cls, name), label=name)
        for name in cls.model_fields
        if name != "digest"
    }
    event = cls(**fields)
    stored = mapper.to_stored_event(event)
    expected = general(mapper, stored)
    direct = mapper.read_direct(stored)
    assert direct is not None, "the direct read did not apply"
    assert outcome(lambda _: direct, stored) == outcome(lambda _: expected, stored)
    assert direct == event
    assert direct.compute_digest() == direct.digest == event.digest
    assert outcome(mapper.to_domain_event, stored) == outcome(lambda _: expected, stored)


def a_row() -> tuple[StoredEvent, dict[str, Any]]:
    """A stored ToolCalled event, and its JSON state."""
    event = Agent.ToolCalled(
        originator_id=AGENT,
        originator_version=7,
        timestamp=T0,
        actor="agent",
        prev_hash=GENESIS_HASH,
        call_id="c1",
        tool="search",
        args={"q": "x", "n": 2, "deep": {"a": [1, 2.5, None]}},
        args_hash="h",
        effect=EffectClass.PURE,
        policy=Policy.ALLOW,
    )
    stored = PydanticMapper(transcoder=JSONTranscoder()).to_stored_event(event)
    return stored, json.loads(stored.state)


GENESIS_HASH = "0" * 64
AGENT = UUID("0b9d7e33-21aa-4c0e-8d0e-5a3f6c7b8d02")
T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
OTHER = UUID("6f1c1a52-8f6e-4d4b-9a57-0d5c2b1f4e01")


def edits(state: dict[str, Any]) -> dict[str, bytes]:
    """Rows edited by hand: bytes that may or may not read, each a way to get it wrong."""
    compact = json.dumps(state, separators=(",", ":"), ensure_ascii=False).encode()
    as_text = compact.decode()
    return {
        "as stored": compact,
        "wrong type": json.dumps(state | {"effect": "sometimes"}).encode(),
        "unknown key": json.dumps(state | {"colour": "red"}).encode(),
        "key missing": json.dumps({k: v for k, v in state.items() if k != "tool"}).encode(),
        "another id": json.dumps(state | {"originator_id": str(OTHER)}).encode(),
        "another version": json.dumps(state | {"originator_version": 99}).encode(),
        "an invalid id": json.dumps(state | {"originator_id": "nope"}).encode(),
        "class version 1": json.dumps(state | {"class_version": 1}).encode(),
        "class version 2": json.dumps(state | {"class_version": 2}).encode(),
        "lone surrogate": as_text.replace('"search"', '"se\\ud800arch"').encode(),
        "raw surrogate": as_text.replace('"search"', '"se\udc80arch"').encode(
            "utf-8", "surrogatepass"
        ),
        "NaN": json.dumps(state | {"args": {"x": float("nan")}}).encode(),
        "huge number": as_text.replace('"n":2', '"n":1e400').encode(),
        "duplicate key": as_text.replace('"tool":"search"', '"tool":"a","tool":"search"').encode(),
        "spaces around": b" \n" + compact + b" \n",
        "trailing comma": compact[:-1] + b",}",
        "truncated": compact[:-5],
        "empty object": b"{}",
        "an array": b"[1, 2]",
        "a string": b'"x"',
        "empty": b"",
        "utf-16": as_text.encode("utf-16-le"),
        "bom": b"\xef\xbb\xbf" + compact,
        "invalid utf-8": as_text.replace("search", "se\xffarch").encode("latin-1", "replace"),
        "control character": as_text.replace("search", "se\tarch").encode(),
        "deep nesting": json.dumps(state | {"args": {"x": [[[[[[[[[[[[1]]]]]]]]]]]]}}).encode(),
        "too deep": as_text.replace('"n":2', '"n":' + "[" * 300 + "]" * 300).encode(),
    }


@pytest.mark.parametrize("name", list(edits(a_row()[1])))
@pytest.mark.parametrize("compressed", [False, True], ids=["json", "zlib"])
def test_an_edited_row_reads_as_the_general_read_reads_it(name: str, compressed: bool) -> None:
    stored, state = a_row()
    data = edits(state)[name]
    if compressed:
        data = deflate(data)
    edited = StoredEvent(stored.originator_id, stored.originator_version, stored.topic, data)
    mapper = PydanticMapper(transcoder=JSONTranscoder(), compressor=LargeStateCompressor())
    expected = outcome(lambda s: general(mapper, s), edited)
    assert outcome(mapper.to_domain_event, edited) == expected
    if expected[0] == "error":  # a clear one: it names the row
        assert expected[1] is StoredEventError
        assert str(stored.originator_id) in expected[2]
        assert stored.topic in expected[2]
    else:
        event = mapper.to_domain_event(edited)
        assert (event.originator_id, event.originator_version) == (stored.originator_id, 7)


def test_edited_rows_read_as_stored_fail_and_fall_back_as_expected() -> None:
    """The edits above cover both sides: rows that read, rows that fail, rows the direct
    read rejects but the general one reads (so the fallback is exercised)."""
    stored, state = a_row()
    mapper = PydanticMapper(transcoder=JSONTranscoder())
    general(mapper, stored)  # resolves the topic
    read, failed, fell_back = set(), set(), set()
    for name, data in edits(state).items():
        edited = StoredEvent(stored.originator_id, stored.originator_version, stored.topic, data)
        direct = mapper.read_direct(edited)
        if outcome(lambda s: general(mapper, s), edited)[0] == "error":
            failed.add(name)
            assert direct is None, name
        else:
            read.add(name)
            if direct is None:
                fell_back.add(name)
    assert {"as stored", "another id", "duplicate key"} <= read - fell_back
    assert {"wrong type", "unknown key", "truncated", "an array", "empty"} <= failed
    assert {"lone surrogate", "class version 1", "spaces around"} <= fell_back


def test_a_compressed_row_that_does_not_inflate_gives_the_clear_error() -> None:
    stored, _ = a_row()
    mapper = PydanticMapper(transcoder=JSONTranscoder(), compressor=LargeStateCompressor())
    broken = zlib.compress(stored.state)[:-6] + b"\x00" * 6
    edited = StoredEvent(stored.originator_id, stored.originator_version, stored.topic, broken)
    with pytest.raises(StoredEventError, match="cannot be decoded"):
        mapper.to_domain_event(edited)


def test_a_wrong_cipher_key_gives_the_clear_error() -> None:
    stored, _ = a_row()
    writer = MAPPERS["encrypted"]()
    event = general(PydanticMapper(transcoder=JSONTranscoder()), stored)
    encrypted = writer.to_stored_event(event)
    with pytest.raises(StoredEventError, match="wrong cipher key"):
        MAPPERS["encrypted"]().to_domain_event(encrypted)


def test_rows_of_an_upcast_class_go_the_general_way_and_are_upcast() -> None:
    mapper = PydanticMapper(transcoder=JSONTranscoder())
    v1 = {"timestamp": "2025-03-01T09:00:00Z", "actor": "clerk", "prev_hash": GENESIS_HASH}
    v1 |= {"digest": "", "text": "fragile"}
    stored = StoredEvent(OTHER, 2, Parcel.Relabelled.TOPIC, json.dumps(v1).encode())
    event = mapper.to_domain_event(stored)
    assert isinstance(event, Parcel.Relabelled)
    assert event.caption == "fragile"
    assert mapper.read_direct(stored) is None  # v1 of a v3 class: only the general read upcasts
    current = mapper.to_stored_event(event)
    assert mapper.read_direct(current) is None  # stored with its class version
    assert mapper.to_domain_event(current) == event


class Tally(Aggregate.Event):
    """v1 counted in dozens; v2 counts items, in the same field."""

    TOPIC: ClassVar[str] = "mapper-direct-test:Tally@1"
    class_version: ClassVar[int] = 2
    count: int

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        """Dozens to items: the same shape, another value."""
        state["count"] *= 12


def test_an_old_row_that_fits_the_new_class_as_it_is_is_still_upcast() -> None:
    mapper = PydanticMapper(transcoder=JSONTranscoder())
    v1 = {"timestamp": "2025-03-01T09:00:00Z", "actor": "clerk", "prev_hash": GENESIS_HASH}
    stored = StoredEvent(OTHER, 2, Tally.TOPIC, json.dumps(v1 | {"count": 3}).encode())
    assert mapper.to_domain_event(stored).count == 36
    assert mapper.to_domain_event(stored).count == 36  # the topic now resolved


def test_a_row_id_that_is_text_goes_the_general_way() -> None:
    stored, _ = a_row()
    mapper = PydanticMapper(transcoder=JSONTranscoder())
    as_text = StoredEvent(
        str(stored.originator_id), stored.originator_version, stored.topic, stored.state
    )
    assert mapper.read_direct(as_text) is None
    assert mapper.to_domain_event(as_text) == mapper.to_domain_event(stored)


def test_many_agents_read_their_own_ids() -> None:
    """Past the ids the mapper keeps, each row still reads its own id and version."""
    stored, _ = a_row()
    mapper = PydanticMapper(transcoder=JSONTranscoder())
    for i in range(5000):
        agent = UUID(int=i * 7919 + 1)
        row = StoredEvent(agent, i % 3 + 1, stored.topic, stored.state)
        event = mapper.to_domain_event(row)
        assert (event.originator_id, event.originator_version) == (agent, i % 3 + 1)


def test_tool_call_requests_stay_tuples() -> None:
    mapper = PydanticMapper(transcoder=JSONTranscoder())
    event = Agent.ModelResponded(
        originator_id=OTHER,
        originator_version=3,
        timestamp=T0,
        actor="model",
        text="",
        model="m",
        tool_calls=(ToolCallRequest(call_id="a", tool="t", args={"k": [1]}),),
    )
    read = mapper.to_domain_event(mapper.to_stored_event(event))
    assert type(read.tool_calls) is tuple
    assert read == event
    assert mapper.read_direct(mapper.to_stored_event(event)) == event
