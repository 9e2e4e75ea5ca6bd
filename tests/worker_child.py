"""A worker run as a real child process, for tests that kill or race workers; and
:class:`Workers`, the parent's side: start such processes, let them go, kill them.

``python tests/worker_child.py URL SCRIPT LEDGER AGENT_ID... [options]`` opens the store
at URL, builds a :class:`Runtime` with the scripted model in the JSON file SCRIPT and the
counting tools of ``counting_tools`` (counting into the folder LEDGER), and advances the
agents round robin, one step each in turn, until every one is finished.

With ``--views`` it runs the production loop instead, the one ``agentlog worker`` runs:
it opens the store as that command does (``open_store``, views not embedded) and lets a
:class:`Worker` with the counting tools take runnable agents from the runnable view
until none is left (``exit_when_idle``). The worker builds each agent's model from its
config, so those agents must name theirs (``scripted:SCRIPT``); SCRIPT is not read.
The AGENT_IDs are the agents it must finish; it takes any runnable agent of the store.
With ``--signals`` it also stops on SIGINT/SIGTERM as ``agentlog worker`` does (and exits
with 128 + the signal's number); ``--worker-id host:pid`` names it as ``agentlog worker``
does, so that the next worker can tell when it is gone. ``--concurrency K`` advances up
to K agents at once (``agentlog worker --concurrency``; ``--group-commit`` as that command
opens the store then), ``--lease SECONDS`` sets how long
a lease lasts, and ``--turns FILE`` appends ``start AGENT PID SLOT`` when a turn has taken
its agent's lease and ``end AGENT PID SLOT`` before it gives it back (one ``write(2)``
each, ``O_APPEND``: the file orders the turns of every worker).

It prints flushed lines the parent can time kills by:

* ``ready``: the store is open (with ``--wait``, it now waits for a line on stdin);
* ``step AGENT KIND VERSION DETAIL``: one per ``advance``;
* ``error AGENT ERROR``: an AgentError escaped ``advance`` (a runtime bug; it goes on);
  with ``--views``, ``error - MESSAGE``: the worker logged a warning (it skipped an agent);
* ``done LOST_RACES``: every agent is finished; how many saves lost a race (``-``
  with ``--views``: not counted).

Exit status: 0 done, 3 stuck (every unfinished agent waits for a person or is
blocked; with ``--views``: the worker went idle with an agent unfinished), 4 out of
time (``--deadline``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any
from uuid import UUID

from eventsourcing.persistence import IntegrityError, Recording

from agentlog.adapters.leased_turn import LeasedTurn
from agentlog.adapters.leases import Lease
from agentlog.adapters.scripted import ScriptedModel
from agentlog.adapters.stopping import STOP_SIGNALS, StopOnSignals
from agentlog.adapters.storage import env_for
from agentlog.adapters.tools import ToolRegistry
from agentlog.adapters.views import open_store
from agentlog.adapters.worker import Worker
from agentlog.domain import AgentError, AgentLog
from agentlog.domain.ports import Decision
from agentlog.domain.runtime import Runtime, Step, StepKind

from counting_tools import SLOW_DELAY, Ledger, counting_tools

STUCK, OUT_OF_TIME = 3, 4


class RacingLog(AgentLog):
    """The agent log, counting the saves that lost a race to another worker."""

    name = "agentlog"  # the library would name it after the class (and prefix tables so)

    def __init__(self, env: dict[str, str] | None = None) -> None:
        super().__init__(env)
        self.lost_races = 0

    def save(self, *objs: Any, **kwargs: Any) -> list[Recording[UUID]]:
        """Save; count an IntegrityError (the runtime reloads and re-decides)."""
        try:
            return super().save(*objs, **kwargs)
        except IntegrityError:
            self.lost_races += 1
            raise


def parse(argv: list[str]) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description="A worker run as a real child process.")
    parser.add_argument("url")
    parser.add_argument("script", type=Path)
    parser.add_argument("ledger", type=Path)
    parser.add_argument("agents", nargs="+", type=UUID)
    parser.add_argument("--worker-id", default="child")
    parser.add_argument("--wait", action="store_true", help="wait for a line on stdin first")
    parser.add_argument("--delay", type=float, default=SLOW_DELAY, help="slow tools' sleeps")
    parser.add_argument("--poll", type=float, default=0.02, help="sleep when nothing moved")
    parser.add_argument("--deadline", type=float, default=120.0, help="seconds before giving up")
    parser.add_argument("--snapshot-interval", type=int, default=None)
    parser.add_argument(
        "--views", action="store_true", help="run Worker.work on the runnable view instead"
    )
    parser.add_argument(
        "--signals", action="store_true", help="with --views: stop on SIGINT/SIGTERM"
    )
    parser.add_argument("--concurrency", type=int, default=1, help="with --views: turns at once")
    parser.add_argument("--lease", type=float, default=30.0, help="with --views: lease seconds")
    parser.add_argument("--turns", type=Path, default=None, help="with --views: log turns here")
    parser.add_argument(
        "--group-commit", action="store_true", help="with --views: saves share transactions"
    )
    parser.add_argument(
        "--pause-after-unknown",
        type=float,
        default=0.0,
        help="with --views: seconds to sleep after reporting an 'unknown' step, so that a "
        "kill can land between ToolOutcomeUnknown and its reconciliation",
    )
    return parser.parse_args(argv)


def work(runtime: Runtime, agents: list[UUID], poll: float, deadline: float) -> int:
    """Advance the agents in turn until all are finished; the exit status."""
    pending, rng = list(agents), random.Random(runtime.worker_id)
    while pending:
        if time.monotonic() > deadline:
            return OUT_OF_TIME
        rng.shuffle(pending)  # racing workers collide on different agents first
        steps = [advance(runtime, agent_id) for agent_id in pending]
        unfinished = [s for s in steps if s.kind is not StepKind.FINISHED]
        pending = [s.agent_id for s in unfinished]
        if not unfinished or any(s.progressed for s in steps):
            continue
        if all(s.kind in (StepKind.WAITING, StepKind.BLOCKED) for s in unfinished):
            return STUCK
        time.sleep(poll)  # a call runs elsewhere, or looks alive: wait for it
    return 0


def advance(runtime: Runtime, agent_id: UUID) -> Step:
    """One step, reported. An AgentError escaping the runtime is a bug: it is reported as
    an ``error`` line and the worker goes on, as a restarted worker would."""
    try:
        step = runtime.advance(agent_id)
    except AgentError as e:
        print("error", agent_id, f"{type(e).__name__}: {e}", flush=True)
        return Step(kind=StepKind.BUSY, agent_id=agent_id, version=0, detail="error")
    report(step)
    return step


def report(step: Step, pause_after_unknown: float = 0.0) -> None:
    """Print the step (after it was saved); after an 'unknown' step, pause if asked."""
    print("step", step.agent_id, step.kind.value, step.version, step.detail, flush=True)
    if step.kind is StepKind.UNKNOWN:
        time.sleep(pause_after_unknown)


class ErrorLines(logging.Handler):
    """Prints the worker's warnings (an agent it skipped) as ``error`` lines."""

    def emit(self, record: logging.LogRecord) -> None:
        """One flushed line per record."""
        print("error", "-", record.getMessage().replace("\n", " "), flush=True)


def work_views(args: argparse.Namespace) -> int:
    """Run ``Worker.work`` on the store's runnable view until idle; the exit status."""
    # As `agentlog worker` opens it (with --concurrency above 1: group commit).
    store = open_store(args.url, embedded=False, catch_up=False, group_commit=args.group_commit)
    tools = ToolRegistry(counting_tools(Ledger(args.ledger), delay=args.delay))
    name = None if args.worker_id == "host:pid" else args.worker_id
    worker = Worker(store, tools, name, concurrency=args.concurrency, lease_seconds=args.lease)
    if args.turns is not None:
        log_turns(args.turns)
    logging.getLogger("agentlog.adapters.worker").addHandler(ErrorLines(logging.WARNING))
    stop = threading.Event()
    print("ready", flush=True)
    if args.wait:
        sys.stdin.readline()
    timer = threading.Timer(args.deadline, stop.set)
    timer.start()
    signals = StopOnSignals(stop, STOP_SIGNALS if args.signals else ())
    try:
        on_step = partial(report, pause_after_unknown=args.pause_after_unknown)
        with signals:
            worker.work(poll=args.poll, exit_when_idle=True, on_step=on_step, stop=stop)
    finally:
        timer.cancel()
    if signals.exit_code is not None:
        print("stopped", "-", flush=True)
        store.close()
        return signals.exit_code
    finished = all(store.log.get(agent_id).status.is_final for agent_id in args.agents)
    status = 0 if finished else OUT_OF_TIME if stop.is_set() else STUCK
    print("done" if status == 0 else f"exit {status}", "-", flush=True)
    store.close()
    return status


def log_turns(path: Path) -> None:
    """Append a line to ``path`` when a turn starts (its lease taken) and ends (before
    the lease is given back)."""
    steps = LeasedTurn._steps

    def logged(turn: LeasedTurn, agent_id: UUID, lease: Lease) -> list[Step]:
        Ledger.append(path, f"start {agent_id} {os.getpid()} {lease.slot}\n")
        try:
            return steps(turn, agent_id, lease)
        finally:
            Ledger.append(path, f"end {agent_id} {os.getpid()} {lease.slot}\n")

    LeasedTurn._steps = logged  # type: ignore[method-assign,assignment]


def main(argv: list[str]) -> int:
    """Open the store, build the runtime, say ready, work."""
    args = parse(argv)
    if args.views:
        return work_views(args)
    log = RacingLog(env_for(args.url, snapshot_interval=args.snapshot_interval))
    tools = counting_tools(Ledger(args.ledger), delay=args.delay)
    model = ScriptedModel.from_file(args.script)
    runtime = Runtime(log, model, tools, worker_id=args.worker_id)
    print("ready", flush=True)
    if args.wait:
        sys.stdin.readline()
    status = work(runtime, list(args.agents), args.poll, time.monotonic() + args.deadline)
    print("done" if status == 0 else f"exit {status}", log.lost_races, flush=True)
    log.close()
    return status


class Workers:
    """Starts worker processes on one store; each opens the store, then waits for 'go'.

    Starting the next worker while one works hides the interpreter's start-up time, so
    a killed worker is followed at once by one that is ready.
    """

    def __init__(
        self, url: str, folder: Path, script: Sequence[Decision], options: Sequence[str] = ()
    ) -> None:
        self.url, self.folder, self.options = url, folder, list(options)
        folder.mkdir(parents=True, exist_ok=True)
        self.script = folder / "script.json"
        self.script.write_text(json.dumps([d.model_dump(mode="json") for d in script]))
        self.ledger = Ledger(folder / "ledger")
        self.spawned: list[subprocess.Popen[str]] = []
        self.outputs: dict[int, list[str]] = {}
        self.readers: dict[int, threading.Thread] = {}
        self.ready: set[int] = set()

    def spawn(self, agents: Sequence[UUID]) -> subprocess.Popen[str]:
        """A worker for these agents (it opens the store, says ready and waits)."""
        name = f"w{len(self.spawned) + 1}"
        args = [self.url, str(self.script), str(self.ledger.folder), *map(str, agents)]
        with (self.folder / f"{name}.err").open("w") as err:
            worker = subprocess.Popen(
                [sys.executable, __file__, *args, "--wait", "--worker-id", name, *self.options],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
            )
        self.spawned.append(worker)
        return worker

    def wait_ready(self, worker: subprocess.Popen[str]) -> None:
        """Wait until the worker has opened the store."""
        assert worker.stdout is not None
        if worker.pid not in self.ready:
            assert worker.stdout.readline() == "ready\n", self.stderr(worker)
            self.ready.add(worker.pid)

    def go(self, worker: subprocess.Popen[str]) -> None:
        """Once the worker is ready, let it work, and collect what it prints."""
        assert worker.stdin is not None
        self.wait_ready(worker)
        worker.stdin.write("go\n")
        worker.stdin.close()
        lines = self.outputs[worker.pid] = []
        reader = threading.Thread(target=lines.extend, args=(worker.stdout,), daemon=True)
        reader.start()  # a full pipe must never hold a worker up
        self.readers[worker.pid] = reader

    def finish(self, worker: subprocess.Popen[str], timeout: float = 120) -> list[str]:
        """Wait for the worker to finish its agents by itself; what it printed."""
        status = worker.wait(timeout)
        self.readers[worker.pid].join()
        out = self.outputs[worker.pid]
        assert status == 0, f"exit {status}\n{''.join(out[-20:])}\n{self.stderr(worker)}"
        return out

    def kill(self, worker: subprocess.Popen[str]) -> bool:
        """SIGKILL the worker and wait until it is gone (its tool threads with it); False
        if it had finished its agents by itself a moment before the signal."""
        worker.kill()
        status = worker.wait()
        self.readers[worker.pid].join()
        assert status in (-9, 0), f"exit {status}\n{self.stderr(worker)}"
        return status == -9

    def errors(self) -> list[str]:
        """The ``error`` lines of every worker: AgentErrors that escaped the runtime."""
        return [line for out in self.outputs.values() for line in out if line.startswith("error")]

    def steps(self) -> list[tuple[UUID, str, int, str]]:
        """Every step any worker reported: agent, kind, version after it, detail."""
        lines = (line.split(" ", 4) for out in self.outputs.values() for line in out)
        return [
            (UUID(agent), kind, int(version), detail.rstrip("\n"))
            for word, agent, kind, version, detail in (p for p in lines if len(p) == 5)
            if word == "step"
        ]

    def stderr(self, worker: subprocess.Popen[str]) -> str:
        """What a worker wrote to stderr (its traceback, if it crashed)."""
        return (self.folder / f"w{self.spawned.index(worker) + 1}.err").read_text()

    def close(self) -> None:
        """Kill what still runs (after a failure) and close every pipe."""
        for worker in self.spawned:
            if worker.poll() is None:
                worker.kill()
            worker.wait()
            if worker.pid in self.readers:
                self.readers[worker.pid].join()
            for pipe in (worker.stdin, worker.stdout):
                if pipe is not None:
                    pipe.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
