"""A tool that answers at once with a fixed result, and a step of it recorded with the
Agent's commands: what the benchmarks that time agentlog's own work around a tool call
give their agents (bench_step.py, bench_group_commit.py, peer_agentlog.py)."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, JsonValue

from agentlog.domain.agent import Agent
from agentlog.domain.values import EffectClass, Policy, ToolCallRequest


@dataclass(frozen=True)
class InstantTool:
    """A pure tool, allowed by policy, that returns ``result`` at once."""

    name: str
    description: str
    args_model: type[BaseModel]
    result: JsonValue = None
    effect: EffectClass = EffectClass.PURE
    policy: Policy = Policy.ALLOW

    def run(self, args: BaseModel, idempotency_key: str) -> JsonValue:
        """The fixed result."""
        return self.result

    def reconcile(self, idempotency_key: str) -> bool | None:
        """Nothing to reconcile."""
        return None


def record_step(
    agent: Agent, call: ToolCallRequest, text: str, result: JsonValue, *, model: str, worker: str
) -> None:
    """A model step asking for ``call`` and the tool step answering it with ``result``,
    recorded with the Agent's commands: the same events the runtime records."""
    record_model_step(agent, call, text, model=model)
    agent.start_tool(call.call_id, worker_id=worker)
    agent.succeed(call.call_id, result, actor=f"worker:{worker}")


def record_model_step(agent: Agent, call: ToolCallRequest, text: str, *, model: str) -> None:
    """A model step asking for ``call`` (a pure tool, allowed by policy), recorded with the
    Agent's commands: ModelResponded, then ToolCalled, as the runtime records them."""
    agent.record_model_response(text, model=model, tool_calls=(call,))
    agent.call_tool(
        call,
        effect=EffectClass.PURE,
        policy=Policy.ALLOW,
        actor=f"model:{model}",
        caused_by=agent.version,
    )
