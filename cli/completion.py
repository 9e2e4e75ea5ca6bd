"""Shell completion (click's): agent ids from the state view, and view names.

Completing never creates a store: it reads the state view of a store that exists, and
offers nothing otherwise (no database, no views yet, a server that does not answer).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

import click
from click.shell_completion import CompletionItem
from sqlalchemy import inspect, select

from agentlog.adapters.storage import DEFAULT_URL, engine_for
from agentlog.projections import DEFAULT_VIEWS, AgentStates, catalog

MAX_ITEMS = 200


def agent_ids(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """Ids of the agents that start with what was typed, each with its name as help."""
    url = ctx.find_root().params.get("db") or DEFAULT_URL
    try:
        return _agent_items(url, incomplete.lower())
    except Exception:  # a completion that fails offers nothing, never a traceback
        return []


def view_names(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """The names of the views that start with what was typed."""
    return [CompletionItem(v.name) for v in DEFAULT_VIEWS if v.name.startswith(incomplete)]


def _agent_items(url: str, prefix: str) -> list[CompletionItem]:
    if not _stored(url):
        return []
    engine = engine_for(url)
    try:
        with engine.connect() as conn:
            if not inspect(conn).has_table(catalog.builds.name):
                return []
            build = catalog.find(conn, AgentStates.name, catalog.ACTIVE)
            if build is None:
                return []
            rows = AgentStates(build.build).rows
            query = select(rows.c.agent_id, rows.c.name).where(rows.c.agent_id.startswith(prefix))
            found = conn.execute(query.order_by(rows.c.agent_id).limit(MAX_ITEMS))
            return [CompletionItem(r.agent_id, help=r.name) for r in found]
    finally:
        engine.dispose()


def _stored(url: str) -> bool:
    """Whether the URL names a store that may exist (a SQLite file that is there)."""
    scheme = urlsplit(url).scheme
    if scheme == "memory":
        return False
    if scheme != "sqlite":
        return True
    rest = url.split("://", 1)[1].split("?", 1)[0]
    return Path(unquote(rest[1:])).is_file()
