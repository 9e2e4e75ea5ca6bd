"""Errors about where a log is stored: no store, someone else's database, another engine."""

from __future__ import annotations

from agentlog.domain.errors import AgentError

CREATING_COMMANDS = "`agentlog init` (or new, import, demo, worker)"


class StoreError(AgentError):
    """The store a URL names cannot be used as asked."""

    def __init__(self, url: str, message: str) -> None:
        super().__init__(message)
        self.url = url


class NoStoreError(StoreError):
    """A command that only reads or changes a store found none at the URL."""

    def __init__(self, url: str) -> None:
        super().__init__(url, f"no agentlog store at {url}: create one with {CREATING_COMMANDS}")


class ForeignDatabaseError(StoreError):
    """The database holds other tables than agentlog's: it belongs to another program."""

    def __init__(self, url: str, tables: list[str]) -> None:
        shown = ", ".join(tables[:5]) + (", ..." if len(tables) > 5 else "")
        super().__init__(
            url,
            f"{url} holds other tables than agentlog's ({shown}): not an agentlog store; "
            "`agentlog init --force` adds agentlog's tables beside them",
        )
        self.tables = tables


class NotADatabaseError(StoreError):
    """The file a SQLite URL names is not a SQLite database."""

    def __init__(self, url: str, path: str) -> None:
        super().__init__(url, f"{path} is not a SQLite database (storage URL {url})")
        self.path = path


class EngineMismatchError(StoreError):
    """A store made by one engine was opened with another (two logs in one database)."""

    def __init__(self, url: str, made_by: str, version: str, opened_with: str) -> None:
        fix = "add ?engine=sqlalchemy" if made_by == "sqlalchemy" else "drop ?engine=sqlalchemy"
        super().__init__(
            url,
            f"the store at {url} was made by the {made_by} engine (agentlog {version}); "
            f"it cannot be opened with the {opened_with} engine: {fix}",
        )
        self.made_by = made_by
        self.opened_with = opened_with


class ShardCountMismatchError(StoreError):
    """A store was opened with another number of shards than it was made with."""

    def __init__(self, url: str, made_with: int, opened_with: int) -> None:
        super().__init__(
            url,
            f"the store at {url} has {made_with} shard(s), fixed when it was made; "
            f"it cannot be opened with {opened_with}: drop --shards or give {made_with}",
        )
        self.made_with = made_with
        self.opened_with = opened_with


class MissingExtraError(AgentError):
    """A feature needs an optional dependency that is not installed."""

    def __init__(self, feature: str, extra: str, module: str) -> None:
        super().__init__(
            f"{feature} needs the '{extra}' extra (module {module} is missing): "
            f"pip install 'agentlog[{extra}]'"
        )
        self.feature = feature
        self.extra = extra
        self.module = module


EXTRAS: dict[str, tuple[str, str]] = {
    "Crypto": ("encryption (--cipher-key)", "crypto"),
    "psycopg": ("PostgreSQL", "postgres"),
    "psycopg_pool": ("PostgreSQL", "postgres"),
    "psycopg_binary": ("PostgreSQL", "postgres"),
    "openai": ("an openai: model", "openai"),
    "agents": ("the OpenAI Agents SDK session", "openai-agents"),
}
"""Top-level modules of the optional extras: the feature each serves and its extra."""


def missing_extra(error: ImportError) -> MissingExtraError | None:
    """The :class:`MissingExtraError` an import error means, if it is an extra's module."""
    module = (error.name or "").split(".")[0]
    if module not in EXTRAS:
        return None
    feature, extra = EXTRAS[module]
    return MissingExtraError(feature, extra, module)
