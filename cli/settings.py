"""Global options and the one place where errors become ``Error: ...`` lines."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click
from eventsourcing.domain import EventSourcingError
from sqlalchemy.exc import SQLAlchemyError

from agentlog.adapters.storage import open_log
from agentlog.adapters.views import Store, open_store
from agentlog.adapters.worker import DEFAULT_SANDBOX, WORKER_CACHE
from agentlog.cli.app_loading import App
from agentlog.domain import AgentError, AgentLog


class Settings:
    """What the global options say; the store is opened only when a command needs it."""

    def __init__(
        self,
        db: str,
        cipher_key: str | None,
        sandbox: Path = DEFAULT_SANDBOX,
        app: App | None = None,
    ) -> None:
        self.db = db
        self.cipher_key = cipher_key
        self.sandbox = sandbox
        self.app = app or App()
        """What ``--app`` loaded: the application class and views of the user's own."""

    @contextmanager
    def log(self) -> Iterator[AgentLog]:
        """The agent log alone (no views)."""
        with errors_as_messages():
            log = open_log(self.db, cipher_key=self.cipher_key, log_class=self.app.log_class)
            try:
                yield log
            finally:
                log.close()

    @contextmanager
    def store(self, *, catch_up: bool = True, embedded: bool = True) -> Iterator[Store]:
        """The agent log with its views; embedded, they follow every save. Commands that
        run agents pass False: views catch up between steps, never inside them, and the
        agents they step are kept in memory between steps (``WORKER_CACHE``)."""
        with errors_as_messages():
            store = open_store(
                self.db,
                cipher_key=self.cipher_key,
                catch_up=catch_up,
                embedded=embedded,
                aggregate_cache=None if embedded else WORKER_CACHE,
                log_class=self.app.log_class,
                views=self.app.all_views,
            )
            try:
                yield store
            finally:
                store.close()


@contextmanager
def errors_as_messages() -> Iterator[None]:
    """agentlog and storage errors become one line and exit code 1, never a traceback."""
    try:
        yield
    except AgentError as e:
        raise click.ClickException(str(e)) from None
    except (EventSourcingError, SQLAlchemyError) as e:
        raise click.ClickException(f"storage: {type(e).__name__}: {e}".splitlines()[0]) from None


pass_settings = click.make_pass_decorator(Settings)
