"""``agentlog demo``: the README's main job."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from uuid import UUID

import click

from agentlog.adapters.demo import CRASH_POINTS, demo_tools, prepare
from agentlog.adapters.worker import Worker
from agentlog.cli import render
from agentlog.cli.settings import Settings, pass_settings


@click.command()
@click.option(
    "--crash-at",
    type=click.Choice(CRASH_POINTS),
    default="mid-tool",
    show_default=True,
    help="Where the worker running write_file is killed.",
)
@click.option("--crash-worker", hidden=True, type=click.UUID, default=None)
@pass_settings
def demo(settings: Settings, crash_at: str, crash_worker: UUID | None) -> None:
    """A scripted agent's life: tools, a permission gate, a kill -9, a resume.

    No network and no API key: the model is a script, the tools are real (a sandbox
    folder under .agentlog/demo). The worker running the approved write is killed with
    SIGKILL; a new process resumes the agent from its log and finishes it.
    """
    if crash_worker is not None:  # the child process that gets killed
        with settings.store(create=True) as store:
            tools = demo_tools(settings.sandbox, crash_at)
            Worker(store, tools).run(crash_worker, 10, _echo)
        return
    with settings.store(create=True) as store:
        agent_id = prepare(store, settings.sandbox)
        _say(f"agent {agent_id} created on {settings.db}; running it")
        Worker(store, demo_tools(settings.sandbox)).run(agent_id, 10, _echo)
        _say("the write needs a person's permission; approving it as demo-user")
        store.log.grant(agent_id, "write-1", approver="demo-user")
    _say(f"a worker process runs the write and is killed with SIGKILL ({crash_at})")
    child = _agentlog(settings, "demo", "--crash-at", crash_at, "--crash-worker", str(agent_id))
    _say(f"that worker exited with {child}; waiting out its call timeout, then resuming")
    time.sleep(1.1)
    _agentlog(settings, "run", str(agent_id))
    _say("the timeline, from the log:")
    _agentlog(settings, "log", str(agent_id))
    haiku = settings.sandbox / "haiku.txt"
    _say(f"{haiku}:\n{haiku.read_text()}" if haiku.exists() else f"{haiku} is missing")


def _agentlog(settings: Settings, *args: str) -> int:
    command = [
        sys.executable,
        "-m",
        "agentlog.cli",
        "--db",
        settings.db,
        "--sandbox",
        str(settings.sandbox),
        *args,
    ]
    env = dict(
        os.environ, **({"AGENTLOG_CIPHER_KEY": settings.cipher_key} if settings.cipher_key else {})
    )
    sys.stdout.flush()
    return subprocess.run(command, check=False, env=env).returncode


def _say(text: str) -> None:
    click.secho(f"\n== {text}", bold=True)


def _echo(step: object) -> None:
    click.echo(render.step_line(step))  # type: ignore[arg-type]
