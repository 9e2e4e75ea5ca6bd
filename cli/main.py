"""The ``agentlog`` command: the composition root. Thin: parse, call, print."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import version as package_version

import click
from eventsourcing.domain import EventSourcingError

from agentlog.adapters.storage import DEFAULT_URL, open_log
from agentlog.cli import render
from agentlog.domain import AgentConfig, AgentError, AgentLog, Policy


class Settings:
    """What the global options say; the log is opened only when a command needs it."""

    def __init__(self, db: str, cipher_key: str | None) -> None:
        self.db = db
        self.cipher_key = cipher_key

    @contextmanager
    def log(self) -> Iterator[AgentLog]:
        """Open the agent log; turn agentlog and storage errors into one-line errors."""
        try:
            yield open_log(self.db, cipher_key=self.cipher_key)
        except AgentError as e:
            raise click.ClickException(str(e)) from None
        except EventSourcingError as e:
            raise click.ClickException(f"storage: {e}") from None


pass_settings = click.make_pass_decorator(Settings)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_version("agentlog"), prog_name="agentlog")
@click.option(
    "--db",
    envvar="AGENTLOG_DB",
    default=DEFAULT_URL,
    show_default=True,
    help="Storage URL: sqlite:///PATH, postgresql+psycopg://..., memory:// "
    "(add ?engine=sqlalchemy for eventsourcing-sqlalchemy). Env: AGENTLOG_DB.",
)
@click.option(
    "--cipher-key",
    envvar="AGENTLOG_CIPHER_KEY",
    default=None,
    help="AES key (base64) to encrypt stored events. Env: AGENTLOG_CIPHER_KEY.",
)
@click.pass_context
def main(ctx: click.Context, db: str, cipher_key: str | None) -> None:
    """agentlog: the log is the agent."""
    ctx.obj = Settings(db, cipher_key)


@main.command()
@pass_settings
def init(settings: Settings) -> None:
    """Create the store if it does not exist yet."""
    with settings.log():
        click.echo(f"agent log ready at {settings.db}")


@main.command()
@click.option("--name", required=True, help="A name for people to recognise the agent by.")
@click.option("--goal", default=None, help="Start a task with this goal right away.")
@click.option("--model", default="scripted", show_default=True, help="The model's id.")
@click.option("--system-prompt", default="", help="The model's system prompt.")
@click.option(
    "--policy",
    "policies",
    multiple=True,
    metavar="TOOL=allow|ask|deny",
    help="A tool's permission policy (repeatable).",
)
@click.option(
    "--default-policy",
    type=click.Choice([p.value for p in Policy]),
    default=Policy.ASK.value,
    show_default=True,
    help="Policy of tools without --policy.",
)
@pass_settings
def new(
    settings: Settings,
    name: str,
    goal: str | None,
    model: str,
    system_prompt: str,
    policies: tuple[str, ...],
    default_policy: str,
) -> None:
    """Create an agent and print its id."""
    config = AgentConfig(
        model=model,
        system_prompt=system_prompt,
        tool_policies=_parse_policies(policies),
        default_policy=Policy(default_policy),
    )
    with settings.log() as log:
        agent_id = log.create_agent(name, config)
        if goal is not None:
            log.start_task(agent_id, goal)
    click.echo(agent_id)


@main.command(name="ls")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_settings
def list_agents(settings: Settings, as_json: bool) -> None:
    """List the agents in the store."""
    with settings.log() as log:
        agents = [log.get(agent_id) for agent_id in log.agent_ids()]
    if as_json:
        click.echo(render.dumps([render.agent_json(a) for a in agents]))
    elif agents:
        render.print_table(render.agent_table(agents))


@main.command()
@click.argument("agent")
@click.option("--at", "version", type=click.IntRange(min=1), help="Show it as it was at VERSION.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_settings
def show(settings: Settings, agent: str, version: int | None, as_json: bool) -> None:
    """Show one agent (AGENT is its id or a unique prefix of it)."""
    with settings.log() as log:
        found = log.get(log.resolve(agent), version=version)
    if as_json:
        click.echo(render.dumps(render.agent_json(found)))
    else:
        render.print_table(render.agent_details(found))


@main.command()
@click.argument("agent")
@click.option("--json", "as_json", is_flag=True, help="Print JSON Lines, one event a line.")
@pass_settings
def log(settings: Settings, agent: str, as_json: bool) -> None:
    """Print an agent's events: version, time, type, actor, short payload."""
    with settings.log() as agent_log:
        for event in agent_log.events_of(agent_log.resolve(agent)):
            line = (
                render.dumps_line(render.event_json(event)) if as_json else render.event_line(event)
            )
            click.echo(line)


def _parse_policies(items: tuple[str, ...]) -> dict[str, Policy]:
    policies: dict[str, Policy] = {}
    for item in items:
        tool, _, value = item.partition("=")
        if not tool or value not in {p.value for p in Policy}:
            raise click.BadParameter(f"{item!r}: write TOOL=allow|ask|deny", param_hint="--policy")
        policies[tool] = Policy(value)
    return policies
