"""The model's context read from the log: the system prompt, the latest compaction's
summary and what followed. It equals replaying the whole log, and reads only the tail."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any
from uuid import UUID

from hypothesis import given
from hypothesis import strategies as st

from agentlog.adapters.storage import env_for, open_log
from agentlog.domain import AgentConfig, AgentLog
from agentlog.domain.messages import replay_transcript
from agentlog.domain.runtime import LogTranscript

moves = st.lists(
    st.one_of(
        st.tuples(st.just("say"), st.text(max_size=5)),
        st.tuples(st.just("answer"), st.text(max_size=5)),
        st.tuples(st.just("compact"), st.integers(0, 4)),
    ),
    max_size=30,
)


class CountingLog(AgentLog):
    """Counts the events ``events_of`` hands out."""

    name = "agentlog"
    read = 0

    def events_of(self, agent_id: UUID, **kwargs: Any) -> Any:
        """Count as they are read."""
        for event in super().events_of(agent_id, **kwargs):
            self.read += 1
            yield event


def live(log: AgentLog, prompt: str, plan: list[tuple[str, Any]]) -> UUID:
    """An agent that talks and is compacted now and then (``back`` versions behind)."""
    agent_id = log.create_agent("a", AgentConfig(system_prompt=prompt, max_steps=10**6))
    log.start_task(agent_id, "talk")
    move(log, agent_id, plan)
    return agent_id


def move(log: AgentLog, agent_id: UUID, plan: list[tuple[str, Any]]) -> None:
    """Say, answer and compact as the plan says."""
    for kind, value in plan:
        agent = log.get(agent_id)
        if kind == "say":
            agent.receive_user_message(value)
        elif kind == "answer":
            agent.record_model_response(value, model="m")
        elif agent.version - value > agent.compacted_through:
            agent.compact(agent.version - value, f"summary {agent.version}", summarizer="s")
        log.save(agent)


@given(prompt=st.sampled_from(["", "be brief"]), plan=moves)
def test_context_from_the_tail_equals_replaying_the_whole_log(
    prompt: str, plan: list[tuple[str, Any]]
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        log = open_log(f"sqlite:///{Path(folder) / 'a.db'}", snapshot_interval=3)
        try:
            agent_id = live(log, prompt, plan)
            agent = log.get(agent_id)
            everything = replay_transcript(log.events_of(agent_id))
            assert LogTranscript(log).messages(agent) == everything
        finally:
            log.close()


def test_context_after_a_compaction_reads_only_the_tail(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    log = CountingLog(env_for(url))
    try:
        agent_id = live(log, "be brief", [("say", f"m{n}") for n in range(200)])
        agent = log.get(agent_id)
        agent.compact(agent.version - 2, "all that", summarizer="s")
        log.save(agent)
        agent = log.get(agent_id)
        log.read = 0
        messages = LogTranscript(log).messages(agent)
        assert [m.content for m in messages] == [
            "be brief",
            "[summary of the conversation so far]\nall that",
            "m198",
            "m199",
        ]
        assert log.read == 4  # Created, the last two messages, the compaction
    finally:
        log.close()


@given(plans=st.lists(st.tuples(st.integers(0, 2), moves), min_size=1, max_size=6))
def test_a_cached_context_extended_by_new_events_equals_replaying_the_whole_log(
    plans: list[tuple[int, list[tuple[str, Any]]]],
) -> None:
    """Three agents, moved in turns by another writer; one cache of two contexts reads them
    after every turn (evictions, compactions and older loads included)."""
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'a.db'}"
        writer, reader = open_log(url), open_log(url, aggregate_cache=2)
        try:
            ids = [live(writer, "be brief", []) for _ in range(3)]
            cached = LogTranscript(reader, cache_size=2)
            for n, plan in plans:
                stale = reader.get(ids[n])
                move(writer, ids[n], plan)
                for agent in (reader.get(ids[n]), stale):
                    expected = replay_transcript(reader.events_of(agent.id, upto=agent.version))
                    assert cached.messages(agent) == expected
                assert reader.get(ids[n]).state() == writer.get(ids[n]).state()
        finally:
            writer.close()
            reader.close()
