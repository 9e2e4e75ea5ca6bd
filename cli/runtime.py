"""Running agents: step, run, approve, deny, settle, worker."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from multiprocessing.process import BaseProcess

import click

from agentlog.adapters.agent_ids import resolve
from agentlog.adapters.stopping import StopOnSignals
from agentlog.adapters.tools import builtin_tools
from agentlog.adapters.worker import Worker
from agentlog.cli import render
from agentlog.cli.settings import Settings, pass_settings
from agentlog.domain.runtime import Step


@click.command()
@click.argument("agent")
@pass_settings
def step(settings: Settings, agent: str) -> None:
    """Advance AGENT by one step (ask the model, run a call, ...)."""
    with settings.store(embedded=False) as store:
        agent_id = resolve(store.log, store.views, agent)
        done = Worker(store, builtin_tools(settings.sandbox)).step(agent_id)
    click.echo(render.step_line(done))


@click.command()
@click.argument("agent")
@click.option(
    "--max-steps",
    type=click.IntRange(min=1),
    default=50,
    show_default=True,
    help="Stop after this many steps (recorded as LimitReached).",
)
@pass_settings
def run(settings: Settings, agent: str, max_steps: int) -> None:
    """Advance AGENT until it is done, waits for a person, or is blocked."""
    with settings.store(embedded=False) as store:
        agent_id = resolve(store.log, store.views, agent)
        last = Worker(store, builtin_tools(settings.sandbox)).run(agent_id, max_steps, _echo)
    if not last.progressed:
        click.echo(f"stopped: {last.kind}{': ' + last.detail if last.detail else ''}")


@click.command()
@click.argument("agent")
@click.argument("call_id")
@click.option("--by", "approver", default="user", show_default=True, help="Who approves.")
@pass_settings
def approve(settings: Settings, agent: str, call_id: str, approver: str) -> None:
    """Grant a waiting tool call, bound to the arguments it was recorded with."""
    with settings.store() as store:
        store.log.grant(resolve(store.log, store.views, agent), call_id, approver=approver)
    click.echo(f"granted {call_id} (by {approver})")


@click.command()
@click.argument("agent")
@click.argument("call_id")
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
@click.argument("agent")
@click.argument("call_id")
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
    "--poll",
    type=click.FloatRange(min=0.01),
    default=1.0,
    show_default=True,
    help="Seconds between looks for work when idle.",
)
@click.option("--exit-when-idle", is_flag=True, help="Exit once no agent is runnable.")
@pass_settings
def worker(settings: Settings, processes: int, poll: float, exit_when_idle: bool) -> None:
    """Advance every runnable agent, forever (or until idle), in one or more processes.

    SIGINT (Ctrl-C) or SIGTERM: the step under way finishes or is abandoned, nothing
    more starts, and the worker exits with 130 (SIGINT) or 143 (SIGTERM); a second
    signal stops it at once. The database going away is waited out, with one line when
    it goes and one when it is back.
    """
    if processes == 1:
        _exit_if_stopped(_work(settings, poll, exit_when_idle, signal.SIGINT, signal.SIGTERM))
        return
    with settings.log():  # a store the key does not open fails once, here, in one line
        pass
    spawn = multiprocessing.get_context("spawn")
    children = [
        spawn.Process(target=_child, args=(settings, poll, exit_when_idle))
        for _ in range(processes)
    ]
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


def _child(settings: Settings, poll: float, exit_when_idle: bool) -> None:
    """One worker process: an error ends it with one line and exit code 1, no traceback;
    SIGTERM (from the parent) stops it as it stops a lone worker."""
    try:
        _exit_if_stopped(_work(settings, poll, exit_when_idle, signal.SIGTERM), quietly=True)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)


def _work(
    settings: Settings, poll: float, exit_when_idle: bool, *signals: signal.Signals
) -> int | None:
    """Work until idle or stopped by one of ``signals``; the exit code if one did."""
    # Not embedded: a step commits its events only; the loop catches views up between turns.
    with settings.store(embedded=False, catch_up=False) as store:
        stop = threading.Event()
        with StopOnSignals(stop, signals) as stopping:
            Worker(store, builtin_tools(settings.sandbox)).work(
                poll=poll, exit_when_idle=exit_when_idle, on_step=_echo, stop=stop, say=_say
            )
    return stopping.exit_code


def _exit_if_stopped(code: int | None, *, quietly: bool = False) -> None:
    if code is not None:
        if not quietly:
            click.echo("worker stopped", err=True)
        sys.exit(code)


def _say(line: str) -> None:
    click.echo(line, err=True)


def _echo(done: Step) -> None:
    click.echo(render.step_line(done))
