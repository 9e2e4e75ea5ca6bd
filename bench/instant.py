"""A tool that answers at once with a fixed result: what the benchmarks that time
agentlog's own work around a tool call give their agents (bench_step.py,
bench_group_commit.py, peer_agentlog.py)."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, JsonValue

from agentlog.domain.values import EffectClass, Policy


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
