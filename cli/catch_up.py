"""Read commands and views that are behind: catch up (a progress bar on a terminal),
or, with ``--no-catch-up``, read them as they are and say how far behind they are."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.progress import Progress

from agentlog.adapters.views import Store
from agentlog.cli.settings import Settings

F = TypeVar("F", bound=Callable[..., Any])


def no_catch_up_option(command: F) -> F:
    """The ``--no-catch-up`` flag of a command that reads views."""
    return click.option(
        "--no-catch-up",
        "no_catch_up",
        is_flag=True,
        help="Read the views as they are (say how far behind), without catching them up.",
    )(command)


@contextmanager
def reading(settings: Settings, views: Sequence[str], no_catch_up: bool) -> Iterator[Store]:
    """The store, its views caught up (or not, and how far behind said on stderr)."""
    with settings.store(catch_up=False) as store:
        if no_catch_up:
            report = store.views.status()
            behind = max((s.lag or 0 for s in report if s.name in views), default=0)
            if behind:
                click.echo(
                    f"warning: views are {behind} events behind (read as they are)", err=True
                )
        elif (behind := store.views.behind()) > 0:
            # The build furthest behind: a serving one, or one being built (a new
            # version of a view, which swaps in once caught up); in every shard.
            _catch_up(store, behind)
        yield store


def _catch_up(store: Store, behind: int) -> None:
    """Catch every view up; on a terminal, with a progress bar on stderr that goes away."""
    if not sys.stderr.isatty():
        store.views.catch_up_quietly()
        return
    console = Console(stderr=True)
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task(f"views {behind} events behind: catching up", total=None)

        def advance(done: int, head: int) -> None:  # positions; the bar counts from here
            bar.update(task, completed=max(0, behind - (head - done)), total=behind)

        store.views.catch_up_quietly(advance)
