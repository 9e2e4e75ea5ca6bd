"""``agentlog threads``: the LangGraph threads ``AgentLogSaver`` stored."""

from __future__ import annotations

import click
from rich.markup import escape
from rich.table import Table

from agentlog.adapters.graph_threads import graph_threads
from agentlog.cli import render
from agentlog.cli.settings import Settings, pass_settings


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_settings
def threads(settings: Settings, as_json: bool) -> None:
    """List the LangGraph threads in the store (name one as thread:THREAD_ID in log,
    show, verify, export)."""
    with settings.store(catch_up=False) as store:
        rows = graph_threads(store.log)
    if as_json:
        click.echo(render.dumps([vars(row) for row in rows]))
        return
    table = Table("THREAD", "ID", "VERSION", "LAST EVENT", "STATUS", box=None)
    for row in rows:
        status = "deleted" if row.deleted else "active"
        cells = (row.thread_id, str(row.aggregate_id), str(row.version), row.last_event, status)
        table.add_row(*map(escape, cells))
    if rows:
        render.print_table(table)
