"""One run of the scale benchmark: a fresh store, N agents, W worker processes of K
threads each, a warm-up, a timed window, then what the log says about the window.

Steps are counted from the log, by the timestamps their events were recorded with (taken
by the worker when it records the step, just before its save): a *model step* is a
``ModelResponded``, a *tool step* a ``ToolSucceeded`` or ``ToolFailed``. Step latency is
the time from an agent's previous step event to this one (model steps include the
model's answer time; the gap before an agent's first step, which includes the set-up,
is not counted). CPU is read from /proc at the window's two ends.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import percentile
from scale_server import Server, machine_busy_s, tree_cpu_s

from agentlog.adapters.views import Store, open_store
from agentlog.domain import Agent
from agentlog.domain.values import AgentConfig

AGENTLOG = str(Path(sys.executable).with_name("agentlog"))
STEP_TOPICS = {
    Agent.ModelResponded.TOPIC: "model",
    Agent.ToolSucceeded.TOPIC: "tool",
    Agent.ToolFailed.TOPIC: "tool",
}
OTHER_TOPICS = {
    Agent.TaskCompleted.TOPIC: "completed",
    Agent.ModelFailed.TOPIC: "model_failed",
    Agent.LimitReached.TOPIC: "limit",
}
TOOL = "calculator"  # a built-in pure tool: the call itself costs microseconds
CREATE_BATCH = 100  # agents per save while setting up (one transaction each)
STOP_GRACE_S = 30.0
START_TIMEOUT_S = 120.0
UNBUFFERED = {**os.environ, "PYTHONUNBUFFERED": "1"}  # a worker's step lines, as they happen


@dataclass(frozen=True)
class Config:
    """Where the log is and how many workers advance it."""

    store: str  # "postgres" or "sqlite"
    shards: int
    workers: int
    concurrency: int

    @property
    def label(self) -> str:
        """The store configuration, as the tables and the plot name it."""
        if self.store == "sqlite":
            return "SQLite"
        return f"PostgreSQL, S={self.shards}"

    @property
    def slots(self) -> int:
        """Agents advanced at once: workers x threads."""
        return self.workers * self.concurrency


@dataclass(frozen=True)
class Workload:
    """What every run does: the agents, their model, and the run's timeline."""

    agents: int
    latency: float  # seconds the scripted model takes to answer
    turns: int  # model turns in each agent's script (all but the last call a tool)
    warmup: float
    window: float
    poll: float
    worker_args: tuple[str, ...] = ()  # extra options for every `agentlog worker`


@dataclass
class Result:
    """What one run measured."""

    config: Config
    window_s: float = 0.0
    model_steps: int = 0
    tool_steps: int = 0
    model_gaps_ms: list[float] = field(default_factory=list)
    tool_gaps_ms: list[float] = field(default_factory=list)
    worker_cpu_s: float = 0.0
    db_cpu_s: float | None = None  # None: no server (SQLite)
    busy_s: float = 0.0  # the whole machine's, every process
    machine_s: float = 0.0  # CPU seconds the machine had (cores x window)
    peak_connections: int | None = None
    commits: int | None = None  # transactions committed in the run's database (window)
    wal_syncs: int | None = None  # the server's WAL syncs (window)
    lock_waiters: dict[str, float] | None = None  # backends waiting, by lock (mean)
    finished: int = 0  # agents whose task completed before the window closed
    failures: dict[str, int] = field(default_factory=dict)
    converged: bool | None = None
    view_rows: int = 0
    view_shards: int = 0  # shards every rebuilt view was followed to the head of
    errors: list[str] = field(default_factory=list)

    def per_s(self, steps: int) -> float:
        """Steps of the window per second."""
        return steps / self.window_s if self.window_s else float("nan")

    def latency(self, kind: str, q: float) -> float:
        """A percentile of the step gaps of one kind, in ms."""
        return percentile(self.model_gaps_ms if kind == "model" else self.tool_gaps_ms, q)

    @property
    def cpu_ms_per_step(self) -> float:
        """Workers' and server's CPU per step (model and tool steps alike)."""
        steps = self.model_steps + self.tool_steps
        return (
            1000 * (self.worker_cpu_s + (self.db_cpu_s or 0.0)) / steps if steps else float("nan")
        )


def script(turns: int) -> list[dict[str, Any]]:
    """The scripted model's decisions: a calculator call per turn, then done."""
    calls = [
        {"tool_calls": [{"call_id": f"c{n}", "tool": TOOL, "args": {"expression": f"{n}+1"}}]}
        for n in range(turns - 1)
    ]
    return [*calls, {"text": "done", "done": True}]


def model_spec(path: Path, latency: float) -> str:
    """The agents' model: the script, answering after ``latency`` seconds."""
    return f"scripted:{path}?latency={latency:g}" if latency > 0 else f"scripted:{path}"


class Environment:
    """Where the runs' stores live: a folder, and the PostgreSQL server if any."""

    def __init__(self, workdir: Path, server: Server | None) -> None:
        self.workdir, self.server = workdir, server
        self.counter = 0

    def new_store(self, config: Config) -> tuple[str, Callable[[], None]]:
        """A URL of a fresh, empty store; and how to remove it."""
        self.counter += 1
        name = f"scale_{self.counter}"
        if config.store == "sqlite":
            path = self.workdir / f"{name}.db"
            return f"sqlite:///{path}", lambda: remove_sqlite(path)
        assert self.server is not None
        server = self.server
        return server.create(name), lambda: server.drop(name)


def remove_sqlite(path: Path) -> None:
    """Delete a SQLite file and its WAL files."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def agentlog(url: str, sandbox: Path, *args: str) -> list[str]:
    """An `agentlog` command line on the store."""
    return [AGENTLOG, "--db", url, "--sandbox", str(sandbox), *args]


def set_up(url: str, config: Config, workload: Workload, workdir: Path) -> None:
    """The store (``init``, with its shards), then the agents, each with its task."""
    if config.shards > 1:  # one shard: open_store below creates the store as init does
        init = agentlog(url, workdir / "sandbox", "init", "--shards", str(config.shards))
        done = subprocess.run(init, check=False, capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"agentlog init failed: {done.stderr.strip()}")
    path = workdir / f"script-{workload.turns}.json"
    path.write_text(json.dumps(script(workload.turns)))
    agent_config = AgentConfig(
        model=model_spec(path, workload.latency), max_steps=workload.turns + 10
    )
    store = open_store(url, embedded=False, catch_up=False)
    try:
        for start in range(0, workload.agents, CREATE_BATCH):
            count = min(CREATE_BATCH, workload.agents - start)
            agents = [new_agent(f"agent-{start + n}", agent_config) for n in range(count)]
            store.log.save(*agents)
        store.views.catch_up()
    finally:
        store.close()


def new_agent(name: str, config: AgentConfig) -> Agent:
    """An agent with its task started (saved by the caller)."""
    agent = Agent.create(name, config, actor="bench")
    agent.start_task("count to the end of the script", actor="bench")
    return agent


def run(config: Config, workload: Workload, env: Environment) -> Result:
    """Set up, run the workers through warm-up and window, stop them, measure."""
    url, remove = env.new_store(config)
    result = Result(config)
    try:
        set_up(url, config, workload, env.workdir)
        t0, t1 = work(url, config, workload, env, result)
        measure(url, t0, t1, result)
        check_views(url, result)
    except Exception as e:  # one failed run is reported, the others still run
        result.errors.append(f"{type(e).__name__}: {e}")
    finally:
        remove()
    return result


def work(
    url: str, config: Config, workload: Workload, env: Environment, result: Result
) -> tuple[float, float]:
    """Run the workers; sample CPU at the window's ends. The window's wall-clock ends."""
    logs = [env.workdir / f"worker-{n}.err" for n in range(config.workers)]
    outs = [env.workdir / f"worker-{n}.out" for n in range(config.workers)]
    args = ["worker", "--poll", str(workload.poll), "--quiet", *workload.worker_args]
    if config.concurrency > 1:
        args += ["--concurrency", str(config.concurrency)]
    server = env.server if config.store == "postgres" else None
    database = url.rsplit("/", 1)[-1]
    procs = []
    for log, out in zip(logs, outs, strict=True):
        with log.open("w") as err, out.open("w") as steps:  # the child has its own copies
            command = agentlog(url, env.workdir / "sandbox", *args)
            procs.append(
                subprocess.Popen(command, stdout=steps, stderr=err, cwd=env.workdir, env=UNBUFFERED)
            )
    try:
        started(procs, logs, outs)
        time.sleep(workload.warmup)
        alive(procs, logs)
        t0, before = time.time(), sample(procs, server, database)
        seen = watch(procs, logs, server, database, t0 + workload.window)
        t1, after = time.time(), sample(procs, server, database)
    finally:
        stop(procs)
    delta = [a - b for a, b in zip(after, before, strict=True)]
    result.window_s, result.worker_cpu_s = t1 - t0, delta[0]
    result.busy_s, result.machine_s = delta[2], delta[3]
    if server is not None:
        result.db_cpu_s, result.commits, result.wal_syncs = delta[1], int(delta[4]), int(delta[5])
        result.peak_connections, result.lock_waiters = seen or (None, None)
    return t0, t1


def started(
    procs: Sequence[subprocess.Popen[bytes]], logs: Sequence[Path], outs: Sequence[Path]
) -> None:
    """Wait until every worker has taken a step (printed its first line): on a busy
    machine, starting Python and importing agentlog takes seconds."""
    deadline = time.time() + START_TIMEOUT_S
    while not all(out.stat().st_size for out in outs):
        alive(procs, logs)
        if time.time() > deadline:
            raise RuntimeError(f"the workers took no step in {START_TIMEOUT_S:g} s")
        time.sleep(0.05)


def sample(
    procs: Sequence[subprocess.Popen[bytes]], server: Server | None, database: str
) -> tuple[float, ...]:
    """Workers' CPU, the server's CPU, the machine's busy and total CPU seconds, the
    database's commits and the server's WAL syncs."""
    workers = sum(tree_cpu_s(p.pid) for p in procs)
    db = (server.cpu_s(), *server.counters(database)) if server else (0.0, 0, 0)
    return (workers, db[0], *machine_busy_s(), db[1], db[2])


def watch(
    procs: Sequence[subprocess.Popen[bytes]],
    logs: Sequence[Path],
    server: Server | None,
    database: str,
    end: float,
) -> tuple[int, dict[str, float]] | None:
    """Wait until ``end``, checking the workers live; the most client connections seen
    and the mean count of backends waiting on each lock (sampled each second)."""
    peak, samples, waiting = 0, 0, Counter[str]()
    while (left := end - time.time()) > 0:
        time.sleep(min(1.0, left))
        alive(procs, logs)
        if server is not None:
            peak, samples = max(peak, server.connections()), samples + 1
            waiting.update(server.lock_waiters(database))
    if server is None or not samples:
        return None
    return peak, {name: count / samples for name, count in waiting.most_common()}


def alive(procs: Sequence[subprocess.Popen[bytes]], logs: Sequence[Path]) -> None:
    """Raise if a worker exited (with the end of what it said)."""
    for proc, log in zip(procs, logs, strict=True):
        if proc.poll() is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-3:]
            raise RuntimeError(f"worker exited with {proc.returncode}: {' / '.join(tail)}")


def stop(procs: Sequence[subprocess.Popen[bytes]]) -> None:
    """SIGTERM every worker (the step under way finishes); SIGKILL the slow ones."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.time() + STOP_GRACE_S
    for proc in procs:
        try:
            proc.wait(max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def measure(url: str, t0: float, t1: float, result: Result) -> None:
    """Steps and step gaps of the window, agents finished, failures: from the log."""
    last: dict[Any, float] = {}
    store = open_store(url, embedded=False, catch_up=False)
    try:
        for event, kind in step_events(store):
            at = event.timestamp.timestamp()
            if kind in ("model", "tool"):
                previous = last.get(event.originator_id)
                last[event.originator_id] = at
                if not t0 <= at < t1:
                    continue
                setattr(result, f"{kind}_steps", getattr(result, f"{kind}_steps") + 1)
                if previous is not None:
                    gaps = result.model_gaps_ms if kind == "model" else result.tool_gaps_ms
                    gaps.append(1000 * (at - previous))
            elif kind == "completed":
                result.finished += at < t1
            else:
                result.failures[kind] = result.failures.get(kind, 0) + 1
    finally:
        store.close()


def step_events(store: Store, page: int = 5000) -> Any:
    """(event, kind) of the step events and a few others, in log order per agent."""
    topics = {**STEP_TOPICS, **OTHER_TOPICS}
    recorder, mapper, start = store.log.recorder, store.log.mapper, 1
    while batch := recorder.select_notifications(start, page, topics=list(topics)):
        for notification in batch:
            yield mapper.to_domain_event(notification), topics[notification.topic]
        start = batch[-1].id + 1


def check_views(url: str, result: Result) -> None:
    """Views caught up after the run equal views rebuilt from the log, row for row."""
    store = open_store(url, embedded=False, catch_up=False)
    try:
        views = store.views
        views.catch_up()
        names = list(views.views)
        caught_up = {name: rows_of(store, name) for name in names}
        views.rebuild_many(names)
        rebuilt = {name: rows_of(store, name) for name in names}
        result.view_rows = sum(len(rows) for rows in rebuilt.values())
        result.converged = caught_up == rebuilt
        behind = [s.name for s in views.status() if s.lag != 0]
        if behind:
            result.converged = False
            result.errors.append(f"views not at the head of every shard: {', '.join(behind)}")
        result.view_shards = min(max(1, len(s.shards)) for s in views.status())
        if not result.converged:
            differ = [name for name in names if caught_up[name] != rebuilt[name]]
            result.errors.append(f"views differ from their rebuild: {', '.join(differ)}")
    finally:
        store.close()


def rows_of(store: Store, name: str) -> list[tuple[Any, ...]]:
    """Every row of a view's serving build, in primary key order."""
    from sqlalchemy import select

    with store.views.engine.connect() as conn:
        table = store.views.table(conn, name)
        query = select(table).order_by(*table.primary_key.columns)
        return [tuple(row) for row in conn.execute(query)]


def cores() -> int:
    """CPUs this process may use."""
    return len(os.sched_getaffinity(0))
