"""The audit view rebuilt equals the audit view followed as the log grew, on SQLite and
PostgreSQL: with many agents interleaved, calls that stay open across a build's flushes
(written, then changed by a later flush), and calls still open when the log ends
(pending, waiting for a person, running, outcome unknown). A flush writes its rows in
key order, whatever order the log gave them in.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, select, text

from agentlog.adapters.storage import open_log
from agentlog.adapters.views import engine_for
from agentlog.domain import Agent, AgentConfig, AgentLog, EffectClass, Policy, ToolCallRequest
from agentlog.projections import AuditTrail, Projections, follower

from conftest import store_url

TOOLS = ("search", "write_file", "send_email")
OPEN_AT_THE_END = {"pending", "waiting", "running", "unknown"}
"""What the calls still open at the end of the log show (outcome, or decision)."""


def life(agent: Agent, rng: random.Random) -> Iterator[None]:
    """An agent's calls, one step a round: some wait rounds for a person (across a
    build's flushes), some are denied, some fail, some lose their outcome for a while."""
    for n in range(10**6):
        call_id = f"c{n % 3}"  # ids come back once their call closed
        request = ToolCallRequest(call_id=call_id, tool=rng.choice(TOOLS), args={"n": n})
        agent.record_model_response("calling", model="m", tool_calls=(request,))
        yield
        ask = rng.random() < 0.3
        policy = Policy.ASK if ask else Policy.ALLOW
        agent.call_tool(request, effect=EffectClass.IDEMPOTENT, policy=policy)
        yield
        if ask:
            agent.request_permission(call_id)
            for _ in range(rng.randint(1, 8)):
                yield  # the person takes a while
            if rng.random() < 0.2:
                agent.deny(call_id, approver="ana", reason="not now")
                yield
                continue
            agent.grant(call_id, approver="ana")
            yield
        agent.start_tool(call_id, worker_id="w1")
        yield
        if rng.random() < 0.15:
            agent.mark_outcome_unknown(call_id)
            for _ in range(rng.randint(1, 8)):
                yield  # until someone finds out what happened
        if rng.random() < 0.1:
            agent.fail_tool(call_id, "boom")
        else:
            agent.succeed(call_id, {"n": n})
        yield


def live(app: AgentLog, agents: int, rounds: int, seed: int = 3) -> None:
    """Every round, each agent takes one step and all are saved together (the log
    interleaves them as workers would); the log ends wherever each agent stands."""
    rng = random.Random(seed)
    crew = [Agent.create(f"agent-{a}", AgentConfig(model="m")) for a in range(agents)]
    for agent in crew:
        agent.start_task("audit me")
    lives = [life(agent, rng) for agent in crew]
    app.save(*crew)
    for _ in range(rounds):
        for steps in lives:
            next(steps)
        app.save(*crew)


def audit_rows(views: Projections) -> list[tuple[Any, ...]]:
    """Every row of the serving audit build, in primary key order."""
    with views.engine.connect() as conn:
        table = views.table(conn, "audit")
        return [tuple(r) for r in conn.execute(select(table).order_by(*table.primary_key))]


def followed_audit(url: str, agents: int, rounds: int) -> tuple[AgentLog, Projections]:
    """A log lived with the audit view following it after every save."""
    app = open_log(url)
    views = Projections(app, engine_for(url), [AuditTrail], batch_size=3)
    app.after_save.append(views.catch_up_quietly)
    live(app, agents, rounds)
    views.catch_up()
    (status,) = views.status()
    assert status.active is not None
    assert (status.active.error, status.lag) == (None, 0)
    return app, views


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh store on SQLite, then on PostgreSQL."""
    return store_url(request.param, tmp_path)


def test_rebuilt_audit_equals_the_followed_one_with_calls_open_across_flushes_and_at_the_end(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    app, followed = followed_audit(url, agents=9, rounds=70)
    expected = audit_rows(followed)
    still_open = {row[14] for row in expected} | {row[11] for row in expected}
    assert still_open >= OPEN_AT_THE_END  # the log ends with calls open at every stage
    monkeypatch.setattr(AuditTrail, "flush_rows", 7)  # a flush every 7 calls changed ...
    monkeypatch.setattr(follower, "REBUILD_BATCHES", 3)  # ... or every 3 batches
    changed_again: list[int] = []
    flush = AuditTrail.flush

    def counting(self: AuditTrail, conn: Connection) -> None:
        changed_again.append(sum(call.stored for call in self._dirty.values()))
        flush(self, conn)

    monkeypatch.setattr(AuditTrail, "flush", counting)
    rebuilder = Projections(app, followed.engine, [AuditTrail], batch_size=5)
    rebuilder.rebuild("audit")
    assert len(changed_again) > 20
    assert sum(changed_again) > 20  # calls written by one flush and changed by a later one
    assert audit_rows(rebuilder) == expected
    followed.engine.dispose()
    app.close()


def test_a_flush_writes_its_calls_in_key_order_not_in_log_order(sqlite_url: str) -> None:
    app, followed = followed_audit(sqlite_url, agents=9, rounds=30)
    followed.rebuild("audit")  # one flush: the log is short
    with followed.engine.connect() as conn:
        name = followed.table(conn, "audit").name
        written = conn.execute(
            text(f'SELECT agent_id, called_version, call_id, position FROM "{name}" ORDER BY rowid')
        ).all()
    keys = [tuple(row[:3]) for row in written]
    assert len(keys) > 30
    assert keys == sorted(keys)
    positions = [row[3] for row in written]
    assert positions != sorted(positions)  # the log interleaves the agents
    followed.engine.dispose()
    app.close()
