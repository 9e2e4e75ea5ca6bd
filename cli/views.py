"""``agentlog audit`` and ``agentlog projections ...``: reading and running the views."""

from __future__ import annotations

import sys
import threading
from datetime import UTC, datetime
from functools import partial
from typing import Any
from uuid import UUID

import click
from rich.progress import Progress, TaskID

from agentlog.adapters.agent_ids import resolve
from agentlog.adapters.chain_walk import first_break
from agentlog.adapters.liveness import worker_gone, worker_id
from agentlog.adapters.outages import Outage, is_outage
from agentlog.adapters.stopping import StopOnSignals
from agentlog.adapters.views import Store
from agentlog.cli import audit_render, render
from agentlog.cli.catch_up import no_catch_up_option, reading
from agentlog.cli.completion import agent_ids, view_names
from agentlog.cli.settings import Settings, pass_settings
from agentlog.cli.verify import warn_if_broken
from agentlog.domain import Aggregate, EffectClass, UnknownAgentError
from agentlog.projections import ViewFailedError, queries
from agentlog.projections.audit_rows import DECISIONS, OUTCOMES


class IsoTime(click.ParamType[datetime, Any]):
    """An ISO 8601 date or time (``2026-11-29``, ``2026-11-29T14:00``, ``...Z``,
    ``...+01:00``); without a zone it is UTC, as the log's times are."""

    name = "ISO-TIME"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            return datetime.fromisoformat(str(value))
        except ValueError:
            self.fail(f"{value!r} is not an ISO date or time (e.g. 2026-11-29T14:00Z)", param, ctx)


@click.command()
@click.option(
    "--agent", help="Only this agent's calls (id or unique prefix).", shell_complete=agent_ids
)
@click.option("--tool", help="Only calls of this tool.")
@click.option("--actor", help="Only calls decided by this person (or 'policy').")
@click.option("--decision", type=click.Choice(DECISIONS), help="Only calls decided so.")
@click.option(
    "--effect", type=click.Choice([e.value for e in EffectClass]), help="Only this effect class."
)
@click.option("--outcome", type=click.Choice(OUTCOMES), help="Only calls that ended so.")
@click.option("--since", type=IsoTime(), help="Only calls made at or after this time.")
@click.option("--until", type=IsoTime(), help="Only calls made before this time.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (arguments whole).")
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV (arguments whole, as JSON).")
@no_catch_up_option
@pass_settings
def audit(
    settings: Settings,
    agent: str | None,
    tool: str | None,
    actor: str | None,
    decision: str | None,
    effect: str | None,
    outcome: str | None,
    since: datetime | None,
    until: datetime | None,
    as_json: bool,
    as_csv: bool,
    no_catch_up: bool,
) -> None:
    """Every tool call: its arguments, effect class, who or what policy decided, and
    what came of it.

    Decisions: auto (allowed by policy), approved or denied by a person (or denied by
    policy), refused (the runtime would not record it), waiting (for a person).
    Outcomes: pending, running, succeeded, failed, unknown, refused (its arguments
    failed their hashes), not_run (denied). The table cuts the arguments short.
    Warns on stderr about each agent shown whose events fail their hash chain.
    """
    if as_json and as_csv:
        raise click.UsageError("give --json or --csv, not both")
    with reading(settings, ["audit"], no_catch_up) as store:
        agent_id = str(resolve(store.log, store.views, agent)) if agent else None
        where = queries.AuditFilter(
            agent_id, tool, actor, decision, effect, outcome, _utc(since), _utc(until)
        )
        with store.views.engine.connect() as conn:
            table = store.views.table(conn, "audit")
            rows = queries.audit(conn, table, where, store.views.seal)
        shown: dict[str, int] = {}  # the agents shown, up to the last event of a call shown
        for row in rows:
            shown[row["agent_id"]] = max(shown.get(row["agent_id"], 0), row["last_version"])
        for shown_id, upto in shown.items():
            warn_if_broken(first_break(store.log, UUID(shown_id), upto=upto))
    if as_json:
        click.echo(render.dumps([audit_render.audit_call_json(r) for r in rows]))
    elif as_csv:
        click.echo(audit_render.audit_csv(rows), nl=False)
    elif rows:
        render.print_table(audit_render.audit_calls_table(rows))


@click.group()
def projections() -> None:
    """Status, rebuild and followers of the views (state, audit, transcript, runnable)."""


@projections.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_settings
def status(settings: Settings, as_json: bool) -> None:
    """Position, lag and version of each view."""
    with settings.store(catch_up=False) as store:
        report = store.views.status()
    rows = [render.view_status(s, partial(worker_gone, claimed_at=_UNKNOWN_START)) for s in report]
    if as_json:
        click.echo(render.dumps(rows))
        return
    render.print_table(render.view_status_table(rows))
    unknown = next((s.unknown_topic for s in report if s.unknown_topic), None)
    if unknown is not None:
        click.echo(
            f"note: events of unknown topics (such as {unknown!r}) were skipped: load the "
            "module that defines them with --app module:Class, then rebuild the views",
            err=True,
        )


@projections.command()
@click.argument("names", nargs=-1, shell_complete=view_names)
@click.option("--all", "all_views", is_flag=True, help="Rebuild every view.")
@click.option(
    "--downgrade",
    is_flag=True,
    help="Also replace views a newer agentlog built (after going back to this version).",
)
@pass_settings
def rebuild(settings: Settings, names: tuple[str, ...], all_views: bool, downgrade: bool) -> None:
    """Rebuild views from position 0 into fresh tables, then swap them in.

    The old tables keep serving readers until the new ones have caught up. SIGINT or
    SIGTERM abandons the new builds (their tables are dropped; status says so) and
    exits with 130 or 143.
    """
    if bool(names) == all_views:
        raise click.UsageError("name the views to rebuild, or give --all")
    stop = threading.Event()
    signals = StopOnSignals(stop, stopping="abandoning the rebuild")
    with settings.store(catch_up=False) as store, signals as stopping:
        chosen = names or tuple(store.views.views)
        for name in chosen:
            store.views.view_class(name)  # unknown names fail before any work
        with Progress() as bar:  # all of them in one pass over the log
            task = bar.add_task(f"rebuild {', '.join(chosen)}", total=None)
            try:
                builds = store.views.rebuild_many(
                    chosen, partial(_advance, bar, task, stop), worker_id(), downgrade=downgrade
                )
            except _InterruptedError:
                bar.stop()
                click.echo(f"rebuild interrupted: abandoned {', '.join(chosen)}", err=True)
                sys.exit(stopping.exit_code or 130)
            done = max(build.position for build in builds)
            bar.update(task, completed=done, total=max(done, 1))
    click.echo(f"rebuilt: {', '.join(chosen)}")


_UNKNOWN_START = datetime(9999, 1, 1, tzinfo=UTC)
"""Builds record no start time: the owner is gone only if its pid is (reuse unknown)."""


class _InterruptedError(Exception):
    """A stop signal arrived during a rebuild."""


def _advance(bar: Progress, task: TaskID, stop: threading.Event, done: int, total: int) -> None:
    if stop.is_set():
        raise _InterruptedError
    bar.update(task, completed=done, total=total)


@projections.command()
@click.argument("names", nargs=-1, shell_complete=view_names)
@click.option(
    "--poll",
    type=click.FloatRange(min=0.01),
    default=1.0,
    show_default=True,
    help="Seconds between looks at the log when idle.",
)
@click.option("--once", is_flag=True, help="Catch up once and exit.")
@pass_settings
def run(settings: Settings, names: tuple[str, ...], poll: float, once: bool) -> None:
    """Follow the log: keep the named views (default: all) up to date, as a process.

    The database going away is waited out (one line when it goes, one when it is back);
    SIGINT or SIGTERM stops it after the batch under way (exit 130 or 143).
    """
    stop = threading.Event()
    signals = StopOnSignals(stop, stopping="stopping after the batch under way")
    with settings.store(catch_up=False) as store, signals as stopping:
        for name in names:
            store.views.view_class(name)
        wait, outage = store.waiter(poll), Outage(partial(click.echo, err=True), stop)
        reported: set[str] = set()
        while not stop.is_set():
            try:  # a stopped view is reported once; the others keep being followed
                store.views.catch_up(names)
                outage.over()
            except ViewFailedError as e:
                if str(e) not in reported:
                    reported.add(str(e))
                    click.echo(render.printable(f"Error: {e}"), err=True)
                if once:
                    raise SystemExit(1) from None
            except Exception as e:
                if once or not is_outage(e):
                    raise
                outage.wait(e)
                continue
            if once:
                return
            wait()
    if stopping.exit_code is not None:
        click.echo("projections run stopped", err=True)
        sys.exit(stopping.exit_code)


def aggregate_at(store: Store, agent_id: UUID, version: int | None) -> Aggregate:
    """An agent as the state view has it, or replayed to ``version``; an aggregate the
    view does not keep (one of the user's own), replayed from the log."""
    if version is not None:
        return store.log.get(agent_id, version=version)
    try:
        with store.views.engine.connect() as conn:
            table = store.views.table(conn, "state")
            return queries.aggregate_from_state(conn, table, agent_id, store.views.seal)
    except UnknownAgentError:
        return store.log.get(agent_id)


def _utc(moment: datetime | None) -> datetime | None:
    """Times without a zone are UTC, as the log's are."""
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
