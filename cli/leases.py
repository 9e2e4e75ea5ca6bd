"""``agentlog workers``: which worker holds which agent, until when."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import click
from rich.table import Table
from sqlalchemy import Engine, inspect

from agentlog.adapters.lease_queries import Holding, holdings
from agentlog.adapters.leases import LEASES, SWEEP_GRACE, VIEWS_LEASE, Leases
from agentlog.adapters.liveness import worker_gone
from agentlog.cli import render
from agentlog.cli.settings import Settings, pass_settings


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option(
    "--sweep",
    is_flag=True,
    help="First delete the leases expired for longer than --grace (rows of killed workers).",
)
@click.option(
    "--grace",
    type=click.FloatRange(min=0),
    default=SWEEP_GRACE,
    show_default=True,
    help="With --sweep: seconds a lease must have been expired to be deleted.",
)
@pass_settings
def workers(settings: Settings, as_json: bool, sweep: bool, grace: float) -> None:
    """Which worker holds which agent (its lease), since when and for how much longer.

    One line per agent a worker is advancing now: the holder (host:pid#n/slot), when it
    took the agent, and the seconds left on its lease, by the database's clock. A lease
    is "expired" once its time is up and "gone" when its worker ran on this host and its
    process is gone: either way, the next worker takes the agent over. The line whose
    agent is "views" is the worker that keeps the views caught up.

    A killed worker's leases stay listed until a sweep deletes them, once expired for
    longer than a grace period: workers sweep when they start and every few minutes;
    --sweep does it now (saying on stderr how many it deleted). A live lease is never
    deleted.
    """
    source = click.get_current_context().get_parameter_source("grace")
    if not sweep and source is not click.core.ParameterSource.DEFAULT:
        raise click.UsageError("--grace goes with --sweep")
    with settings.store(catch_up=False) as store:
        engine = store.views.engine
        has_table = inspect(engine).has_table(LEASES.name)
        if sweep:
            swept = Leases(engine).sweep(grace) if has_table else 0
            click.echo(f"swept {swept} lease(s) expired more than {grace:g}s ago", err=True)
        found = holdings_in(engine) if has_table else []
    rows = [_json(h) for h in found]
    if as_json:
        click.echo(render.dumps(rows))
    elif rows:
        render.print_table(_table(rows))
    else:
        click.echo("no agent is held by a worker", err=True)


def holdings_in(engine: Engine) -> list[Holding]:
    """Every lease in the store's database."""
    with engine.connect() as conn:
        return holdings(conn, engine, worker_gone)


def _json(holding: Holding) -> dict[str, Any]:
    state = "gone" if holding.gone else "expired" if holding.expires_in < 0 else "held"
    return {
        "agent_id": "views" if holding.agent_id == VIEWS_LEASE else holding.agent_id,
        "holder": holding.holder,
        "since": render.iso(datetime.fromtimestamp(holding.taken_at, UTC)),
        "expires_in": round(holding.expires_in, 1),
        "state": state,
    }


def _table(rows: list[dict[str, Any]]) -> Table:
    table = Table("AGENT", "HOLDER", "SINCE", "EXPIRES IN", "STATE", box=None)
    for row in rows:
        left = f"{row['expires_in']:.1f}s"
        table.add_row(str(row["agent_id"]), row["holder"], row["since"], left, row["state"])
    return table
