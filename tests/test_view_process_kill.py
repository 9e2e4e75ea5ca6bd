"""kill -9 a view process mid-batch, restart it: no row duplicated, none missing.

A log of a few thousand events is written first, with no view following it. Then a real
follower process (a small-batch Python child, or ``agentlog projections run``) is
SIGKILLed at random moments while it catches up, restarted, killed again, and finally
left to finish. Every view's rows must then equal a rebuild from position 0: a batch and
the position it moves are one transaction, so a kill loses or repeats nothing.
``AGENTLOG_CRASH_KILLS`` sets the number of kills (default 4).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import MetaData, select

from agentlog.adapters.storage import open_log
from agentlog.adapters.views import engine_for
from agentlog.domain import Agent, AgentConfig, AgentError, AgentLog, EffectClass, Policy
from agentlog.domain import ToolCallRequest as Request
from agentlog.projections import DEFAULT_VIEWS, Projections

from conftest import store_url

KILLS = int(os.environ.get("AGENTLOG_CRASH_KILLS", "4"))
VIEW_NAMES = [cls.name for cls in DEFAULT_VIEWS]

FOLLOWER = """
import sys
from agentlog.adapters.storage import open_log
from agentlog.adapters.views import engine_for
from agentlog.projections import DEFAULT_VIEWS, Projections

url, batch_size = sys.argv[1], int(sys.argv[2])
views = Projections(open_log(url), engine_for(url), DEFAULT_VIEWS, batch_size=batch_size)
print("following", flush=True)
views.catch_up()
print("caught up", flush=True)
"""


def live(agent: Agent, rng: random.Random, n: int) -> None:
    """One step of a busy agent: talk, call tools, ask and get permission, compact."""
    call_id = f"c{n}"
    steps = [
        lambda: agent.receive_user_message(f"message {n}"),
        lambda: agent.record_model_response(f"thought {n}", model="m1"),
        lambda: agent.call_tool(
            Request(call_id=call_id, tool="search", args={"n": n}),
            effect=EffectClass.IDEMPOTENT,
            policy=Policy.ASK,
        ),
        lambda: agent.compact(max(2, agent.version - 1), f"summary {n}", summarizer="s"),
    ]
    for open_call, state in list(agent.calls.items()):
        steps += {
            "requested": [lambda c=open_call: agent.request_permission(c)],
            "awaiting_permission": [lambda c=open_call: agent.grant(c, approver="ana")],
            "granted": [lambda c=open_call: agent.start_tool(c, worker_id="w1")],
            "started": [lambda c=open_call: agent.succeed(c, {"hits": n})],
        }.get(state.stage, [])
    with suppress(AgentError):
        rng.choice(steps)()


def write_log(app: AgentLog, agents: int, events_each: int, seed: int = 7) -> int:
    """A log of busy agents, written with no views following; returns its head."""
    rng = random.Random(seed)
    for a in range(agents):
        agent = Agent.create(f"agent-{a}", AgentConfig(model="m1", system_prompt="hi"))
        agent.start_task(f"task {a}")
        n = 0
        while agent.version < events_each:
            live(agent, rng, n := n + 1)
            if n % 10 == 0:
                app.save(agent)
        if a % 3 == 0 and not agent.calls:
            agent.complete("done")
        app.save(agent)
    return app.recorder.max_notification_id() or 0


def rows_of(views: Projections) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every view's serving build, in primary key order."""
    rows = {}
    with views.engine.connect() as conn:
        for name in VIEW_NAMES:
            table = views.table(conn, name)
            query = select(table).order_by(*table.primary_key.columns)
            rows[name] = [tuple(row) for row in conn.execute(query)]
    return rows


def positions(views: Projections) -> dict[str, int]:
    """Where each view's serving build stands, with no error."""
    report = {}
    for status in views.status():
        assert status.active is not None
        assert status.active.error is None, status.active.error
        report[status.name] = status.active.position
    return report


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def written(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, AgentLog]]:
    """A log of a few thousand events (fewer on PostgreSQL), with set-up but empty views."""
    url = store_url(request.param, tmp_path)
    app = open_log(url)
    agents = 30 if request.param == "sqlite" else 15
    write_log(app, agents=agents, events_each=100)
    # Set the views up here: a kill during the very first set-up is another story
    # (test_a_crash_while_creating_a_builds_tables_leaves_no_build_behind).
    Projections(app, engine_for(url), DEFAULT_VIEWS).engine.dispose()
    yield url, app
    app.close()


def kill_at_random_moments(command: list[str], views: Projections, seed: str) -> int:
    """Start the follower and SIGKILL it at a random moment once it is at work, KILLS
    times; return how many kills left some view part-way (neither at 0 nor at the head).

    The moment is a random point of the log the views have to reach, not a random time:
    a follower fast enough to catch up on the whole log within a random wait would
    never be killed part-way (and a slow machine would be killed before it started)."""
    rng, head = random.Random(seed), views.app.recorder.max_notification_id() or 0
    part_way = 0
    for _ in range(KILLS):
        before = positions(views)
        if set(before.values()) == {head}:
            break  # caught up already: nothing left to interrupt
        lowest = min(before.values())
        target = lowest + rng.uniform(0.05, 0.6) * (head - lowest)
        with subprocess.Popen(command, stdout=subprocess.DEVNULL) as follower:
            try:
                deadline = time.monotonic() + 60
                while positions(views) == before and follower.poll() is None:
                    assert time.monotonic() < deadline, "the follower never got to work"
                    time.sleep(0.01)
                while max(positions(views).values()) < target and follower.poll() is None:
                    assert time.monotonic() < deadline, "the follower stopped moving"
                    time.sleep(0.002)
            finally:
                follower.send_signal(signal.SIGKILL)
        part_way += any(0 < p < head for p in positions(views).values())
    return part_way


def assert_equal_to_a_rebuild(views: Projections, url: str) -> None:
    """Every view is at the head; its rows are those of a rebuild, each once."""
    head = views.app.recorder.max_notification_id() or 0
    assert set(positions(views).values()) == {head}
    followed = rows_of(views)
    rebuilder = Projections(views.app, engine_for(url), DEFAULT_VIEWS, batch_size=1000)
    for name in VIEW_NAMES:
        rebuilder.rebuild(name)
    rebuilt = rows_of(views)
    rebuilder.engine.dispose()
    for name in VIEW_NAMES:
        assert len(set(followed[name])) == len(followed[name]), name  # no duplicates
        assert followed[name] == rebuilt[name], name
    decode = views.app.mapper.to_domain_event
    events = [decode(n) for n in views.app.recorder.select_notifications(1, 10**9)]
    calls = sorted(
        (str(e.originator_id), e.originator_version)
        for e in events
        if isinstance(e, Agent.ToolCalled | Agent.ToolCallRejected)
    )
    assert calls  # the history has calls
    assert [row[:2] for row in followed["audit"]] == calls  # one audit row per call


def test_follower_killed_mid_batch_and_restarted_duplicates_and_loses_nothing(
    written: tuple[str, AgentLog],
) -> None:
    url, app = written
    views = Projections(app, engine_for(url), DEFAULT_VIEWS)
    command = [sys.executable, "-c", FOLLOWER, url, "5"]
    part_way = kill_at_random_moments(command, views, seed="follower")
    assert part_way >= 1  # the kills did land while the views were catching up
    finished = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert finished.returncode == 0, finished.stderr
    assert finished.stdout.splitlines() == ["following", "caught up"]
    assert_equal_to_a_rebuild(views, url)
    views.engine.dispose()


@pytest.mark.parametrize("written", ["sqlite"], indirect=True)
def test_projections_run_killed_and_restarted_duplicates_and_loses_nothing(
    written: tuple[str, AgentLog],
) -> None:
    url, app = written
    write_log(app, agents=120, events_each=100, seed=8)  # batches of 1000: more to do
    views = Projections(app, engine_for(url), DEFAULT_VIEWS)
    agentlog = [sys.executable, "-m", "agentlog.cli", "--db", url, "projections", "run"]
    part_way = kill_at_random_moments([*agentlog, "--poll", "0.05"], views, seed="cli")
    assert part_way >= 1
    finished = subprocess.run(
        [*agentlog, "--once"], capture_output=True, text=True, timeout=300, check=False
    )
    assert (finished.returncode, finished.stderr) == (0, "")
    assert_equal_to_a_rebuild(views, url)
    views.engine.dispose()


class Killed(BaseException):
    """Stands for the process dying on the spot."""


def test_a_crash_while_creating_a_builds_tables_leaves_no_build_behind(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = open_log(sqlite_url)
    app.start_task(app.create_agent("scout"), "find owls")
    create_all = MetaData.create_all

    def die_on_view_tables(self: MetaData, bind: Any, **kwargs: Any) -> None:
        if any(name.startswith("agentlog_transcript") for name in self.tables):
            raise Killed
        create_all(self, bind, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(MetaData, "create_all", die_on_view_tables)
        with pytest.raises(Killed):
            Projections(app, engine_for(sqlite_url), DEFAULT_VIEWS)
    restarted = Projections(app, engine_for(sqlite_url), DEFAULT_VIEWS)
    restarted.catch_up()
    assert set(positions(restarted).values()) == {2}
    restarted.engine.dispose()
    app.close()
