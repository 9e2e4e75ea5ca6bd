"""A view's builds side by side: fresh tables for a new build, the swap that makes a
caught-up build the one readers use, and dropping the tables of retired builds."""

from __future__ import annotations

from sqlalchemy import Connection, Engine, inspect
from sqlalchemy.schema import CreateTable

from agentlog.projections import catalog
from agentlog.projections.catalog import ABANDONED, ACTIVE, DROPPED, RETIRED, Build
from agentlog.projections.view import View


def create_tables(conn: Connection, view: View) -> None:
    """Create a new build's tables without their indexes (fresh: a build starts empty).

    Nobody reads a build until it is swapped in, and filling tables first, then
    indexing them, costs a fraction of keeping every index up to date row by row: the
    swap creates them. (A view that needs an index for its own queries on the way
    creates it then.)
    """
    for table in view.metadata.sorted_tables:
        conn.execute(CreateTable(table))


def create_indexes(conn: Connection, view: View) -> None:
    """Create the indexes of a build's tables that do not exist yet."""
    for table in view.metadata.sorted_tables:
        for index in sorted(table.indexes, key=lambda i: str(i.name)):
            index.create(conn, checkfirst=True)


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


def swap(engine: Engine, view: View, new: Build) -> int | None:
    """Index a caught-up build, make it the one readers use, and retire the old one
    (returned).

    The build retired now keeps its tables (a reader may have looked it up a moment
    ago); builds retired at earlier swaps are dropped now. The build of a newer view
    version (made by a newer agentlog, during a rolling upgrade) is never replaced by
    an older one made by itself (no owner: not a rebuild someone asked for): the older
    build is retired instead.
    """
    view_name = view.name
    with engine.begin() as conn:
        create_indexes(conn, view)
    with engine.begin() as conn:
        earlier = catalog.retired(conn, view_name)
        old = catalog.find(conn, view_name, ACTIVE)
        if old is not None and old.version > new.version and new.owner is None:
            catalog.set_status(conn, new.build, RETIRED)
            return None
        if not catalog.activate(conn, new.build):  # compare-and-set on 'building'
            return None  # another follower finished this build and swapped it in already
        if old is not None:
            catalog.set_status(conn, old.build, RETIRED)
    for build in earlier:
        drop_build(engine, view_name, build.build)
    return None if old is None else old.build


def drop_build(engine: Engine, view_name: str, build: int) -> None:
    """Drop a build's tables and remember that they are gone."""
    drop_build_tables(engine, view_name, build)
    with engine.begin() as conn:
        catalog.set_status(conn, build, DROPPED)


def abandon(engine: Engine, view_name: str, build: int) -> None:
    """Give up on a build nobody will finish: drop its tables, mark it abandoned."""
    drop_build_tables(engine, view_name, build)
    with engine.begin() as conn:
        catalog.set_status(conn, build, ABANDONED)
