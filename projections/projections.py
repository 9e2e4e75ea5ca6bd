"""All views of one agent log: set up, follow, rebuild, report, and read."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, MetaData, Table
from sqlalchemy.exc import SQLAlchemyError

from agentlog.domain import AgentLog
from agentlog.projections import catalog
from agentlog.projections.catalog import ACTIVE, BUILDING, RETIRED, Build
from agentlog.projections.errors import UnknownViewError, ViewFailedError, ViewStoppedError
from agentlog.projections.follower import (
    Follower,
    Progress,
    drop_build,
    swap,
)
from agentlog.projections.view import View

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ViewStatus:
    """Where one view stands: what serves readers, and what is being built."""

    name: str
    version: int
    active: Build | None
    building: Build | None
    head: int

    @property
    def lag(self) -> int | None:
        """Notifications the serving build has not applied yet."""
        return None if self.active is None else self.head - self.active.position


class Projections:
    """The views of an :class:`AgentLog`, kept in one SQL database (``engine``)."""

    def __init__(
        self,
        app: AgentLog,
        engine: Engine,
        views: Sequence[type[View]],
        batch_size: int = 1000,
    ) -> None:
        self.app, self.engine, self.batch_size = app, engine, batch_size
        self.views = {cls.name: cls for cls in views}
        self._tables: dict[str, Table] = {}
        self.setup()

    def setup(self) -> None:
        """Create the catalog; give each view a serving build, and a new build if its
        version changed (the old build keeps serving until the new one caught up)."""
        catalog.metadata.create_all(self.engine)
        for cls in self.views.values():
            with self.engine.begin() as conn:  # the build and its tables, or neither
                active = catalog.find(conn, cls.name, ACTIVE)
                building = catalog.find(conn, cls.name, BUILDING)
                if building is not None and building.version != cls.version:
                    catalog.set_status(conn, building.build, RETIRED)  # of other code: redo
                    building = None
                if active is None:
                    new = catalog.new_build(conn, cls.name, cls.version, ACTIVE)
                elif active.version != cls.version and building is None:
                    new = catalog.new_build(conn, cls.name, cls.version, BUILDING)
                else:
                    continue
                cls(new.build).metadata.create_all(conn)

    def catch_up(self, names: Sequence[str] = (), *, progress: Progress | None = None) -> None:
        """Bring the named views (default: all) up to the head of the log.

        A view whose handler fails stops with :class:`ViewFailedError`; the others still
        catch up, and the first failure is raised at the end.
        """
        failures: list[ViewFailedError] = []
        for name in names or list(self.views):
            try:
                self._catch_up(self.view_class(name), progress)
            except ViewFailedError as e:
                failures.append(e)
        if failures:
            raise failures[0]

    def catch_up_quietly(self) -> None:
        """Embedded mode, after each save: never let a view block the agents' saves."""
        try:
            self.catch_up()
        except ViewFailedError as e:
            log.warning("%s", e)
        except SQLAlchemyError as e:  # the events are saved; the views retry next time
            log.warning("views could not catch up: %s", str(e).splitlines()[0])

    def rebuild(self, name: str, progress: Progress | None = None) -> Build:
        """Build the view from position 0 into fresh tables, then swap it in."""
        cls = self.view_class(name)
        with self.engine.begin() as conn:
            stale = catalog.find(conn, name, BUILDING)
            if stale is not None:
                catalog.set_status(conn, stale.build, RETIRED)
            new = catalog.new_build(conn, name, cls.version, BUILDING)
            cls(new.build).metadata.create_all(conn)
        if stale is not None:  # nobody reads a build that is not serving yet
            drop_build(self.engine, name, stale.build)
        # Only the new build is followed: the serving one may be the stopped one.
        Follower(self.app, self.engine, cls(new.build), self.batch_size).catch_up(progress)
        swap(self.engine, name, new)
        return self._build(name, ACTIVE)

    def status(self) -> list[ViewStatus]:
        """Position, lag and version of every view."""
        head = self.app.recorder.max_notification_id() or 0
        with self.engine.connect() as conn:
            return [
                ViewStatus(
                    name,
                    cls.version,
                    catalog.find(conn, name, ACTIVE),
                    catalog.find(conn, name, BUILDING),
                    head,
                )
                for name, cls in self.views.items()
            ]

    def table(self, conn: Connection, name: str, part: str = "") -> Table:
        """The serving build's table, as it is in the database (reflected).

        Raises :class:`ViewStoppedError` if the build stopped on a failure: a stopped
        view would silently serve stale rows.
        """
        build = self._build(name, ACTIVE)
        if build.error:
            raise ViewStoppedError(name, build.position, build.error)
        table_name = self.view_class(name)(build.build).table_name(part)
        if table_name not in self._tables:  # a build's tables never change: reflect once
            self._tables[table_name] = Table(table_name, MetaData(), autoload_with=conn)
        return self._tables[table_name]

    def view_class(self, name: str) -> type[View]:
        """The view class with that name."""
        try:
            return self.views[name]
        except KeyError:
            raise UnknownViewError(name, sorted(self.views)) from None

    def _catch_up(self, cls: type[View], progress: Progress | None) -> None:
        with self.engine.connect() as conn:
            builds = [
                b for b in catalog.builds_of(conn, cls.name) if b.status in (ACTIVE, BUILDING)
            ]
        # Only builds of this code's version are followed: an older serving build keeps
        # serving as it is (its handler is gone) until the new build swaps in.
        for build in (b for b in builds if b.version == cls.version):
            Follower(self.app, self.engine, cls(build.build), self.batch_size).catch_up(progress)
            if build.status == BUILDING:
                swap(self.engine, cls.name, build)

    def _build(self, name: str, status: str) -> Build:
        with self.engine.connect() as conn:
            build = catalog.find(conn, name, status)
        if build is None:
            raise UnknownViewError(name, sorted(self.views))
        return build
