"""Shell completion (click's): agent ids from the state view, and view names.

Completing never creates a store: it reads the state view of a store that exists, and
offers nothing otherwise (no database, no views yet, a server that does not answer).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple
from urllib.parse import unquote, urlsplit

import click
from click.shell_completion import CompletionItem
from eventsourcing.utils import Environment
from sqlalchemy import Connection, inspect, select

from agentlog.adapters.key_check import checks
from agentlog.adapters.storage import DEFAULT_URL, engine_for
from agentlog.domain import AgentError, CallStage
from agentlog.projections import DEFAULT_VIEWS, AgentStates, catalog, queries
from agentlog.projections.seal import PLAIN, Seal

MAX_ITEMS = 200


def agent_ids(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """Ids of the agents that start with what was typed, each with its name as help."""
    rows = _state_rows(ctx, incomplete.lower())
    return [CompletionItem(row.agent_id, help=row.name) for row in rows]


def waiting_calls(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """The AGENT's calls that wait for a person's permission (approve, deny)."""
    return _calls(ctx, incomplete, CallStage.AWAITING_PERMISSION)


def unknown_calls(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """The AGENT's calls whose outcome is unknown (settle)."""
    return _calls(ctx, incomplete, CallStage.OUTCOME_UNKNOWN)


def _calls(ctx: click.Context, incomplete: str, stage: CallStage) -> list[CompletionItem]:
    """Open calls in ``stage`` of the agent named before (the state view keeps them)."""
    agent = str(ctx.params.get("agent") or "").lower()
    rows = _state_rows(ctx, agent) if agent else []
    if len(rows) != 1 or rows[0].state is None:
        return []  # no agent typed yet, the prefix names several, or no key to read it
    calls = json.loads(rows[0].state).get("calls", {})
    return [
        CompletionItem(call_id, help=call.get("tool"))
        for call_id, call in calls.items()
        if call.get("stage") == stage and call_id.startswith(incomplete)
    ]


def view_names(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """The names of the views that start with what was typed."""
    return [CompletionItem(v.name) for v in DEFAULT_VIEWS if v.name.startswith(incomplete)]


class _StateRow(NamedTuple):
    """What completion reads of an agent: its name and state are None when they are
    encrypted and no key opens them."""

    agent_id: str
    name: str | None
    state: str | None


def _state_rows(ctx: click.Context, prefix: str) -> list[_StateRow]:
    """The state view's rows of the agents whose ids start with ``prefix``; none if the
    store or its views do not exist, or cannot be read."""
    root = ctx.find_root().params
    url = root.get("db") or DEFAULT_URL
    try:
        return _read_state(url, prefix, root.get("cipher_key"))
    except Exception:  # a completion that fails offers nothing, never a traceback
        return []


def _read_state(url: str, prefix: str, key: str | None) -> list[_StateRow]:
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
            table = AgentStates(build.build).rows
            rows = queries.stored_states(conn, table, prefix, MAX_ITEMS)
            seal = _seal(conn, key)
    finally:
        engine.dispose()
    return [_StateRow(i, _opened(seal, name), _opened(seal, state)) for i, name, state in rows]


def _seal(conn: Connection, key: str | None) -> Seal | None:
    """What opens the view's encrypted columns: the key given, or nothing if the store
    is encrypted and no key was given (``--cipher-key``, ``AGENTLOG_CIPHER_KEY``)."""
    if key:
        from eventsourcing.cipher import AESCipher  # the crypto extra: only with a key

        return Seal(AESCipher(Environment(env={"CIPHER_KEY": key})))
    if not inspect(conn).has_table(checks.name):
        return PLAIN
    encrypted = conn.execute(select(checks.c.token).where(checks.c.token.is_not(None))).first()
    return None if encrypted else PLAIN


def _opened(seal: Seal | None, stored: str | None) -> str | None:
    """A column's text, or None if it does not open (encrypted, and no or another key)."""
    try:
        return None if seal is None else seal.open(stored)
    except AgentError:
        return None


def _stored(url: str) -> bool:
    """Whether the URL names a store that may exist (a SQLite file that is there)."""
    scheme = urlsplit(url).scheme
    if scheme == "memory":
        return False
    if scheme != "sqlite":
        return True
    rest = url.split("://", 1)[1].split("?", 1)[0]
    return Path(unquote(rest[1:])).is_file()
