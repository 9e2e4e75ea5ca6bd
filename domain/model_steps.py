"""The step that asks the model: its context (summarised first when it has grown past the
agent's compaction size), its answer, and the tool calls it requests, each checked and
recorded before anything runs; or its failure, recorded and counted."""

from __future__ import annotations

import functools

from pydantic import ValidationError

from agentlog.domain.agent import Agent
from agentlog.domain.compaction import due, summarize
from agentlog.domain.errors import AgentError, SummaryFailedError
from agentlog.domain.ports import Context, Message, ModelCallError, ToolSpec
from agentlog.domain.runtime_base import RuntimeBase
from agentlog.domain.steps import Step, StepKind
from agentlog.domain.tool_runner import short_errors, tool_spec
from agentlog.domain.values import ToolCallRequest

__all__ = ["ModelSteps"]


class ModelSteps(RuntimeBase):
    """The runtime's part that asks the model and records what it answered."""

    @functools.cached_property
    def tool_specs(self) -> tuple[ToolSpec, ...]:
        """What the model is told about the tools (their JSON schemas, built once)."""
        return tuple(tool_spec(t) for t in self.tools.values())

    def _ask_model(self, agent: Agent) -> Step:
        if (limited := self._limit(agent)) is not None:
            return limited
        messages = self.transcripts.messages(agent)
        if due(agent, messages):
            try:
                messages = self._compact(agent, messages)
            except SummaryFailedError as e:
                return self._summary_failed(agent, e)
        context = Context(
            agent_id=agent.id,
            goal=agent.goal or "",
            messages=tuple(messages),
            tools=self.tool_specs,
        )
        try:
            decision = self.model.decide(context)
            agent.record_model_response(
                decision.text,
                model=self.model.name,
                tool_calls=decision.tool_calls,
                usage=decision.usage,
                finish_reason=decision.finish_reason,
            )
            self._record_calls(agent, decision.tool_calls)  # a call no event can hold fails it
        except (ModelCallError, AgentError, ValidationError) as e:
            return self._model_failed(agent, e)
        except Exception as e:  # a model adapter's bug must not crash a worker
            return self._model_failed(agent, ModelCallError("error", f"{type(e).__name__}: {e}"))
        if decision.done and not decision.tool_calls:
            agent.complete(decision.text, actor=f"model:{self.model.name}")
        self.log.save(agent)
        return self._step(agent, StepKind.MODEL, decision.text[:80])

    def _compact(self, agent: Agent, messages: list[Message]) -> list[Message]:
        """Summarise the whole context and record it (saved before the model is asked:
        losing a race here re-decides, like any save)."""
        summary = summarize(self.summarizer, agent.id, agent.goal or "", messages)
        agent.compact(agent.version, summary, summarizer=f"model:{self.summarizer.name}")
        self.log.save(agent)
        return self.transcripts.messages(agent)

    def _summary_failed(self, agent: Agent, error: SummaryFailedError) -> Step:
        """A summarizer that cannot answer fails the step like a model (and counts so)."""
        agent.record_model_failure("summary_failed", error.reason, model=self.summarizer.name)
        self.log.save(agent)
        detail = f"summary_failed: {error.reason}"
        return self._limit(agent) or self._step(agent, StepKind.MODEL_FAILED, detail)

    def _record_calls(self, agent: Agent, calls: tuple[ToolCallRequest, ...]) -> None:
        response = agent.version
        for call in calls:
            tool = self.tools.get(call.tool)
            if tool is None:
                agent.reject_tool_call(call, f"unknown tool {call.tool!r}", caused_by=response)
                continue
            try:
                tool.args_model.model_validate(call.args)
            except ValidationError as e:
                reason = f"invalid arguments for {call.tool}: {short_errors(e)}"
                agent.reject_tool_call(call, reason, caused_by=response)
                continue
            policy = agent.config.policy_for(tool.name, tool.policy)
            agent.call_tool(
                call,
                effect=tool.effect,
                policy=policy,
                actor=f"model:{self.model.name}",
                caused_by=response,
            )

    def _model_failed(self, agent: Agent, error: Exception) -> Step:
        # Drop anything half-recorded, but stay at the version the model decided from:
        # if another worker moved on meanwhile, this save loses the race and we re-decide.
        agent = self.log.get(agent.id, version=agent.version - len(agent.collect_events()))
        kind = error.kind if isinstance(error, ModelCallError) else "bad_output"
        message = error.message if isinstance(error, ModelCallError) else str(error)
        agent.record_model_failure(kind, message, model=self.model.name)
        self.log.save(agent)
        return self._limit(agent) or self._step(agent, StepKind.MODEL_FAILED, f"{kind}: {message}")
