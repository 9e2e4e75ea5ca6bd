"""``agentlog export`` and ``agentlog import``: agents in and out of a store.

Formats: ``agentlog`` (lossless, docs/export-import.md) and ``openai`` (chat messages).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TextIO

import click
from rich.console import Console
from rich.progress import Progress

from agentlog.adapters import openai_chat
from agentlog.adapters.agent_ids import resolve
from agentlog.adapters.chain_walk import first_break
from agentlog.adapters.event_export import export_events
from agentlog.adapters.event_import import import_events
from agentlog.cli.settings import Settings, pass_settings
from agentlog.cli.verify import warn_if_broken

FORMATS = ("agentlog", "openai")


@click.command(name="export")
@click.argument("agents", nargs=-1)
@click.option("--all", "all_agents", is_flag=True, help="Every agent in the store.")
@click.option(
    "-o",
    "--output",
    default="-",
    show_default=True,
    metavar="FILE|-",
    help="Where to write (- is standard output).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="agentlog",
    show_default=True,
    help="agentlog: every stored event, lossless (JSON Lines); "
    "openai: one agent's chat messages (JSON).",
)
@click.option(
    "--raw",
    is_flag=True,
    help="openai: every message, not what the model sees after a compaction.",
)
@pass_settings
def export(
    settings: Settings,
    agents: tuple[str, ...],
    all_agents: bool,
    output: str,
    fmt: str,
    raw: bool,
) -> None:
    """Write AGENT... (ids or unique prefixes), or --all, to a file.

    The agentlog format is lossless and versioned: importing it into another store and
    exporting again gives the same bytes. A file is written whole or not at all.
    """
    if bool(agents) == all_agents:
        raise click.UsageError("name the agents to export, or give --all")
    if fmt == "openai" and len(agents) != 1:
        raise click.UsageError("--format openai exports one agent: name it")
    if raw and fmt != "openai":
        raise click.UsageError("--raw goes with --format openai")
    with settings.store(catch_up=False) as store:
        ids = [resolve(store.log, store.views, ref) for ref in agents] or None
        with _output(output) as out, _progress("export", None) as advance:
            if fmt == "openai":
                assert ids is not None
                openai_chat.export_messages(store.log, ids[0], out, raw=raw)
                warn_if_broken(first_break(store.log, ids[0]))  # agentlog's refuses instead
            else:
                export_events(store.log, out, ids, advance)


@click.command(name="import")
@click.argument("file", type=click.File("rb"))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="agentlog",
    show_default=True,
    help="agentlog: a file `agentlog export` wrote; openai: chat messages "
    "(a JSON list, JSON Lines, or an object with a messages list).",
)
@click.option("--name", default=None, help="openai: the agent's name (default: the file's).")
@pass_settings
def import_(settings: Settings, file: IO[bytes], fmt: str, name: str | None) -> None:
    """Import FILE (- is standard input): all of it in one transaction, or nothing.

    Agents the store already holds are refused unless the file holds exactly their
    events (then they are left as they are); histories are never merged.
    """
    given = str(getattr(file, "name", "-"))
    source = "stdin" if given in ("-", "<stdin>") else Path(given).name
    if name is not None and fmt != "openai":
        raise click.UsageError("--name goes with --format openai")
    with settings.store(catch_up=False, create=True) as store:
        with _progress("import", _size(file)) as advance:
            if fmt == "openai":
                agent_id = openai_chat.import_messages(
                    store.log, file, source=source, name=name or Path(source).stem
                )
                message = f"imported agent {agent_id}"
            else:
                report = import_events(store.log, file, advance)
                message = f"imported {report.events} events of {report.agents} agents" + (
                    f"; {report.unchanged} already stored, unchanged" if report.unchanged else ""
                )
        store.views.catch_up_quietly()
    click.echo(message)


@contextmanager
def _output(target: str) -> Iterator[TextIO]:
    """Standard output, or a file that appears only once it is complete."""
    if target == "-":
        yield sys.stdout
        return
    path = Path(target)
    partial = path.with_name(f".{path.name}.partial")
    try:
        with partial.open("w", encoding="utf-8", newline="\n") as out:
            yield out
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


@contextmanager
def _progress(what: str, total: int | None) -> Iterator[Callable[[int], None]]:
    """A progress bar on standard error, when that is a terminal."""
    console = Console(stderr=True)
    with Progress(console=console, disable=not console.is_terminal, transient=True) as bar:
        task = bar.add_task(what, total=total)
        yield lambda done: bar.update(task, completed=done)


def _size(file: IO[bytes]) -> int | None:
    try:
        return os.fstat(file.fileno()).st_size or None
    except (OSError, ValueError):
        return None
