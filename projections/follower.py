"""Following the log: each view build reads notifications after its position and
applies them, a batch per transaction, moving its position in that same transaction.

Several followers of one build (an embedded one in each CLI process, a projection
process) are safe together: a batch is applied only by the follower whose
compare-and-set of the position succeeds; the others re-read the position and go on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import cast

from eventsourcing.persistence import Notification
from sqlalchemy import Engine, inspect
from sqlalchemy.exc import SQLAlchemyError

from agentlog.domain import AgentError, AgentLog, Aggregate
from agentlog.projections import catalog
from agentlog.projections.catalog import ACTIVE, BUILDING, DROPPED, RETIRED, Build
from agentlog.projections.errors import ViewFailedError
from agentlog.projections.view import Positioned, View

log = logging.getLogger(__name__)
Progress = Callable[[int, int], None]


class _PositionMovedError(Exception):
    """Another follower applied this batch first."""


class Follower:
    """Keeps one build of one view up to date with the log."""

    def __init__(self, app: AgentLog, engine: Engine, view: View, batch_size: int) -> None:
        self.app, self.engine, self.view, self.batch_size = app, engine, view, batch_size

    def position(self) -> int:
        """Where the build stands now (the last notification id it applied)."""
        with self.engine.connect() as conn:
            build = next(
                b for b in catalog.builds_of(conn, self.view.name) if b.build == self.view.build
            )
        return build.position

    def catch_up(self, progress: Progress | None = None) -> int:
        """Apply everything recorded so far; return the new position."""
        position = self.position()
        while notifications := self.app.recorder.select_notifications(
            position + 1, self.batch_size
        ):
            events = self._decode(position, notifications)
            try:
                position = self._apply(position, events)
            except _PositionMovedError:
                position = self.position()
            if progress:
                progress(position, self.app.recorder.max_notification_id() or position)
        return position

    def _decode(self, position: int, notifications: Sequence[Notification]) -> list[Positioned]:
        decode = self.app.mapper.to_domain_event
        try:
            return [(n.id, cast(Aggregate.Event, decode(n))) for n in notifications]
        except AgentError as e:
            raise self._failed(position, e) from e

    def _apply(self, position: int, events: list[Positioned]) -> int:
        last = events[-1][0]
        try:
            with self.engine.begin() as conn:
                if not catalog.advance(conn, self.view.build, position, last):
                    raise _PositionMovedError
                self.view.process(conn, events)
        except _PositionMovedError:
            raise
        except Exception as e:
            raise self._failed(position, e) from e
        return last

    def _failed(self, position: int, cause: Exception) -> ViewFailedError:
        error = ViewFailedError(self.view.name, self.view.build, position, cause)
        try:
            with self.engine.begin() as conn:
                catalog.record_error(conn, self.view.build, str(error))
        except SQLAlchemyError:  # pragma: no cover - the database itself is gone
            log.exception("could not record the failure of view %s", self.view.name)
        return error


def create_tables(engine: Engine, view: View) -> None:
    """Create a build's tables (fresh: a build always starts empty)."""
    with engine.begin() as conn:
        view.metadata.create_all(conn)


def drop_build_tables(engine: Engine, view_name: str, build: int) -> None:
    """Drop every table of an old build, whatever version of the code made them."""
    prefix, suffix = f"agentlog_{view_name}", f"_b{build}"
    with engine.begin() as conn:
        names = [
            n
            for n in inspect(conn).get_table_names()
            if n.startswith(prefix) and n.endswith(suffix)
        ]
        for name in names:
            conn.exec_driver_sql(f'DROP TABLE "{name}"')


def swap(engine: Engine, view_name: str, new: Build) -> None:
    """Make a caught-up build the one readers use, and retire the old one.

    The build retired now keeps its tables (a reader may have looked it up a moment
    ago); builds retired at earlier swaps are dropped now.
    """
    with engine.begin() as conn:
        earlier = catalog.retired(conn, view_name)
        old = catalog.find(conn, view_name, ACTIVE)
        if not catalog.activate(conn, new.build):  # compare-and-set on 'building'
            return  # another follower finished this build and swapped it in already
        if old is not None:
            catalog.set_status(conn, old.build, RETIRED)
    for build in earlier:
        drop_build(engine, view_name, build.build)


def drop_build(engine: Engine, view_name: str, build: int) -> None:
    """Drop a build's tables and remember that they are gone."""
    drop_build_tables(engine, view_name, build)
    with engine.begin() as conn:
        catalog.set_status(conn, build, DROPPED)


__all__ = ["ACTIVE", "BUILDING", "Follower", "create_tables", "drop_build_tables", "swap"]
