"""Running agents: step, run, approve, deny, settle, worker."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from typing import Any
from uuid import UUID

import click

from agentlog.adapters.agent_ids import resolve
from agentlog.adapters.leases import LEASE_SECONDS
from agentlog.adapters.stopping import StopOnSignals
from agentlog.adapters.tools import builtin_tools
from agentlog.adapters.worker import Worker
from agentlog.cli import render
from agentlog.cli.completion import agent_ids, unknown_calls, waiting_calls
from agentlog.cli.settings import Settings, pass_settings
from agentlog.domain import AgentError, Phase
from agentlog.domain.runtime import Step

EXIT_CODES = {
    Phase.COMPLETED: 0,
    Phase.FAILED: 1,
    Phase.CANCELLED: 1,
    Phase.WAITING: 3,
    Phase.BLOCKED: 3,
    Phase.RUNNING: 4,
}
"""What `agentlog run` exits with, by what the agent is doing when it stops."""


@click.command()
@click.argument("agent", shell_complete=agent_ids)
@pass_settings
def step(settings: Settings, agent: str) -> None:
    """Advance AGENT by one step (ask the model, run a call, ...).

    It holds the agent's lease while it runs, as a worker's turn does: an agent a
    worker is advancing now is refused (exit 1, naming the worker)."""
    with settings.store(embedded=False) as store:
        agent_id = resolve(store.log, store.views, agent)
        done = Worker(store, builtin_tools(settings.sandbox)).step(agent_id, lease=True)
    click.echo(render.step_line(done))


@click.command()
@click.argument("agent", shell_complete=agent_ids)
@click.option(
    "--max-steps",
    type=click.IntRange(min=1),
    default=50,
    show_default=True,
    help="Stop after this many steps (recorded as LimitReached).",
)
@pass_settings
def run(settings: Settings, agent: str, max_steps: int) -> None:
    """Advance AGENT until it is done, waits for a person, or is blocked.

    \b
    Exit codes:
      0  the task completed
      1  the task failed or was cancelled (or an error: no task, unknown agent, ...)
      2  the command was used wrongly
      3  waiting for a person: a call to approve or deny, or an outcome to settle
      4  the task is still running (--max-steps reached, or a call runs elsewhere)

    It holds the agent's lease while it runs, renewed, and gives it back when it ends
    (also on an error or Ctrl-C), as a worker's turn does: an agent a worker is
    advancing now is refused (exit 1, naming the worker), and if a worker takes the
    lease over meanwhile (it expired unrenewed), the run stops after the step under way.
    """
    with settings.store(embedded=False) as store:
        agent_id = resolve(store.log, store.views, agent)
        worker = Worker(store, builtin_tools(settings.sandbox))
        last = worker.run(agent_id, max_steps, _echo, lease=True)
        agent_now = store.log.get(agent_id)
    if not last.progressed:
        detail = f": {last.detail}" if last.detail else ""
        click.echo(render.printable(f"stopped: {last.kind}{detail}"))
    phase = agent_now.phase
    if phase is Phase.IDLE:
        raise click.ClickException(f"agent {agent_id} has no task (agentlog start AGENT GOAL)")
    if phase is not Phase.COMPLETED:
        click.echo(_why_stopped(phase, agent_now.result, agent_now.awaiting_permission), err=True)
    sys.exit(EXIT_CODES[phase])


def _why_stopped(phase: Phase, result: str | None, waiting: tuple[str, ...]) -> str:
    """The one stderr line of a run that did not complete."""
    if phase is Phase.FAILED:
        return f"Error: the task failed: {result or 'no reason recorded'}"
    if phase is Phase.CANCELLED:
        return f"Error: the task was cancelled{': ' + result if result else ''}"
    if phase is Phase.WAITING:
        return f"waiting for a person: approve or deny {', '.join(waiting)}"
    if phase is Phase.BLOCKED:
        return "waiting for a person: settle a call whose outcome is unknown (agentlog show)"
    return "still running: run it again, or leave it to a worker"


@click.command()
@click.argument("agent", shell_complete=agent_ids)
@click.argument("call_id", shell_complete=waiting_calls)
@click.option("--by", "approver", default="user", show_default=True, help="Who approves.")
@pass_settings
def approve(settings: Settings, agent: str, call_id: str, approver: str) -> None:
    """Grant a waiting tool call, bound to the arguments it was recorded with."""
    with settings.store() as store:
        store.log.grant(resolve(store.log, store.views, agent), call_id, approver=approver)
    click.echo(f"granted {call_id} (by {approver})")


@click.command()
@click.argument("agent", shell_complete=agent_ids)
@click.argument("call_id", shell_complete=waiting_calls)
@click.option("--reason", required=True, help="Why (the model is told).")
@click.option("--by", "approver", default="user", show_default=True, help="Who denies.")
@pass_settings
def deny(settings: Settings, agent: str, call_id: str, reason: str, approver: str) -> None:
    """Refuse a tool call that has not started; it never runs."""
    with settings.store() as store:
        agent_id = resolve(store.log, store.views, agent)
        store.log.deny(agent_id, call_id, approver=approver, reason=reason)
    click.echo(f"denied {call_id} (by {approver})")


@click.command()
@click.argument("agent", shell_complete=agent_ids)
@click.argument("call_id", shell_complete=unknown_calls)
@click.option(
    "--happened/--did-not-happen",
    required=True,
    help="Whether the call's effect took place (you checked).",
)
@click.option("--by", "person", default="user", show_default=True, help="Who decides.")
@pass_settings
def settle(settings: Settings, agent: str, call_id: str, happened: bool, person: str) -> None:
    """Decide a call whose outcome is unknown, after checking the world by hand."""
    with settings.store() as store:
        agent_id = resolve(store.log, store.views, agent)
        store.log.settle(agent_id, call_id, happened=happened, by=person)
    click.echo(f"settled {call_id}: {'happened' if happened else 'did not happen'}")


@click.command()
@click.option(
    "--processes",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Worker processes to run side by side.",
)
@click.option(
    "--concurrency",
    "-k",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Agents each process advances at once (in threads).",
)
@click.option(
    "--poll",
    type=click.FloatRange(min=0.01),
    default=1.0,
    show_default=True,
    help="Seconds between looks for work when idle.",
)
@click.option(
    "--lease",
    "lease_seconds",
    type=click.FloatRange(min=1.0),
    default=LEASE_SECONDS,
    show_default=True,
    help="Seconds an agent's lease lasts unless renewed.",
)
@click.option(
    "--group-commit/--no-group-commit",
    default=True,
    show_default=True,
    help="With --concurrency above 1: saves made at once share one transaction.",
)
@click.option(
    "--views",
    type=click.Choice(["follow", "leave"]),
    default="follow",
    show_default=True,
    help="follow: one worker of the store at a time keeps the views caught up; "
    "leave: none does (run `agentlog projections run` beside the workers).",
)
@click.option("--exit-when-idle", is_flag=True, help="Exit once no agent is runnable.")
@click.option("--quiet", is_flag=True, help="No warnings about models that cannot be built.")
@pass_settings
def worker(settings: Settings, /, processes: int, **options: Any) -> None:
    """Advance every runnable agent, forever (or until idle), in one or more processes.

    Each process advances up to --concurrency agents at once, in threads (a step mostly
    waits on the model); their saves share transactions (group commit) unless
    --no-group-commit. An agent is advanced by one worker at a time: its turn holds a
    lease in the store's database, renewed while it runs. A worker that dies leaves its
    leases to expire (--lease), or to be taken over at once by a worker on its host.

    Workers find their work in the runnable view. One worker of the store at a time
    keeps the views caught up, in a thread of its own (it holds the views' lease,
    shown by `agentlog workers`); with --views leave none does, and `agentlog
    projections run` must follow the log instead.

    An agent whose model cannot be built (unknown spec, missing API key, no script
    file) is not skipped: each attempt is recorded as ModelFailed, so its limit
    (max_model_failures) fails the task; a warning line per agent says why on stderr.

    SIGINT (Ctrl-C) or SIGTERM: the steps under way finish or are abandoned, nothing
    more starts, and the worker exits with 130 (SIGINT) or 143 (SIGTERM); a second
    signal stops it at once. The database going away is waited out, with one line when
    it goes and one when it is back.
    """
    work = WorkOptions(**options)
    if processes == 1:
        stopped = _work(settings, work, signal.SIGINT, signal.SIGTERM)
        _exit_if_stopped(stopped)
        return
    with settings.log(create=True):  # a store the key does not open fails once, here, in one line
        pass
    spawn = multiprocessing.get_context("spawn")
    children = [spawn.Process(target=_child, args=(settings, work)) for _ in range(processes)]
    # Children ignore SIGINT (they inherit that from here): Ctrl-C reaches the whole
    # process group, and the parent alone turns it into one SIGTERM for each child.
    default = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        for child in children:
            child.start()
    finally:
        signal.signal(signal.SIGINT, default)
    forward = _forwarder(children)
    with StopOnSignals(threading.Event(), then=forward) as signals:
        for child in children:
            child.join()
    stopped = signals.exit_code
    failed = [c.exitcode for c in children if c.exitcode and not _stopped_by_us(c, stopped)]
    if failed:
        raise click.ClickException(f"{len(failed)} worker process(es) failed: {failed}")
    _exit_if_stopped(stopped)


@dataclass(frozen=True)
class WorkOptions:
    """How each worker process works (the worker command's options)."""

    concurrency: int
    poll: float
    lease_seconds: float
    group_commit: bool
    exit_when_idle: bool
    quiet: bool
    views: str = "follow"


def _forwarder(children: Sequence[BaseProcess]) -> Callable[[int], None]:
    def forward(signum: int) -> None:
        for child in children:
            if child.pid is not None and child.exitcode is None:
                with contextlib.suppress(ProcessLookupError):  # it ended meanwhile
                    os.kill(child.pid, signal.SIGTERM)

    return forward


def _stopped_by_us(child: BaseProcess, stopped: int | None) -> bool:
    """A child that exited because the parent passed a stop signal on is no failure."""
    return stopped is not None and child.exitcode in (128 + signal.SIGTERM, -signal.SIGTERM)


def _child(settings: Settings, work: WorkOptions) -> None:
    """One worker process: an error ends it with one line and exit code 1, no traceback;
    SIGTERM (from the parent) stops it as it stops a lone worker."""
    try:
        stopped = _work(settings, work, signal.SIGTERM)
        _exit_if_stopped(stopped, quietly=True)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)


def _work(settings: Settings, work: WorkOptions, *signals: signal.Signals) -> int | None:
    """Work until idle or stopped by one of ``signals``; the exit code if one did."""
    # Not embedded: a step commits its events only; the views are caught up beside the turns.
    group_commit = work.group_commit and work.concurrency > 1  # one thread: nothing to share
    with settings.store(
        embedded=False, catch_up=False, create=True, group_commit=group_commit
    ) as store:
        stop = threading.Event()
        tools = builtin_tools(settings.sandbox)
        with StopOnSignals(stop, signals) as stopping:
            Worker(
                store, tools, concurrency=work.concurrency, lease_seconds=work.lease_seconds
            ).work(
                poll=work.poll,
                exit_when_idle=work.exit_when_idle,
                on_step=_echo,
                on_unbuilt=None if work.quiet else _warn_unbuilt,
                stop=stop,
                say=_say,
                follow_views=work.views == "follow",
            )
    return stopping.exit_code


def _exit_if_stopped(code: int | None, *, quietly: bool = False) -> None:
    if code is not None:
        if not quietly:
            click.echo("worker stopped", err=True)
        sys.exit(code)


def _say(line: str) -> None:
    click.echo(line, err=True)


def _warn_unbuilt(agent_id: UUID, error: AgentError) -> None:
    click.echo(f"warning: agent {agent_id}: {error}; recorded as ModelFailed", err=True)


def _echo(done: Step) -> None:
    click.echo(render.step_line(done))
