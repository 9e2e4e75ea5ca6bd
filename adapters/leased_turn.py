"""One agent's turn in a worker: take its lease, step while it is held, give it back."""

from __future__ import annotations

import logging
from collections.abc import Callable
from uuid import UUID

from sqlalchemy.exc import SQLAlchemyError

from agentlog.adapters.lease_keeper import LeaseKeeper
from agentlog.adapters.leases import Lease
from agentlog.adapters.outages import first_line
from agentlog.adapters.retry_deadlocks import lost_a_race
from agentlog.domain.errors import AgentError
from agentlog.domain.runtime import Runtime, Step, StepKind

log = logging.getLogger("agentlog.adapters.worker")  # the worker's warnings, as before


class LeasedTurn:
    """Runs up to ``turn`` steps of an agent while a slot holds its lease (callable
    from any turn thread)."""

    def __init__(
        self,
        keeper: LeaseKeeper,
        runtime_for: Callable[[UUID], Runtime],
        record: Callable[[Step], None],
        turn: int,
    ) -> None:
        self.keeper, self.runtime_for, self.record, self.turn = keeper, runtime_for, record, turn

    def __call__(self, agent_id: UUID, slot: int) -> list[Step]:
        """The steps taken; an agent another worker holds is reported busy (so is one
        whose lease take lost a race, a deadlock, every time it was tried)."""
        try:
            lease = self.keeper.leases.take(agent_id, slot)
        except SQLAlchemyError as e:
            if not lost_a_race(e):
                raise
            log.warning("agent %s: lease not taken: %s", agent_id, first_line(e))
            return [leased_elsewhere(agent_id)]
        if lease is None:
            return [leased_elsewhere(agent_id)]
        self.keeper.hold(lease)
        try:
            return self._steps(agent_id, lease)
        finally:
            self.keeper.drop(lease)
            self.keeper.leases.give_back(lease)  # released with the next take

    def _steps(self, agent_id: UUID, lease: Lease) -> list[Step]:
        steps: list[Step] = []
        try:
            runtime = self.runtime_for(agent_id)
            while len(steps) < self.turn and lease.held:  # a lost lease: stop after a step
                # Each step of a turn after the first follows a step of this thread that
                # progressed (it saved), under the lease held since.
                steps.append(step := runtime.advance(agent_id, after_own_step=bool(steps)))
                self.record(step)
                if not step.progressed:
                    break
        except AgentError as e:  # e.g. it finished meanwhile: the next pass sees
            log.warning("agent %s: %s", agent_id, e)
        return steps


def leased_elsewhere(agent_id: UUID) -> Step:
    """What a pass counts for an agent another worker holds (it is busy there)."""
    return Step(kind=StepKind.BUSY, agent_id=agent_id, version=0, detail="leased elsewhere")


__all__ = ["LeasedTurn", "leased_elsewhere"]
