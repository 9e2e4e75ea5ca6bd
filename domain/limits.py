"""The limits that end a task: every agent has finite ones (see ``AgentConfig``).

Checked by the runtime before it asks the model and after each outcome; a limit that is
reached is recorded (``LimitReached``) and fails the task, so no worker takes it again.
"""

from __future__ import annotations

from datetime import datetime

from agentlog.domain.agent import Agent


def limit_reached(agent: Agent, now: datetime) -> tuple[str, float] | None:
    """The first limit the agent has reached, as (name, configured value), or None."""
    # The budget bounds asking the model: calls already asked for finish first.
    return _failures(agent) or (None if agent.calls else _budget(agent, now))


def _failures(agent: Agent) -> tuple[str, float] | None:
    """The first count of failures in a row that reached its limit."""
    config = agent.config
    if agent.tool_failures >= config.max_tool_failures:
        return "max_tool_failures", config.max_tool_failures
    if agent.model_failures >= config.max_model_failures:
        return "max_model_failures", config.max_model_failures
    if agent.empty_answers >= config.max_empty_answers:
        return "max_empty_answers", config.max_empty_answers
    return None


def _budget(agent: Agent, now: datetime) -> tuple[str, float] | None:
    """The first of the task's tokens, steps and time that is spent."""
    config = agent.config
    if agent.tokens.total >= config.max_tokens:
        return "max_tokens", config.max_tokens
    if agent.steps >= config.max_steps:
        return "max_steps", config.max_steps
    started = agent.task_started_at
    if started is not None and (now - started).total_seconds() >= config.max_wall_time:
        return "max_wall_time", config.max_wall_time
    return None
