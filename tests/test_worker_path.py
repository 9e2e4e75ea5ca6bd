"""A worker's step commits what the protocol needs and nothing else: a model step is one
save, a tool step is the claim and the outcome; no view moves inside or between one
agent's steps. The views catch up together once per pass of the work loop."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from eventsourcing.persistence import Recording

from agentlog.adapters.tools import ToolRegistry
from agentlog.adapters.views import Store, open_store
from agentlog.adapters.worker import Worker
from agentlog.domain import AgentConfig, AgentLog, Policy, ToolCallRequest
from agentlog.domain.ports import Decision
from agentlog.domain.runtime import Step, StepKind

from conftest import store_url
from counting_tools import Ledger, counting_tools


def script(folder: Path, turns: int) -> str:
    """A model spec: ``turns`` turns of one pure call each, then done."""
    decisions = [
        Decision(
            text=f"turn {n}",
            tool_calls=(ToolCallRequest(call_id=f"c{n}", tool="pure", args={"label": "x"}),),
        )
        for n in range(turns)
    ] + [Decision(text="done", done=True)]
    path = folder / "script.json"
    path.write_text(json.dumps([d.model_dump(mode="json") for d in decisions]))
    return f"scripted:{path}"


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    store = open_store(store_url(request.param, tmp_path), embedded=False)
    yield store
    store.close()


def positions(store: Store) -> dict[str, int]:
    """Each serving view's position."""
    return {s.name: s.active.position for s in store.views.status() if s.active is not None}


def test_steps_save_only_the_protocols_events_and_move_no_view(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = AgentConfig(model=script(tmp_path, 3), tool_policies={"pure": Policy.ALLOW})
    agent_id = store.log.create_agent("a", config)
    store.log.start_task(agent_id, "count")
    store.views.catch_up()
    before = positions(store)
    saves: list[int] = []
    real_save = AgentLog.save

    def counting_save(self: AgentLog, *objs: Any, **kwargs: Any) -> list[Recording[UUID]]:
        recordings = real_save(self, *objs, **kwargs)
        saves.append(len(recordings))
        return recordings

    monkeypatch.setattr(AgentLog, "save", counting_save)
    steps: list[Step] = []
    tools = ToolRegistry(counting_tools(Ledger(tmp_path / "ledger"), delay=0.0))
    worker = Worker(store, tools)

    def on_step(step: Step) -> None:
        steps.append(step)
        assert positions(store) == before, "a view moved inside the agent's turn"

    worker.run(agent_id, 20, on_step)
    kinds = [s.kind for s in steps]
    assert kinds == [StepKind.MODEL, StepKind.TOOL] * 3 + [StepKind.MODEL, StepKind.FINISHED]
    # model: one save (response + its call); tool: the claim, then the outcome.
    assert len(saves) == 3 * (1 + 2) + 1
    assert positions(store) == before
    assert worker.runnable() == []  # the work loop's pass catches every view up at once
    head = store.log.recorder.max_notification_id()
    assert set(positions(store).values()) == {head}
