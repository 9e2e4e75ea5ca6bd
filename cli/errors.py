"""The one place where errors become ``Error: ...`` lines (exit code 1), never a traceback.

Errors of the world (files, disks, databases, URLs, keys, bad input, damaged history,
missing extras) are reported in one line that names the file or URL; usage errors stay
click's (exit code 2). Anything else is a bug: one line saying so, and ``--debug`` (or
``AGENTLOG_DEBUG=1``) shows its traceback. Ctrl-C exits with 130, quietly.
"""

from __future__ import annotations

import errno
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import click
from eventsourcing.domain import EventSourcingError
from eventsourcing.persistence import PersistenceError
from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from agentlog.adapters.key_check import displayed
from agentlog.cli.render import printable
from agentlog.domain import AgentError
from agentlog.domain.store_errors import missing_extra

INTERRUPTED = 130
"""Exit code after Ctrl-C (128 + SIGINT), as shells report it."""


class ErrorMappingGroup(click.Group):
    """A click group whose commands' errors become one-line messages (see the module)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """Refuse arguments that are not valid UTF-8 before any command sees them."""
        check_utf8(args)
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; map what it raises (see the module docstring)."""
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.Abort):
            raise  # click's own way out (--help of a subcommand, ctx.exit)
        except click.ClickException as e:
            if type(e) is click.ClickException:  # may quote the log: print it safely
                raise click.ClickException(printable(e.message)) from None
            raise
        except KeyboardInterrupt:
            click.echo("Aborted.", err=True)
            ctx.exit(INTERRUPTED)
        except Exception as e:
            if ctx.params.get("debug"):
                raise
            url = getattr(ctx.obj, "db", None) or ctx.params.get("db") or "the store"
            text = message(e, str(url))
            if text is None:
                text = (
                    f"internal error (a bug in agentlog): {type(e).__name__}: {_first_line(e)}; "
                    "run with --debug for the traceback"
                )
            raise click.ClickException(printable(text)) from None


def check_utf8(args: Sequence[str]) -> None:
    """Raise a one-line error naming the first argument that is not valid UTF-8."""
    for i, arg in enumerate(args):
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:
            shown = repr(arg.encode("utf-8", "surrogateescape"))[2:-1]
            owner = args[i - 1] if i and args[i - 1].startswith("-") else f"argument {shown!r}"
            raise click.ClickException(f"{owner}: not valid UTF-8 ({shown})") from None


@contextmanager
def errors_as_messages(url: str) -> Iterator[None]:
    """Errors of the world (see :func:`message`) become ``ClickException`` lines."""
    try:
        yield
    except click.ClickException:
        raise
    except Exception as e:
        text = message(e, url)
        if text is None:
            raise
        raise click.ClickException(printable(text)) from None


def message(error: BaseException, url: str) -> str | None:
    """The one line for an error of the world, naming the file or URL; None for a bug."""
    shown = displayed(url)
    if _is_psycopg(error):
        return _database_error(error, shown)
    for kinds, describe in _DESCRIPTIONS:
        if isinstance(error, kinds):
            return describe(error, shown)
    return None


def _import_error(error: ImportError, _url: str) -> str | None:
    extra = missing_extra(error)
    return None if extra is None else str(extra)


def _os_error(error: OSError, url: str) -> str:
    where = error.filename if error.filename is not None else url
    if error.errno == errno.ENOSPC:
        return f"no space left on the disk holding {where}"
    reason = error.strerror or _first_line(error)
    return f"{where}: {reason}"


def _database_error(error: BaseException, url: str) -> str:
    cause = getattr(error, "orig", None) or error.__cause__ or error
    text = _first_line(cause)
    lowered = text.lower()
    if "readonly database" in lowered or "read-only" in lowered:
        return (
            f"the store at {url} is read-only: this command writes to it "
            "(ls, show, log, audit and verify only read)"
        )
    if "disk is full" in lowered or "no space left" in lowered:
        return f"no space left on the disk holding {url} ({text})"
    if "file is not a database" in lowered:
        return f"{url} is not a SQLite database"
    if "unable to open database file" in lowered:
        return f"cannot open the database file of {url}"
    return f"database error at {url}: {type(cause).__name__}: {text}"


def _validation_error(error: ValidationError, _url: str) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    return f"invalid {error.title}{' ' + where if where else ''}: {first['msg']}"


def _is_psycopg(error: BaseException) -> bool:
    return type(error).__module__.split(".")[0] == "psycopg"


def _library_error(error: EventSourcingError, url: str) -> str:
    return f"storage at {url}: {type(error).__name__}: {_first_line(error)}"


def _unicode_error(error: UnicodeError, _url: str) -> str:
    return f"text that is not valid UTF-8 ({_first_line(error)})"


_DESCRIPTIONS: list[
    tuple[type[BaseException] | tuple[type[BaseException], ...], Callable[[Any, str], str | None]]
] = [
    (AgentError, lambda error, _url: str(error)),
    (ImportError, _import_error),
    (OSError, _os_error),
    ((sqlite3.Error, PersistenceError, SQLAlchemyError), _database_error),
    (EventSourcingError, _library_error),
    (ValidationError, _validation_error),
    (UnicodeError, _unicode_error),
]
"""Which errors are the world's, in order (a subclass before its base), and their line."""


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__
