"""``agentlog verify``, and the warning that reads of history print when a chain breaks."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import Any

import click
from rich.console import Console
from rich.progress import Progress

from agentlog.adapters.agent_ids import resolve
from agentlog.adapters.chain_walk import ChainBreak
from agentlog.adapters.verify import AgentReport, agents_to_verify, verify_agent
from agentlog.adapters.view_heads import StateViewHeads
from agentlog.cli.settings import Settings, pass_settings
from agentlog.domain.shards import log_shards


@click.command()
@click.argument("agent", required=False)
@click.option("--all", "all_agents", is_flag=True, help="Verify every agent (the default).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@pass_settings
def verify(settings: Settings, agent: str | None, all_agents: bool, as_json: bool) -> None:
    """Check hash chains and snapshots; name each agent's first break.

    Recomputes the chain of AGENT (default: of every agent) from its stored rows and
    names the version and event of its first break: an edited byte, a deleted,
    reordered or missing event, a snapshot or state-view head that does not match.
    Exit code 0 when every chain holds, 1 when any breaks.
    """
    if agent is not None and all_agents:
        raise click.UsageError("give AGENT or --all, not both")
    with settings.store(catch_up=False) as store:
        heads = StateViewHeads(store.views)
        if agent is not None:  # checked before printing: an unknown agent is an error
            found = verify_agent(store.log, resolve(store.log, store.views, agent), heads)
            broken = (_print_json if as_json else _print_text)(iter([found]))
        else:
            ids = agents_to_verify(store.log, heads.agent_ids())
            shards = log_shards(store.log.recorder)
            with _progress(sum(r.max_notification_id() or 0 for r in shards)) as advance:
                reports = (verify_agent(store.log, i, heads, advance) for i in ids)
                broken = (_print_json if as_json else _print_text)(reports)
    if broken:
        raise SystemExit(1)


def warn_if_broken(found: ChainBreak | None) -> None:
    """One line on stderr when what a command shows fails its hash chain."""
    if found is not None:
        click.echo(
            f"warning: agent {found.agent_id} fails its hash chain at version {found.version} "
            f"({found.event}): run `agentlog verify {found.agent_id}`",
            err=True,
        )


def _print_text(reports: Iterator[AgentReport]) -> int:
    agents = events = snapshots = broken = 0
    for report in reports:
        agents, events, snapshots = agents + 1, events + report.events, snapshots + report.snapshots
        if report.first_break is not None:
            broken += 1
            click.echo(f"BROKEN {report.first_break}")
    counts = f"{agents} agent(s), {events} event(s), {snapshots} snapshot(s) checked"
    click.echo(f"FAILED: {broken} of {counts}" if broken else f"OK: {counts}")
    return broken


def _print_json(reports: Iterator[AgentReport]) -> int:
    """One JSON document, written as it goes (the agents' list can be long)."""
    agents = events = snapshots = broken = 0
    click.echo('{\n  "agents": [', nl=False)
    for report in reports:
        click.echo(("," if agents else "") + "\n    " + json.dumps(_report_json(report)), nl=False)
        agents, events, snapshots = agents + 1, events + report.events, snapshots + report.snapshots
        broken += not report.ok
    totals = {
        "ok": not broken,
        "agents_checked": agents,
        "agents_broken": broken,
        "events": events,
        "snapshots": snapshots,
    }
    click.echo("\n  ],\n" + json.dumps(totals, indent=2)[2:])
    return broken


def _report_json(report: AgentReport) -> dict[str, Any]:
    found = report.first_break
    return {
        "agent_id": str(report.agent_id),
        "ok": report.ok,
        "events": report.events,
        "snapshots": report.snapshots,
        "break": None
        if found is None
        else {
            "version": found.version,
            "event": found.event,
            "topic": found.topic,
            "reason": found.reason,
        },
    }


class _progress:  # noqa: N801 - used like a function: `with _progress(total) as advance`
    """A progress bar in events on stderr, only when stderr is a terminal."""

    def __init__(self, total: int) -> None:
        console = Console(stderr=True)
        self.bar = Progress(console=console, transient=True, disable=not sys.stderr.isatty())
        self.task = self.bar.add_task("verify", total=total)

    def __enter__(self) -> Any:
        self.bar.__enter__()
        return self._advance

    def __exit__(self, *exc: object) -> None:
        self.bar.__exit__(None, None, None)

    def _advance(self, rows: int) -> None:
        self.bar.advance(self.task, rows)
