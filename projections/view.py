"""What a view is: tables of its own, built from events, one batch per transaction."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

from sqlalchemy import Connection, MetaData, Table

from agentlog.domain import Aggregate
from agentlog.projections.seal import PLAIN, Seal

Positioned = tuple[int, Aggregate.Event]
"""An event with its position (notification id) in the application's log."""


def clean(text: str | None) -> str | None:
    """Text a view column can hold on every database (PostgreSQL TEXT refuses NUL)."""
    return None if text is None else text.replace("\x00", "\ufffd")


class View(ABC):
    """A read model that follows the agent log.

    Subclasses declare ``name`` and ``version`` (bump it when the tables or the handling
    change: the view is then rebuilt into fresh tables while the old ones keep serving),
    define their tables for a build, and ``process`` a batch of events. ``process`` runs
    in the same transaction that moves the view's position, so a batch is applied
    exactly once or not at all.

    A *staged* view (``staged = True``) keeps its work in memory instead: ``process``
    only reads, and ``flush`` writes what it kept, in the transaction that moves the
    position to the last event processed. The follower flushes when ``wants_flush``
    says so and at the end of every catch-up, and calls ``reset`` whenever the memory
    may no longer match the tables (a rollback, another follower moved the position).

    ``seal`` encrypts the sensitive columns with the log's cipher (or leaves them plain
    without one): a view seals what it writes of goals, messages, arguments and results.
    """

    name: ClassVar[str]
    version: ClassVar[int]
    staged: ClassVar[bool] = False

    def __init__(self, build: int, seal: Seal = PLAIN) -> None:
        self.build = build
        self.seal = seal
        self.metadata = MetaData()
        self.define(self.metadata)

    def table_name(self, part: str = "") -> str:
        """The name of one of this build's tables."""
        return f"agentlog_{self.name}{'_' + part if part else ''}_b{self.build}"

    @abstractmethod
    def define(self, metadata: MetaData) -> None:
        """Define this build's tables on ``metadata`` (use :meth:`table_name`)."""

    @abstractmethod
    def process(self, conn: Connection, events: Sequence[Positioned]) -> None:
        """Apply a batch of events, in order, inside the caller's transaction."""

    def skipped(self) -> int:
        """Events of the last batch processed that the view skipped because it does not
        keep their aggregate (counted by ``agentlog projections status``)."""
        return 0

    @classmethod
    def handles(cls, event_class: type[Any]) -> bool:
        """Whether events of this class can change the view. The follower decodes only
        the events some view it follows handles (positions still move past the rest);
        override it to name the classes a view reads, so that others are not decoded."""
        return True

    def reset(self, position: int) -> None:
        """Forget what is kept in memory: the tables are as of ``position`` (staged)."""
        return  # a view that writes as it processes keeps nothing

    def share_memory_with(self, other: View) -> bool:
        """Read ``other``'s memory instead of keeping the same of its own (both start
        empty at the same position, in one pass); False if it cannot (staged)."""
        return False

    def wants_flush(self) -> bool:
        """Enough is kept in memory to write it now (staged views)."""
        return True

    def flush(self, conn: Connection) -> None:
        """Write what ``process`` kept in memory, in the caller's transaction (staged)."""
        return  # a view that writes as it processes has nothing left to write

    @property
    def tables(self) -> list[Table]:
        """This build's tables, in creation order."""
        return list(self.metadata.sorted_tables)
