"""Talking to an agent: send a message, start a task, cancel it."""

from __future__ import annotations

import click

from agentlog.adapters.agent_ids import resolve
from agentlog.cli.completion import agent_ids
from agentlog.cli.settings import Settings, pass_settings
from agentlog.cli.texts import FILE_HELP, text_option

_BY = click.option("--by", "person", default="user", show_default=True, help="Who says so.")


@click.command()
@click.argument("agent", shell_complete=agent_ids)
@click.argument("text", required=False)
@click.option("--file", "path", metavar="PATH", help=f"Read the message from a file ({FILE_HELP}).")
@_BY
@pass_settings
def send(settings: Settings, agent: str, text: str | None, path: str | None, person: str) -> None:
    """Record a message from a person to AGENT; the model reads it at its next turn.

    An idle agent keeps it for its next task; a finished one accepts nothing more.
    """
    message = text_option(text, path, ("TEXT", "--file"))
    if message is None:
        raise click.UsageError("give the message as TEXT or --file")
    with settings.store() as store:
        agent_id = resolve(store.log, store.views, agent)
        store.log.send(agent_id, message, actor=person)
    click.echo(f"sent to {agent_id} ({len(message):,} characters, by {person})")


@click.command()
@click.argument("agent", shell_complete=agent_ids)
@click.argument("goal", required=False)
@click.option("--goal-file", metavar="PATH", help=f"Read the goal from a file ({FILE_HELP}).")
@_BY
@pass_settings
def start(
    settings: Settings, agent: str, goal: str | None, goal_file: str | None, person: str
) -> None:
    """Give an idle AGENT a task with GOAL (a worker, or `agentlog run`, advances it)."""
    text = text_option(goal, goal_file, ("GOAL", "--goal-file"))
    if text is None:
        raise click.UsageError("give the goal as GOAL or --goal-file")
    with settings.store() as store:
        agent_id = resolve(store.log, store.views, agent)
        store.log.start_task(agent_id, text, actor=person)
    click.echo(f"started {agent_id}")


@click.command()
@click.argument("agent", shell_complete=agent_ids)
@click.option("--reason", default="", help="Why (recorded with the cancellation).")
@_BY
@pass_settings
def cancel(settings: Settings, agent: str, reason: str, person: str) -> None:
    """Stop AGENT's task at once; it accepts nothing more, and calls not yet started never run."""
    with settings.store() as store:
        agent_id = resolve(store.log, store.views, agent)
        store.log.cancel(agent_id, reason, actor=person)
    click.echo(f"cancelled {agent_id}" + (f": {reason}" if reason else ""))
