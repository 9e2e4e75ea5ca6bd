"""An event sealed the short way gets the digest and the stored bytes the long way gives.

``sealed_json`` hashes and stores an event's state from one encoding of it (splicing
the digest member out, and the row's topic, id and version in); these properties hold
it to the two encodings it replaces: ``event_digest`` of the state and ``canonical`` of
the state with that digest, for states of any keys, values and nesting (a nested
``digest`` member, keys sorting before ``_topic``, the digest alone).
"""

from __future__ import annotations

from typing import Any
from uuid import uuid4

from hypothesis import given, settings
from hypothesis import strategies as st

from agentlog.adapters.mapper import JSONTranscoder, PydanticMapper
from agentlog.domain import Agent, AgentConfig
from agentlog.domain.chain import canonical, event_digest, sealed_json

KEYS = st.one_of(
    st.sampled_from(["digest", "actor", "_x", "Zed", "a", "digest2", "_topic", "prev_hash"]),
    st.text(max_size=8),
)
VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=12) | st.just(""),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=3),
    max_leaves=8,
)
STATES = st.dictionaries(KEYS, VALUES, max_size=6).map(lambda d: {**d, "digest": ""})
LOWER = st.dictionaries(
    st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=8).filter(
        lambda k: not k.startswith("_")
    ),
    VALUES,
    max_size=6,
)


def _long_way(topic: str, agent: str, version: int, state: dict[str, Any]) -> tuple[str, bytes]:
    digest = event_digest(topic, agent, version, state)
    return digest, canonical({**state, "digest": digest})


@settings(max_examples=300)
@given(state=STATES, topic=st.text(max_size=10), version=st.integers(1, 10**6))
def test_the_short_way_gives_the_long_ways_digest_and_bytes_or_nothing(
    state: dict[str, Any], topic: str, version: int
) -> None:
    agent = str(uuid4())
    sealed = sealed_json(topic, agent, version, state)
    if sealed is not None:
        assert sealed == _long_way(topic, agent, version, state)


@settings(max_examples=200)
@given(state=LOWER, topic=st.text(max_size=10), version=st.integers(1, 10**6))
def test_states_of_field_names_take_the_short_way(
    state: dict[str, Any], topic: str, version: int
) -> None:
    state = {**state, "digest": ""}
    agent = str(uuid4())
    nested = canonical(state).count(b'"digest":""') > 1
    sealed = sealed_json(topic, agent, version, state)
    assert (sealed is None) == nested  # only a nested empty digest sends it the long way
    if sealed is not None:
        assert sealed == _long_way(topic, agent, version, state)


def test_an_agents_events_are_stored_as_the_canonical_json_their_digest_hashes() -> None:
    mapper = PydanticMapper(transcoder=JSONTranscoder())
    agent = Agent.create("a", AgentConfig())
    agent.trigger_event(Agent.TaskStarted, goal='say "digest":"" twice', actor="user")
    for event in agent.collect_events():
        stored = mapper.to_stored_event(event)
        state = mapper.decode_state(stored)
        assert stored.state == canonical(state)
        assert list(state) == sorted(state)
        assert event.digest == event_digest(
            event.TOPIC, str(agent.id), event.originator_version, state
        )
