"""Agent histories for property tests: talk, tool calls in flight, failures, compactions;
and a log whose views catch up after every save."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from uuid import UUID

from hypothesis import strategies as st

from agentlog.adapters.storage import open_log
from agentlog.adapters.views import engine_for
from agentlog.domain import AgentLog, EffectClass, Policy, ToolCallRequest
from agentlog.projections import DEFAULT_VIEWS, Projections

moves = st.lists(
    st.one_of(
        st.tuples(st.just("say"), st.text(max_size=5)),
        st.tuples(st.just("answer"), st.text(max_size=5)),
        st.tuples(st.just("call"), st.integers(1, 2)),
        st.tuples(st.just("run"), st.just(0)),
        st.tuples(st.just("fail"), st.text(max_size=5)),
        st.tuples(st.just("compact"), st.integers(0, 3)),
    ),
    max_size=25,
)
"""A history: messages, answers, tool calls (recorded, started, finished in separate
saves, so some versions have calls in flight), model failures, compactions."""


def grow(log: AgentLog, agent_id: UUID, plan: list[tuple[str, Any]]) -> None:
    """Play the plan on a running agent, one save per step of the call protocol."""
    for n, (kind, value) in enumerate(plan):
        agent = log.get(agent_id)
        if kind == "call" and not agent.calls:
            requests = tuple(ToolCallRequest(call_id=f"c{n}-{i}", tool="t") for i in range(value))
            agent.record_model_response("calling", model="m", tool_calls=requests)
            log.save(agent)
            for request in requests:
                agent.call_tool(request, effect=EffectClass.PURE, policy=Policy.ALLOW)
                log.save(agent)
        elif kind == "run" and agent.calls:
            for call_id in list(agent.calls):
                agent.start_tool(call_id, worker_id="w")
                log.save(agent)
                agent.succeed(call_id, {"n": n})
                log.save(agent)
        elif kind == "say":
            agent.receive_user_message(value)
        elif kind == "answer" and not agent.calls:
            agent.record_model_response(value, model="m")
        elif kind == "fail":
            agent.record_model_failure("timeout", value, model="m")
        elif kind == "compact" and agent.version - value > agent.compacted_through:
            agent.compact(agent.version - value, f"summary {n}", summarizer="s")
        log.save(agent)


def rows(path: Path) -> list[tuple[Any, ...]]:
    """Every stored event row, bytes and all, in order."""
    with sqlite3.connect(path) as conn:
        return conn.execute(
            "SELECT originator_id, originator_version, topic, state FROM stored_events"
            " ORDER BY originator_id, originator_version"
        ).fetchall()


@contextmanager
def embedded_views(url: str, batch_size: int) -> Iterator[tuple[AgentLog, Projections]]:
    """A log whose views catch up after every save, ``batch_size`` events at a time."""
    app = open_log(url)
    views = Projections(app, engine_for(url), DEFAULT_VIEWS, batch_size=batch_size)
    app.after_save.append(views.catch_up_quietly)
    try:
        yield app, views
    finally:
        app.close()
        views.engine.dispose()
