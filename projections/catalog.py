"""The views' own bookkeeping: which builds exist, which one serves, where each stands.

One row per build in ``agentlog_view_builds``. A build's ``position`` is the id of the
last notification it applied, updated in the same transaction as its rows. A view has at
most one ``active`` build (the one readers use) and at most one ``building`` build (a new
version catching up); the swap happens in one transaction once the new build caught up.
A build that ``agentlog projections rebuild`` started records its ``owner`` (host:pid);
one it gave up on (interrupted) is ``abandoned`` and its tables dropped. ``made_by``
says which agentlog made a build (a newer one's builds are never replaced by an older).

A log in several shards (:mod:`agentlog.domain.shards`) has one notification sequence
per shard, so a build has one position per shard: shard 0's is ``position`` in
``agentlog_view_builds`` (a store without shards is exactly as it was), the others are
rows of ``agentlog_view_positions`` (made only for a store with shards).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    bindparam,
    insert,
    inspect,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

ACTIVE, BUILDING, RETIRED, DROPPED = "active", "building", "retired", "dropped"
ABANDONED = "abandoned"

metadata = MetaData()
builds = Table(
    "agentlog_view_builds",
    metadata,
    Column("build", Integer, primary_key=True, autoincrement=True),
    Column("view", String(100), nullable=False, index=True),
    Column("version", Integer, nullable=False),
    Column("status", String(20), nullable=False),
    Column("position", BigInteger, nullable=False, default=0),
    Column("error", Text, nullable=True),
    Column("owner", String(200), nullable=True),
    Column("made_by", String(100), nullable=True),
)
ADDED_COLUMNS = ("owner", "made_by")
"""Columns added after the table was first made: ``upgrade`` adds them where missing."""
skips = Table(
    "agentlog_view_skips",
    metadata,
    Column("build", Integer, primary_key=True, autoincrement=False),
    Column("events", BigInteger, nullable=False),
    Column("topic", Text, nullable=True),
)
"""Per build: events it skipped (no class for their topic in the process that followed,
or of an aggregate the view does not keep), and the last unknown topic."""
shard_metadata = MetaData()
shard_positions = Table(
    "agentlog_view_positions",
    shard_metadata,
    Column("build", Integer, primary_key=True, autoincrement=False),
    Column("shard", Integer, primary_key=True, autoincrement=False),
    Column("position", BigInteger, nullable=False, default=0),
)
"""Per build and shard k > 0: the id of the last notification of shard k it applied."""


@dataclass(frozen=True)
class Build:
    """One build of a view: its tables' suffix, version, status and position."""

    build: int
    view: str
    version: int
    status: str
    position: int
    error: str | None
    owner: str | None = None
    made_by: str | None = None


def upgrade(conn: Connection) -> None:
    """Add the columns a catalog made by an older agentlog lacks (they may be empty)."""
    present = {c["name"] for c in inspect(conn).get_columns(builds.name)}
    for name in ADDED_COLUMNS:
        if name not in present:
            column = builds.c[name]
            kind = column.type.compile(conn.dialect)
            conn.exec_driver_sql(f'ALTER TABLE {builds.name} ADD COLUMN "{name}" {kind}')


def agentlog_version() -> str:
    """The agentlog that is running, as builds record it."""
    try:
        return f"agentlog {package_version('agentlog')}"
    except PackageNotFoundError:  # pragma: no cover - run from a source tree
        return "agentlog"


_LIVE = (
    select(builds)
    .where(
        builds.c.view.in_(bindparam("views", expanding=True)),
        builds.c.status.in_([ACTIVE, BUILDING]),
    )
    .order_by(builds.c.build)
)


def builds_of(conn: Connection, view: str) -> list[Build]:
    """The view's builds that are active or building, oldest first."""
    return builds_of_views(conn, [view])


def builds_of_views(conn: Connection, views: Sequence[str]) -> list[Build]:
    """The builds of these views that are active or building, oldest first (one query)."""
    return [Build(**row._mapping) for row in conn.execute(_LIVE, {"views": list(views)})]


def retired(conn: Connection, view: str) -> list[Build]:
    """The view's retired builds whose tables still exist, oldest first."""
    query = select(builds).where(builds.c.view == view, builds.c.status == RETIRED)
    return [Build(**row._mapping) for row in conn.execute(query.order_by(builds.c.build))]


def find(conn: Connection, view: str, status: str) -> Build | None:
    """The view's build in the given status, if any."""
    return next((b for b in builds_of(conn, view) if b.status == status), None)


_ACTIVE = select(builds).where(
    builds.c.view == bindparam("view", type_=String), builds.c.status == ACTIVE
)
_ACTIVE_SQL: dict[tuple[type, str], tuple[str, dict[str, Any], list[str] | None]] = {}
"""``_ACTIVE`` compiled per dialect: its SQL, bound values, and parameter order if
positional (a worker looks up the runnable view's serving build at every pass)."""


def active(conn: Connection, view: str) -> Build | None:
    """The view's serving build, if any (one statement, compiled once per dialect)."""
    dialect = conn.dialect
    key = (type(dialect), dialect.paramstyle)
    compiled = _ACTIVE_SQL.get(key)
    if compiled is None:
        done = _ACTIVE.compile(dialect=dialect)
        order = list(done.positiontup or ()) if done.positional else None
        compiled = _ACTIVE_SQL[key] = (str(done), dict(done.params), order)
    sql, defaults, order = compiled
    params = {**defaults, "view": view}
    args = params if order is None else tuple(params[name] for name in order)
    row = conn.exec_driver_sql(sql, args).first()
    return None if row is None else Build(**row._mapping)


def last_abandoned(conn: Connection, view: str) -> Build | None:
    """The view's newest build, if it was abandoned (a later build makes it history)."""
    query = select(builds).where(builds.c.view == view).order_by(builds.c.build.desc())
    row = conn.execute(query.limit(1)).first()
    build = None if row is None else Build(**row._mapping)
    return build if build is not None and build.status == ABANDONED else None


def positions(conn: Connection, ids: list[int], shard: int = 0) -> dict[int, int]:
    """Where each of these builds stands in a shard (builds that no longer exist are
    left out)."""
    query = select(builds.c.build, builds.c.position).where(builds.c.build.in_(ids))
    found = {row.build: row.position for row in conn.execute(query)}
    if shard == 0:
        return found
    rows = select(shard_positions.c.build, shard_positions.c.position).where(
        shard_positions.c.build.in_(ids), shard_positions.c.shard == shard
    )
    mine = {row.build: row.position for row in conn.execute(rows)}
    return {build: mine.get(build, 0) for build in found}


def shard_positions_of(conn: Connection, ids: list[int]) -> dict[int, dict[int, int]]:
    """Per build, its positions in shards 1 and up (that it has moved from 0)."""
    rows = select(shard_positions).where(shard_positions.c.build.in_(ids))
    found: dict[int, dict[int, int]] = {}
    for row in conn.execute(rows):
        found.setdefault(row.build, {})[row.shard] = row.position
    return found


def add_shards(engine: Engine, ids: list[int], shards: int) -> None:
    """Give these builds a position row (at 0) in every shard past 0 that lacks one,
    so that :func:`advance` can move it by compare-and-set."""
    with engine.connect() as conn:
        have = shard_positions_of(conn, ids)
    missing = [
        {"build": build, "shard": shard, "position": 0}
        for build in ids
        for shard in range(1, shards)
        if shard not in have.get(build, {})
    ]
    if not missing:
        return
    try:
        with engine.begin() as conn:
            conn.execute(insert(shard_positions), missing)
    except IntegrityError:  # another follower added them at the same moment
        pass


def new_build(
    conn: Connection, view: str, version: int, status: str, owner: str | None = None
) -> Build:
    """Register a new, empty build at position 0 (``owner``: the process that builds it)."""
    values = {
        "view": view,
        "version": version,
        "status": status,
        "position": 0,
        "owner": owner,
        "made_by": agentlog_version(),
    }
    result = conn.execute(insert(builds).values(**values))
    (build_id,) = result.inserted_primary_key or (None,)
    assert build_id is not None
    return Build(build=int(build_id), error=None, **values)  # type: ignore[arg-type]


_ADVANCE = (  # made once: a follower moves positions several times a second
    update(builds)
    .where(builds.c.build == bindparam("b"), builds.c.position == bindparam("old"))
    .values(position=bindparam("new"), error=None)
)
_ADVANCE_SHARD = (
    update(shard_positions)
    .where(
        shard_positions.c.build == bindparam("b"),
        shard_positions.c.shard == bindparam("s"),
        shard_positions.c.position == bindparam("old"),
    )
    .values(position=bindparam("new"))
)
_CLEAR_ERRORS = (
    update(builds)
    .where(builds.c.build.in_(bindparam("ids", expanding=True)), builds.c.error.is_not(None))
    .values(error=None)
)


def advance(
    conn: Connection, build: int, old: int, new: int, shard: int = 0, *, clear: bool = True
) -> bool:
    """Move a build's position in a shard from ``old`` to ``new``, and clear its error;
    False if someone else moved it (or, past shard 0, it has no row: see
    :func:`add_shards`). ``clear=False``: past shard 0, the caller clears the error
    itself in the same transaction (:func:`clear_errors`, once for several builds)."""
    if shard == 0:
        return conn.execute(_ADVANCE, {"b": build, "old": old, "new": new}).rowcount == 1
    moved = conn.execute(_ADVANCE_SHARD, {"b": build, "s": shard, "old": old, "new": new})
    if moved.rowcount != 1:
        return False
    if clear:
        clear_errors(conn, [build])
    return True


def clear_errors(conn: Connection, ids: Sequence[int]) -> None:
    """Clear the errors of builds that moved (one statement for all of them)."""
    if ids:
        conn.execute(_CLEAR_ERRORS, {"ids": sorted(set(ids))})


def activate(conn: Connection, build: int) -> bool:
    """Make a building build active; False if it is not building (already swapped)."""
    query = update(builds).where(builds.c.build == build, builds.c.status == BUILDING)
    return conn.execute(query.values(status=ACTIVE)).rowcount == 1


def set_status(conn: Connection, build: int, status: str) -> None:
    """Change a build's status (activate, retire)."""
    conn.execute(update(builds).where(builds.c.build == build).values(status=status))


def add_skipped(conn: Connection, build: int, events: int, topic: str | None) -> None:
    """Count events a build skipped (in the transaction that moves its position)."""
    if not events:
        return
    values: dict[str, Any] = {"events": skips.c.events + events}
    if topic is not None:
        values["topic"] = topic
    if conn.execute(update(skips).where(skips.c.build == build).values(values)).rowcount == 0:
        conn.execute(insert(skips).values(build=build, events=events, topic=topic))


def skipped(conn: Connection, ids: list[int]) -> dict[int, tuple[int, str | None]]:
    """Events each of these builds skipped, and the last unknown topic among them."""
    query = select(skips).where(skips.c.build.in_(ids))
    return {row.build: (row.events, row.topic) for row in conn.execute(query)}


def record_error(conn: Connection, build: int, error: str) -> None:
    """Remember why a build stopped, for ``agentlog projections status``."""
    conn.execute(update(builds).where(builds.c.build == build).values(error=error))
