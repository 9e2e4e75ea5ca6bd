"""All views of one agent log: set up, follow, rebuild, report, and read."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, MetaData, Table
from sqlalchemy.exc import SQLAlchemyError

from agentlog.domain import AgentLog
from agentlog.domain.shards import log_shards
from agentlog.projections import catalog
from agentlog.projections.builds import abandon, create_tables, drop_build, swap
from agentlog.projections.catalog import ACTIVE, BUILDING, RETIRED, Build
from agentlog.projections.errors import (
    UnknownViewError,
    ViewFailedError,
    ViewStoppedError,
    ViewTooNewError,
)
from agentlog.projections.follower import Follower, Progress, Stop
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
    abandoned: Build | None = None
    """The view's newest build, when a rebuild gave up on it (interrupted)."""
    skipped: int = 0
    """Events the serving build skipped: of aggregates it does not keep, or of topics
    no class was known for when it followed them."""
    unknown_topic: str | None = None
    """The last topic the serving build skipped because no class was known for it."""
    shards: tuple[tuple[int, int], ...] = ()
    """In a log of several shards: per shard, the serving build's position and the
    shard's head (``active.position`` and ``head`` are shard 0's)."""

    @property
    def lag(self) -> int | None:
        """Notifications the serving build has not applied yet (in every shard)."""
        if self.active is None:
            return None
        if self.shards:
            return sum(head - position for position, head in self.shards)
        return self.head - self.active.position


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
        self._tables: dict[tuple[str, int, str], Table] = {}
        """Reflected tables by view, build and part (the name needs a View made)."""
        self._follower = Follower(app, engine)
        self.seal = self._follower.seal
        """Opens the sensitive columns the views sealed with the log's cipher."""
        self.setup()

    def setup(self) -> None:
        """Create the catalog; give each view a serving build, and a new build if its
        version went up (the old build keeps serving until the new one caught up).

        Builds of a newer version (a newer agentlog, in a rolling upgrade) are left as
        they are: this code reads them as well as it can, and never replaces them.
        """
        catalog.metadata.create_all(self.engine)
        if len(log_shards(self.app.recorder)) > 1:
            catalog.shard_metadata.create_all(self.engine)
        with self.engine.begin() as conn:
            catalog.upgrade(conn)
        for cls in self.views.values():
            with self.engine.begin() as conn:  # the build and its tables, or neither
                active = catalog.find(conn, cls.name, ACTIVE)
                building = catalog.find(conn, cls.name, BUILDING)
                if building is not None and building.version < cls.version:
                    catalog.set_status(conn, building.build, RETIRED)  # of older code: redo
                    building = None
                if active is None:
                    new = catalog.new_build(conn, cls.name, cls.version, ACTIVE)
                    cls(new.build).metadata.create_all(conn)
                elif active.version < cls.version and building is None:
                    new = catalog.new_build(conn, cls.name, cls.version, BUILDING)
                    create_tables(conn, cls(new.build))  # indexed when swapped in

    def catch_up(
        self,
        names: Sequence[str] = (),
        *,
        progress: Progress | None = None,
        stop: Stop | None = None,
    ) -> None:
        """Bring the named views (default: all) up to the head of the log, in one pass.

        A view whose handler fails stops with :class:`ViewFailedError`; the others still
        catch up, and the first failure is raised at the end. ``stop`` is asked after
        each batch: once it says yes, the catch-up ends there with
        :class:`CatchUpStoppedError` (nothing half-written).
        """
        chosen = [self.view_class(name).name for name in dict.fromkeys(names or self.views)]
        with self.engine.connect() as conn:
            found = catalog.builds_of_views(conn, chosen)
        builds = [
            build
            for name in chosen
            for build in found
            # Only builds of this code's version are followed: an older serving build
            # keeps serving as it is (its handler is gone) until the new build swaps in.
            if build.view == name and build.version == self.views[name].version
        ]
        self._follow(builds, progress, stop)

    def catch_up_quietly(
        self, progress: Progress | None = None, *, stop: Stop | None = None
    ) -> None:
        """Embedded mode, after each save: never let a view block the agents' saves.

        A view that fails is reported when it is read (:meth:`table`), not here; a
        catch-up told to ``stop`` raises :class:`CatchUpStoppedError`."""
        try:
            self.catch_up(progress=progress, stop=stop)
        except ViewFailedError as e:
            log.warning("%s", e)
        except SQLAlchemyError as e:  # the events are saved; the views retry next time
            log.warning("views could not catch up: %s", str(e).splitlines()[0])

    def rebuild(self, name: str, progress: Progress | None = None) -> Build:
        """Build the view from position 0 into fresh tables, then swap it in."""
        (build,) = self.rebuild_many([name], progress)
        return build

    def rebuild_many(
        self,
        names: Sequence[str],
        progress: Progress | None = None,
        owner: str | None = None,
        *,
        downgrade: bool = False,
    ) -> list[Build]:
        """Rebuild several views in one pass over the log; each is swapped in once it
        caught up (a view that fails stops alone, and its error is raised at the end).

        Interrupted (``KeyboardInterrupt``, or any exception from ``progress``), the new
        builds not swapped in yet are abandoned: their tables dropped, the catalog says
        so. ``owner`` (host:pid) is recorded with them. A view built by a newer agentlog
        (a newer view version) is rebuilt only with ``downgrade``
        (:class:`ViewTooNewError` otherwise).
        """
        chosen = list(dict.fromkeys(self.view_class(name).name for name in names))
        new = [self._new_build(name, owner or "", downgrade=downgrade) for name in chosen]
        try:  # only the new builds are followed: the serving ones may be the stopped ones
            self._follow(new, progress)
        except ViewFailedError:
            raise  # the failed build stays, with its error, for status to show
        except BaseException:
            self.abandon([b.build for b in new])
            raise
        return [self._build(name, ACTIVE) for name in chosen]

    def abandon(self, builds: Sequence[int]) -> None:
        """Give up on those of these builds that are still being built."""
        with self.engine.connect() as conn:
            found = [b for v in self.views for b in catalog.builds_of(conn, v)]
        for build in found:
            if build.build in builds and build.status == BUILDING:
                self._follower.forget(build.build)
                abandon(self.engine, build.view, build.build)

    def status(self) -> list[ViewStatus]:
        """Position, lag and version of every view."""
        recorders = log_shards(self.app.recorder)
        heads = [r.max_notification_id() or 0 for r in recorders]
        report = []
        with self.engine.connect() as conn:
            for name, cls in self.views.items():
                active = catalog.find(conn, name, ACTIVE)
                building = catalog.find(conn, name, BUILDING)
                skips = catalog.skipped(conn, [active.build]) if active else {}
                events, topic = skips.get(active.build, (0, None)) if active else (0, None)
                abandoned = catalog.last_abandoned(conn, name)
                shards = _per_shard(conn, active, heads)
                report.append(
                    ViewStatus(
                        name,
                        cls.version,
                        active,
                        building,
                        heads[0],
                        abandoned,
                        events,
                        topic,
                        shards,
                    )
                )
        return report

    def behind(self) -> int:
        """Events the build furthest behind (serving or being built) has yet to apply,
        summed over the log's shards."""
        total = 0
        with self.engine.connect() as conn:
            ids = [b.build for name in self.views for b in catalog.builds_of(conn, name)]
            for shard, recorder in enumerate(log_shards(self.app.recorder)):
                head = recorder.max_notification_id() or 0
                positions = catalog.positions(conn, ids, shard).values()
                total += head - min(positions, default=head)
        return total

    def shard_count(self) -> int:
        """How many shards the log's events are spread over (1: not sharded)."""
        return len(log_shards(self.app.recorder))

    def table(self, conn: Connection, name: str, part: str = "") -> Table:
        """The serving build's table, as it is in the database (reflected).

        Raises :class:`ViewStoppedError` if the build stopped on a failure: a stopped
        view would silently serve stale rows.
        """
        build = catalog.active(conn, name)  # on ``conn``: no second connection
        if build is None:
            raise UnknownViewError(name, sorted(self.views))
        if build.error:
            raise ViewStoppedError(name, build.position, build.error)
        key = (name, build.build, part)
        table = self._tables.get(key)
        if table is None:  # a build's tables never change: reflect once
            table_name = self.view_class(name)(build.build).table_name(part)
            table = self._tables[key] = Table(table_name, MetaData(), autoload_with=conn)
        return table

    def view_class(self, name: str) -> type[View]:
        """The view class with that name."""
        try:
            return self.views[name]
        except KeyError:
            raise UnknownViewError(name, sorted(self.views)) from None

    def _new_build(self, name: str, owner: str, *, downgrade: bool) -> Build:
        """A fresh build of the view, replacing any build still catching up (one of a
        newer version only if asked to ``downgrade``)."""
        cls = self.view_class(name)
        with self.engine.begin() as conn:
            stale = catalog.find(conn, name, BUILDING)
            newest = max(
                (b.version for b in (stale, catalog.find(conn, name, ACTIVE)) if b), default=0
            )
            if newest > cls.version and not downgrade:
                raise ViewTooNewError(name, newest, cls.version)
            if stale is not None:
                catalog.set_status(conn, stale.build, RETIRED)
            new = catalog.new_build(conn, name, cls.version, BUILDING, owner)
            create_tables(conn, cls(new.build))
        if stale is not None:  # nobody reads a build that is not serving yet
            self._follower.forget(stale.build)
            drop_build(self.engine, name, stale.build)
        return new

    def _follow(
        self, builds: list[Build], progress: Progress | None, stop: Stop | None = None
    ) -> None:
        """Follow the builds in one pass, swap in those being built that caught up, and
        raise the first failure."""
        followed = [(self.views[b.view], b) for b in builds]
        failures = self._follower.follow(followed, self.batch_size, progress, stop)
        failed = {e.build for e in failures}
        for build in builds:
            if build.status == BUILDING and build.build not in failed:
                retired = swap(self.engine, self.views[build.view](build.build), build)
                if retired is not None:
                    self._follower.forget(retired)
        if failures:
            raise failures[0]

    def _build(self, name: str, status: str) -> Build:
        with self.engine.connect() as conn:
            build = catalog.find(conn, name, status)
        if build is None:
            raise UnknownViewError(name, sorted(self.views))
        return build


def _per_shard(
    conn: Connection, active: Build | None, heads: list[int]
) -> tuple[tuple[int, int], ...]:
    """(position, head) per shard of a log in several shards (nothing for one shard)."""
    if active is None or len(heads) <= 1:
        return ()
    found = catalog.shard_positions_of(conn, [active.build]).get(active.build, {})
    found[0] = active.position
    return tuple((found.get(shard, 0), head) for shard, head in enumerate(heads))
