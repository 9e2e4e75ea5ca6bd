"""Fork, diff and compact: ``agentlog fork``, ``diff``, ``compact``, ``log --lineage``."""

from __future__ import annotations

import getpass
import re
from typing import Any
from uuid import UUID

import click
from rich.markup import escape
from rich.table import Table

from agentlog.adapters.agent_ids import resolve
from agentlog.adapters.models import SPEC_HELP, check_spec, model_for
from agentlog.cli import render
from agentlog.cli.completion import agent_ids
from agentlog.cli.settings import Settings, pass_settings
from agentlog.domain import AgentError, AgentLog
from agentlog.domain.application import require_agent
from agentlog.domain.compaction import compact_with_model, safe_cut
from agentlog.domain.lineage import ancestry, divergence, history

_SIZE = re.compile(r"^\s*(\d+)\s*(chars|tokens)\s*$")


class ContextSize(click.ParamType[dict[str, int], Any]):
    """A context size: ``30000chars`` or ``8000tokens`` (tokens: characters / 4)."""

    name = "SIZE"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> dict[str, int]:
        """``{"compact_at_chars": n}`` or ``{"compact_at_tokens": n}``."""
        if isinstance(value, dict):
            return value
        found = _SIZE.match(str(value))
        if found is None or int(found[1]) < 1:
            self.fail(f"{value!r}: write a positive number and a unit, e.g. 8000tokens", param)
        return {f"compact_at_{found[2]}": int(found[1])}


def checked_model(spec: str | None, hint: str = "--model") -> str | None:
    """A model spec of a known form, or a usage error naming the option."""
    if spec is None:
        return None
    try:
        return check_spec(spec)
    except AgentError as e:
        raise click.BadParameter(str(e), param_hint=hint) from None


@click.command()
@click.argument("agent", shell_complete=agent_ids)
@click.option("--at", "version", type=click.IntRange(min=1), help="Version to fork at [latest].")
@click.option("--name", default=None, help="The new agent's name [PARENT (fork at vN)].")
@click.option("--model", default=None, metavar="SPEC", help=f"Its model: {SPEC_HELP}.")
@click.option("--by", "actor", default="user", show_default=True, help="Who forks.")
@pass_settings
def fork(
    settings: Settings,
    agent: str,
    version: int | None,
    name: str | None,
    model: str | None,
    actor: str,
) -> None:
    """Create an agent whose state and model context equal AGENT's at a version; print
    its id. AGENT is not changed; the new agent records where it came from.

    A version where a tool call has no outcome yet cannot be forked: pick one before
    the model asked for the call, or after its result.
    """
    model = checked_model(model)
    with settings.store() as store:
        parent = resolve(store.log, store.views, agent)
        child = store.log.fork(parent, version, name=name, model=model, actor=actor)
    click.echo(child)


@click.command()
@click.argument("a", shell_complete=agent_ids)
@click.argument("b", shell_complete=agent_ids)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_settings
def diff(settings: Settings, a: str, b: str, as_json: bool) -> None:
    """Where the histories of agents A and B part: their last shared event (when one
    descends from the other, or both from a common ancestor), then each one's events
    after it, side by side."""
    with settings.store(catch_up=False) as store:
        id_a, id_b = (resolve(store.log, store.views, ref) for ref in (a, b))
        parted = divergence(store.log, id_a, id_b)
    if as_json:
        common = None
        if parted.common is not None:
            common = dict(zip(("agent_id", "version", "digest"), parted.common, strict=True))
        sides = {
            key: {"agent_id": agent_id, "events": [render.event_json(e) for e in events]}
            for key, agent_id, events in (("a", id_a, parted.a), ("b", id_b, parted.b))
        }
        click.echo(render.dumps({"common": common, **sides}))
        return
    if parted.common is None:
        click.echo("no common point: the two agents share no history")
    else:
        at, version, digest = parted.common
        click.echo(f"common point: {at} v{version} ({digest[:12]})")
    table = Table(f"A  {str(id_a)[:8]}", f"B  {str(id_b)[:8]}", box=None)
    for i in range(max(len(parted.a), len(parted.b))):
        table.add_row(*(escape(render.printable(_cell(side, i))) for side in (parted.a, parted.b)))
    render.print_table(table)


@click.command()
@click.argument("agent", shell_complete=agent_ids)
@click.option("--through", type=click.IntRange(min=1), help="Last version summarised [latest].")
@click.option("--summary", default=None, help="The summary, as you wrote it.")
@click.option(
    "--model", default=None, metavar="SPEC", help=f"Ask a model to summarise: {SPEC_HELP}."
)
@click.option("--by", "actor", default=None, help="Who wrote --summary [person:$USER].")
@pass_settings
def compact(
    settings: Settings,
    agent: str,
    through: int | None,
    summary: str | None,
    model: str | None,
    actor: str | None,
) -> None:
    """Replace AGENT's model context up to a version with a summary (ContextCompacted).

    Give the summary (--summary) or a model to write it (--model). Only what the model
    sees changes: every stored event stays as it was. A cut never separates the model's
    tool calls from their results: such a --through is refused, naming the nearest safe
    versions, and the default stops before calls that have no result yet.
    """
    if (summary is None) == (model is None):
        raise click.UsageError("give --summary TEXT or --model SPEC (one of them)")
    if model is not None and actor is not None:
        raise click.UsageError("--by names who wrote --summary; a model is recorded as itself")
    spec = checked_model(model)
    with settings.store() as store:
        agent_id = resolve(store.log, store.views, agent)
        cut = safe_cut(store.log, require_agent(store.log.get(agent_id)), through)
        if spec is not None:
            summarizer = model_for(spec)
            covered = compact_with_model(store.log, agent_id, summarizer, cut.through)
            who = f"model:{summarizer.name}"
        else:
            who = actor or f"person:{getpass.getuser()}"
            covered = store.log.compact(
                agent_id, summary or "", through=cut.through, summarizer=who
            )
    why = ""
    if (held := cut.held_back_by) is not None:
        why = f"; stopped before v{covered + 1}: tool call {held.call_id!r} has no result yet"
    click.echo(f"compacted {agent_id} through v{covered} (by {who}){why}")


def echo_history(log: AgentLog, agent_id: UUID, as_json: bool) -> None:
    """``log --lineage``: the ancestors' events up to each fork, then the agent's own."""
    checks = {link.agent_id: link for link in ancestry(log, agent_id)}
    for segment in history(log, agent_id):
        events = log.events_of(segment.agent_id, upto=segment.last)
        if not as_json:
            link = checks.get(segment.agent_id)
            click.echo(_header(segment.agent_id, segment.last, link.name if link else "", link))
        for event in events:
            body = render.event_json(event)
            click.echo(render.dumps_line(body) if as_json else render.event_line(event))


def _header(agent_id: UUID, last: int | None, name: str, link: Any) -> str:
    upto = "" if last is None else f", v1..v{last} (forked there)"
    came = ""
    if link is not None and link.lineage is not None:
        came = f", from {link.lineage.parent_id} v{link.lineage.parent_version} [{link.check}]"
    return f"== agent {agent_id} {name!r}{upto}{came}"


def _cell(events: list[Any], i: int) -> str:
    if i >= len(events):
        return ""
    event = events[i]
    short = render.short_payload(event, 60, hidden=frozenset({"inherited"}))
    return (
        f"{str(event.originator_id)[:8]} v{event.originator_version} "
        f"{type(event).__name__} {event.actor} {short}"
    )
