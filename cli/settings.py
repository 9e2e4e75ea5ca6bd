"""Global options, and opening the store they name."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from agentlog.adapters.storage import open_log
from agentlog.adapters.views import Store, open_store
from agentlog.adapters.worker import DEFAULT_SANDBOX, WORKER_CACHE
from agentlog.cli.app_loading import App
from agentlog.cli.errors import errors_as_messages
from agentlog.domain import AgentLog


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
    def log(self, *, create: bool = False) -> Iterator[AgentLog]:
        """The agent log alone (no views). Only commands that may make a new store
        (init, new, import, demo, worker) pass ``create``; the others need one."""
        with errors_as_messages(self.db):
            log = open_log(
                self.db, cipher_key=self.cipher_key, create=create, log_class=self.app.log_class
            )
            try:
                yield log
            finally:
                log.close()

    @contextmanager
    def store(
        self,
        *,
        catch_up: bool = True,
        embedded: bool = True,
        create: bool = False,
        force: bool = False,
        shards: int | None = None,
        group_commit: bool = False,
    ) -> Iterator[Store]:
        """The agent log with its views; embedded, they follow every save. Commands that
        run agents pass False: views catch up between steps, never inside them, and the
        agents they step are kept in memory between steps (``WORKER_CACHE``).

        ``create``: as for :meth:`log`; ``force``: also in a database with other tables;
        ``shards``: a new store's shards (an existing store must have that many).
        ``group_commit``: saves from several threads at once share transactions (a worker
        advancing several agents at once).
        """
        with errors_as_messages(self.db):
            store = open_store(
                self.db,
                cipher_key=self.cipher_key,
                catch_up=catch_up,
                embedded=embedded,
                aggregate_cache=None if embedded else WORKER_CACHE,
                create=create,
                force=force,
                log_class=self.app.log_class,
                views=self.app.all_views,
                shards=shards,
                group_commit=group_commit,
            )
            try:
                yield store
            finally:
                store.close()


pass_settings = click.make_pass_decorator(Settings)
