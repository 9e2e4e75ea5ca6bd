"""The worker's turn pool: K slots, a turn starts as one frees, every ended turn's steps
are harvested once, and a turn's error reaches the worker's loop."""

from __future__ import annotations

import threading
import time
from uuid import UUID, uuid4

import pytest

from agentlog.adapters.turn_pool import TurnPool
from agentlog.domain.runtime import Step, StepKind


def finished(agent_id: UUID) -> list[Step]:
    return [Step(kind=StepKind.FINISHED, agent_id=agent_id, version=1)]


def test_a_turn_starts_once_a_slot_frees_and_every_ended_turn_is_harvested_once() -> None:
    stop, gate = threading.Event(), threading.Event()
    pool = TurnPool(2, stop)
    slots: list[int] = []

    def turn(agent_id: UUID, slot: int) -> list[Step]:
        slots.append(slot)
        gate.wait(10)
        return finished(agent_id)

    agents = [uuid4() for _ in range(3)]
    assert pool.start(agents[0], turn)
    assert pool.start(agents[1], turn)
    assert pool.agents == set(agents[:2])
    started = time.monotonic()
    pool.wait_any(0.2)  # both slots taken, neither ends: the wait times out
    assert time.monotonic() - started >= 0.15
    assert pool.harvest() == []
    threading.Timer(0.1, gate.set).start()
    assert pool.start(agents[2], turn)  # waits for a slot, then takes it
    pool.close()
    steps = pool.harvest()
    assert sorted(s.agent_id for s in steps) == sorted(agents)
    assert sorted(slots) == [0, 0, 1] or sorted(slots) == [0, 1, 1]
    assert pool.harvest() == []  # once
    assert not pool.busy


def test_a_turn_that_ended_before_the_wait_is_collected_without_waiting() -> None:
    pool = TurnPool(1, threading.Event())
    agent_id = uuid4()
    assert pool.start(agent_id, lambda a, _: finished(a))
    time.sleep(0.05)  # it ended already
    started = time.monotonic()
    pool.wait_any(5)
    assert time.monotonic() - started < 1
    assert [s.agent_id for s in pool.harvest()] == [agent_id]
    pool.close()


def test_a_turns_error_is_raised_by_the_harvest() -> None:
    pool = TurnPool(2, threading.Event())

    def broken(agent_id: UUID, slot: int) -> list[Step]:
        raise RuntimeError("turn broke")

    assert pool.start(uuid4(), broken)
    pool.close()
    with pytest.raises(RuntimeError, match="turn broke"):
        pool.harvest()


def test_told_to_stop_no_turn_starts_while_every_slot_is_taken() -> None:
    stop, gate = threading.Event(), threading.Event()
    pool = TurnPool(1, stop)
    assert pool.start(uuid4(), lambda a, _: (gate.wait(10), finished(a))[1])
    threading.Timer(0.1, stop.set).start()
    assert not pool.start(uuid4(), lambda a, _: finished(a))
    gate.set()
    pool.close()
