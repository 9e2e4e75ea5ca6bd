"""A worker skips an agent it just found with nothing to do until the runnable view has
seen something newer, or a few seconds passed (what changes with time alone)."""

from __future__ import annotations

import time
from uuid import UUID, uuid4

from agentlog.adapters.idle_agents import IdleAgents
from agentlog.domain.runtime import Step, StepKind


def step(kind: StepKind, agent_id: UUID, version: int) -> Step:
    return Step(kind=kind, agent_id=agent_id, version=version)


def test_an_agent_with_nothing_to_do_is_skipped_until_the_view_moves_past_it() -> None:
    idle, a, b = IdleAgents(seconds=60), uuid4(), uuid4()
    idle.note([step(StepKind.MODEL, a, 6), step(StepKind.FINISHED, a, 7)])
    assert idle.worth_a_look([a, b], {a: 7, b: 3}) == [b]  # the view is as old as the worker
    assert idle.worth_a_look([a], {a: 5}) == []  # older still
    assert idle.worth_a_look([a], {a: 8}) == [a]  # newer: someone wrote, look again


def test_progress_or_a_busy_agent_is_not_a_reason_to_skip() -> None:
    idle, a, b = IdleAgents(seconds=60), uuid4(), uuid4()
    idle.note([step(StepKind.WAITING, a, 4), step(StepKind.MODEL, a, 5)])
    idle.note([step(StepKind.BUSY, b, 9)])  # a call runs elsewhere: it may end any moment
    assert idle.worth_a_look([a, b], {a: 5, b: 9}) == [a, b]


def test_an_idle_agent_is_looked_at_again_after_its_rest() -> None:
    idle, a = IdleAgents(seconds=0.05), uuid4()
    idle.note([step(StepKind.WAITING, a, 4)])
    assert idle.worth_a_look([a], {a: 4}) == []
    time.sleep(0.06)
    assert idle.worth_a_look([a], {a: 4}) == [a]  # e.g. a claim's holder is now gone
