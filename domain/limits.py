"""The limits that end a task: every agent has finite ones (see ``AgentConfig``).

Checked by the runtime before it asks the model and after each outcome; a limit that is
reached is recorded (``LimitReached``) and fails the task, so no worker takes it again.
"""

from __future__ import annotations

from datetime import datetime

from agentlog.domain.agent import Agent


def limit_reached(agent: Agent, now: datetime) -> tuple[str, float] | None:
    """The first limit the agent has reached, as (name, configured value), or None."""
    config = agent.config
    elapsed = None if agent.task_started_at is None else now - agent.task_started_at
    checks: list[tuple[str, float, bool]] = [
        (
            "max_tool_failures",
            config.max_tool_failures,
            agent.tool_failures >= config.max_tool_failures,
        ),
        (
            "max_model_failures",
            config.max_model_failures,
            agent.model_failures >= config.max_model_failures,
        ),
        (
            "max_empty_answers",
            config.max_empty_answers,
            agent.empty_answers >= config.max_empty_answers,
        ),
        # The next three bound asking the model; calls already asked for finish first.
        (
            "max_tokens",
            config.max_tokens,
            agent.tokens.total >= config.max_tokens and not agent.calls,
        ),
        ("max_steps", config.max_steps, agent.steps >= config.max_steps and not agent.calls),
        (
            "max_wall_time",
            config.max_wall_time,
            elapsed is not None
            and elapsed.total_seconds() >= config.max_wall_time
            and not agent.calls,
        ),
    ]
    return next(((name, value) for name, value, hit in checks if hit), None)
