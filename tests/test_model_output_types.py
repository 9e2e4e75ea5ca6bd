"""A model's answer of the wrong types (an adapter that builds its ``Decision`` without
validating it) is refused before anything of it is stored: the step records
``ModelFailed`` (``bad_output``), and the agent goes on with the next answer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agentlog.adapters.storage import open_log
from agentlog.adapters.tools import builtin_tools
from agentlog.domain import Agent, AgentConfig
from agentlog.domain.ports import Context, Decision
from agentlog.domain.runtime import Runtime, StepKind
from agentlog.domain.values import ToolCallRequest


class UncheckedModel:
    """Answers with decisions made by ``model_construct`` (no validation), then says done."""

    name = "unchecked"

    def __init__(self, *answers: Decision) -> None:
        self.answers = list(answers)

    def decide(self, context: Context) -> Decision:
        return self.answers.pop(0) if self.answers else Decision(text="done", done=True)


NOT_JSON: Any = {"at": {1, 2}}  # a set: no JSON has it
BAD_ANSWERS = [
    pytest.param({"text": 123}, id="text that is no string"),
    pytest.param({"text": "hi", "finish_reason": 7}, id="finish reason that is no string"),
    pytest.param(
        {
            "text": "hi",
            "tool_calls": (
                ToolCallRequest.model_construct(call_id="c1", tool="clock", args=NOT_JSON),
            ),
        },
        id="arguments that are no JSON",
        # pydantic only warns when it writes the response's set as a list (as a worker
        # runs: tests make warnings errors); the call's hash then refuses it.
        marks=pytest.mark.filterwarnings("ignore::UserWarning"),
    ),
]


@pytest.mark.parametrize("fields", BAD_ANSWERS)
def test_an_answer_of_the_wrong_types_is_refused_and_stores_nothing_of_it(
    tmp_path: Path, fields: dict[str, Any]
) -> None:
    log = open_log(f"sqlite:///{tmp_path / 'agentlog.db'}")
    agent_id = log.create_agent("a", AgentConfig(model="unchecked"), goal="g")
    model = UncheckedModel(Decision.model_construct(**fields))
    runtime = Runtime(log, model, builtin_tools(tmp_path), worker_id="w")

    step = runtime.advance(agent_id)

    assert step.kind is StepKind.MODEL_FAILED
    events = list(log.events_of(agent_id))
    assert [type(e) for e in events[2:]] == [Agent.ModelFailed]
    failed = events[-1]
    assert isinstance(failed, Agent.ModelFailed)
    assert failed.kind == "bad_output", failed.error
    assert "cannot record" in failed.error
    assert runtime.advance(agent_id).kind is StepKind.MODEL  # the next answer is fine
    log.close()
