"""The ``agentlog`` command: the composition root. Thin: parse, call, print."""

from __future__ import annotations

import logging
from importlib.metadata import version as package_version
from pathlib import Path

import click

from agentlog.adapters.agent_ids import resolve
from agentlog.adapters.call_args import open_call_args
from agentlog.adapters.chain_walk import ChainWalk, checked_events, first_break
from agentlog.adapters.models import SPEC_HELP, check_spec
from agentlog.adapters.storage import DEFAULT_URL, MAX_SHARDS
from agentlog.adapters.tools import builtin_tools
from agentlog.adapters.worker import DEFAULT_SANDBOX
from agentlog.cli import (
    audit_render,
    conversation,
    demo,
    leases,
    lineage,
    render,
    runtime,
    threads,
    verify,
    views,
)
from agentlog.cli import transfer as transfer_commands
from agentlog.cli.app_loading import load_apps
from agentlog.cli.catch_up import no_catch_up_option, reading
from agentlog.cli.completion import agent_ids
from agentlog.cli.errors import ErrorMappingGroup
from agentlog.cli.settings import Settings, pass_settings
from agentlog.cli.texts import FILE_HELP, text_option
from agentlog.domain import AgentConfig, AgentError, DamagedHistoryError, Phase, Policy
from agentlog.domain.history import MISSING
from agentlog.domain.lineage import history
from agentlog.domain.values import (
    DEFAULT_MAX_EMPTY_ANSWERS,
    DEFAULT_MAX_STEPS,
    DEFAULT_MAX_TOKENS,
    DEFAULT_MAX_WALL_TIME,
)
from agentlog.projections import queries
from agentlog.projections.state import DELETED


@click.group(cls=ErrorMappingGroup, context_settings={"help_option_names": ["-h", "--help"]})
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
@click.option(
    "--sandbox",
    envvar="AGENTLOG_SANDBOX",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_SANDBOX,
    show_default=True,
    help="Folder the built-in file tools may use. Env: AGENTLOG_SANDBOX.",
)
@click.option(
    "--app",
    "apps",
    envvar="AGENTLOG_APP",
    multiple=True,
    metavar="MODULE[:CLASS]",
    help="Load your own application (an AgentLog subclass), aggregates and views from "
    "this module, so their events resolve (repeatable). Env: AGENTLOG_APP "
    "(space-separated).",
)
@click.option(
    "--debug",
    envvar="AGENTLOG_DEBUG",
    is_flag=True,
    help="Show the traceback of an unexpected error. Env: AGENTLOG_DEBUG.",
)
@click.pass_context
def main(
    ctx: click.Context,
    db: str,
    cipher_key: str | None,
    sandbox: Path,
    apps: tuple[str, ...],
    debug: bool,
) -> None:
    """agentlog: the log is the agent."""
    # A view that stops is reported when it is read (and by `projections status`),
    # not as a log line in the middle of another command's output.
    logging.getLogger("agentlog").addHandler(logging.NullHandler())
    logging.getLogger("agentlog").propagate = False
    ctx.obj = Settings(db, cipher_key, sandbox, load_apps(apps))


@main.command()
@click.option(
    "--force", is_flag=True, help="Add agentlog's tables to a database that holds others."
)
@click.option(
    "--shards",
    type=click.IntRange(1, MAX_SHARDS),
    default=None,
    help="Spread the agents over this many events tables, so saves of agents in "
    "different shards do not wait on one table lock (PostgreSQL; fixed when the store "
    "is made; default 1).",
)
@pass_settings
def init(settings: Settings, force: bool, shards: int | None) -> None:
    """Create the store and its views if they do not exist yet."""
    with settings.store(create=True, force=force, shards=shards) as store:
        count = store.views.shard_count()
        made = f" ({count} shards)" if count > 1 else ""
        click.echo(f"agent log ready at {settings.db}{made}")


@main.command()
@click.option("--name", required=True, help="A name for people to recognise the agent by.")
@click.option("--goal", default=None, help="Start a task with this goal right away.")
@click.option("--goal-file", metavar="PATH", help=f"The goal, from a file ({FILE_HELP}).")
@click.option("--model", default=None, metavar="SPEC", help=f"The model: {SPEC_HELP}.")
@click.option("--system-prompt", default=None, help="The model's system prompt.")
@click.option(
    "--system-prompt-file", metavar="PATH", help=f"The system prompt, from a file ({FILE_HELP})."
)
@click.option(
    "--policy",
    "policies",
    multiple=True,
    metavar="TOOL=allow|ask|deny",
    help="A tool's permission policy (repeatable); a tool the worker lacks is warned about.",
)
@click.option("--strict", is_flag=True, help="Refuse --policy for a tool that does not exist.")
@click.option(
    "--default-policy",
    type=click.Choice([p.value for p in Policy]),
    default=None,
    help="Policy of every tool without --policy (default: each tool's own policy).",
)
@click.option(
    "--max-steps",
    type=click.IntRange(min=1),
    default=DEFAULT_MAX_STEPS,
    show_default=True,
    help="Model responses the task may take in all.",
)
@click.option(
    "--max-tokens",
    type=click.IntRange(min=1),
    default=DEFAULT_MAX_TOKENS,
    show_default=True,
    help="Tokens (prompt + completion) the task may spend.",
)
@click.option(
    "--max-empty-answers",
    type=click.IntRange(min=1),
    default=DEFAULT_MAX_EMPTY_ANSWERS,
    show_default=True,
    help="Answers in a row that say nothing or were cut off (finish_reason length).",
)
@click.option(
    "--max-wall-time",
    type=click.FloatRange(min=0, min_open=True),
    default=DEFAULT_MAX_WALL_TIME,
    show_default=True,
    metavar="SECONDS",
    help="Seconds after the task's start when the model is no longer asked.",
)
@click.option(
    "--compact-at",
    type=lineage.ContextSize(),
    default=None,
    help="Compact the model's context when it passes SIZE: 30000chars or 8000tokens.",
)
@click.option("--compact-model", default=None, metavar="SPEC", help="Who summarises [--model].")
@pass_settings
def new(
    settings: Settings,
    name: str,
    goal: str | None,
    goal_file: str | None,
    model: str | None,
    system_prompt: str | None,
    system_prompt_file: str | None,
    policies: tuple[str, ...],
    strict: bool,
    default_policy: str | None,
    max_steps: int,
    max_tokens: int,
    max_empty_answers: int,
    max_wall_time: float,
    compact_at: dict[str, int] | None,
    compact_model: str | None,
) -> None:
    """Create an agent and print its id (with a goal, the agent and its task are one save).

    Policy of a tool call: the tool's --policy, else --default-policy, else the tool's
    own. Every limit is finite; reaching one ends the task (recorded).
    """
    goal = text_option(goal, goal_file, ("--goal", "--goal-file"))
    prompt = text_option(
        system_prompt, system_prompt_file, ("--system-prompt", "--system-prompt-file")
    )
    if model is not None:
        try:
            check_spec(model)
        except AgentError as e:
            raise click.BadParameter(str(e), param_hint="--model") from None
    config = AgentConfig(
        model=model or "none",
        system_prompt=prompt or "",
        tool_policies=_parse_policies(policies, set(builtin_tools(settings.sandbox)), strict),
        default_policy=None if default_policy is None else Policy(default_policy),
        max_steps=max_steps,
        max_tokens=max_tokens,
        max_empty_answers=max_empty_answers,
        max_wall_time=max_wall_time,
        compact_model=lineage.checked_model(compact_model, "--compact-model"),
        **(compact_at or {}),
    )
    with settings.store(create=True) as store:
        agent_id = store.log.create_agent(name, config, goal=goal)
    click.echo(agent_id)


@main.command(name="ls")
@click.option(
    "--status",
    type=click.Choice([*(p.value for p in Phase), DELETED]),
    help="Only agents in this status (deleted: LangGraph threads deleted).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@no_catch_up_option
@pass_settings
def list_agents(settings: Settings, status: str | None, as_json: bool, no_catch_up: bool) -> None:
    """List the agents, SDK sessions and LangGraph threads (from the state view).

    KIND says which: agent, session (an SDK session) or langgraph (a LangGraph thread,
    named thread:THREAD_ID elsewhere; its STEPS are its live checkpoints). Deleted
    threads are left out (`agentlog threads` lists them).
    """
    with reading(settings, ["state"], no_catch_up) as store, store.views.engine.connect() as conn:
        rows = queries.states(conn, store.views.table(conn, "state"), status, store.views.seal)
    if as_json:
        click.echo(render.dumps([render.state_json(row) for row in rows]))
    elif rows:
        render.print_table(render.state_table(rows))


@main.command()
@click.argument("agent", shell_complete=agent_ids)
@click.option("--at", "version", type=click.IntRange(min=1), help="Show it as it was at VERSION.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@no_catch_up_option
@pass_settings
def show(
    settings: Settings, agent: str, version: int | None, as_json: bool, no_catch_up: bool
) -> None:
    """Show one agent (AGENT is its id or a unique prefix of it).

    The current state comes from the state view; --at replays the log to VERSION and
    warns on stderr if the events up to it fail their hash chain. Aggregates of your own
    (see --app) are replayed from the log. The arguments of open calls (those waiting
    for a person among them) come from the log.
    """
    with reading(settings, ["state"], no_catch_up) as store:
        agent_id = resolve(store.log, store.views, agent)
        found = views.aggregate_at(store, agent_id, version)
        if version is not None:
            verify.warn_if_broken(first_break(store.log, agent_id, upto=version))
        args = open_call_args(store.log, found)
    if as_json:
        data = render.agent_json(found)
        click.echo(render.dumps(audit_render.with_call_args(data, args)))
    else:
        table = render.agent_details(found)
        audit_render.add_call_args(table, args)
        render.print_table(table)


@main.command()
@click.argument("agent", shell_complete=agent_ids)
@click.option("--json", "as_json", is_flag=True, help="Print JSON Lines, one event a line.")
@click.option(
    "--lineage", "walk", is_flag=True, help="First its ancestors' events, up to each fork."
)
@pass_settings
def log(settings: Settings, agent: str, as_json: bool, walk: bool) -> None:
    """Print an agent's events: version, time, type, actor, short payload.

    Warns on stderr if they fail their hash chain (see `agentlog verify`).
    """
    with settings.store(catch_up=False) as store:
        agent_log = store.log
        agent_id = resolve(agent_log, store.views, agent)
        if walk:
            lineage.echo_history(agent_log, agent_id, as_json)
            for segment in history(agent_log, agent_id):
                verify.warn_if_broken(first_break(agent_log, segment.agent_id, segment.last))
            return
        chain = ChainWalk(agent_log, agent_id)
        for event in checked_events(chain):
            line = (
                render.dumps_line(render.event_json(event)) if as_json else render.event_line(event)
            )
            click.echo(line)
    found = chain.first_break
    if found is not None and found.topic is None:  # a hole, not an edit: nothing to show
        raise DamagedHistoryError(found.agent_id, found.version, MISSING)
    verify.warn_if_broken(found)


main.add_command(views.audit)
main.add_command(verify.verify)
main.add_command(threads.threads)
main.add_command(transfer_commands.export)
main.add_command(transfer_commands.import_)
main.add_command(views.projections)
for command in (
    runtime.step,
    runtime.run,
    runtime.approve,
    runtime.deny,
    runtime.settle,
    runtime.worker,
    leases.workers,
    demo.demo,
    conversation.send,
    conversation.start,
    conversation.cancel,
    lineage.fork,
    lineage.diff,
    lineage.compact,
):
    main.add_command(command)


def _parse_policies(items: tuple[str, ...], known: set[str], strict: bool) -> dict[str, Policy]:
    policies: dict[str, Policy] = {}
    for item in items:
        tool, _, value = item.partition("=")
        if not tool or value not in {p.value for p in Policy}:
            raise click.BadParameter(f"{item!r}: write TOOL=allow|ask|deny", param_hint="--policy")
        if tool not in known:
            _unknown_tool(tool, known, strict)
        policies[tool] = Policy(value)
    return policies


def _unknown_tool(tool: str, known: set[str], strict: bool) -> None:
    """A policy for a tool no worker here has: a typo, or a tool of your own code."""
    message = f"no tool named {tool!r} (tools: {', '.join(sorted(known))})"
    if strict:
        raise click.BadParameter(message, param_hint="--policy")
    click.echo(f"warning: --policy: {message}; kept, for a tool your own workers add", err=True)
