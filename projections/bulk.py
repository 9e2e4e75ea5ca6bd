"""Bulk writes compiled once: the rows a view kept, in one statement per flush.

SQLAlchemy Core caches a statement's compiled form, but for an executemany it still
works out every row's parameters in Python, which costs more than the database's own
work when a view writes tens of thousands of rows. A :class:`BulkWrite` compiles its
statement once per database, applies the columns' own bind processing (the functions
SQLAlchemy would apply) and hands the rows straight to the driver's executemany.

On PostgreSQL (psycopg), the inserts and updates made with :meth:`BulkWrite.insert`
and :meth:`BulkWrite.update` go through ``COPY`` instead once they are
:data:`COPY_FROM` rows or more (:mod:`agentlog.projections.pg_copy`): one statement per
write, its rows formatted by psycopg's C code. SQLite keeps its executemany, which runs
in C already.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from sqlalchemy import Column, Connection, Dialect, Table, bindparam, insert, update
from sqlalchemy.sql.dml import UpdateBase

from agentlog.projections.pg_copy import CopyWrite

COPY_FROM = 32
"""Rows from which a write goes by COPY where it can: a COPY costs more to start than a
few rows of an executemany (measured on PostgreSQL: about even, client and server
CPU together, at 20 to 50 rows)."""
Processor = Callable[[Any], Any]
Row = tuple[Any, ...]


class _Compiled:
    """A statement compiled for one database, and how a row becomes its parameters."""

    def __init__(self, write: BulkWrite, dialect: Dialect) -> None:
        statement = write.statement.compile(dialect=dialect)
        self.sql = str(statement)
        self.positional = bool(statement.positional)
        binds = list(statement.positiontup or ()) if self.positional else list(statement.params)
        self.binds = binds
        order = [write.names.index(name) for name in binds]
        self.order = None if order == list(range(len(write.names))) else order
        self.processors = [
            (index, process)
            for index, name in enumerate(binds)
            if (process := _processor(write.columns[name], dialect)) is not None
        ]
        self.convert = _converter(len(binds), self.order, self.processors)
        self.copy = (
            None
            if write.table is None
            else CopyWrite.plan(write.table, write.names, write.keys, dialect)
        )
        self.copy_processors = [
            (index, process)
            for index, name in enumerate(write.names)
            if (process := _processor(write.columns[name], dialect)) is not None
        ]

    def rows(self, rows: Sequence[Row]) -> Sequence[Row]:
        """The rows with the columns' bind processing applied (for COPY)."""
        processors = self.copy_processors
        if not processors:
            return rows
        done: list[Row] = []
        for row in rows:
            values = list(row)
            for index, process in processors:
                values[index] = process(values[index])
            done.append(tuple(values))
        return done

    def params(self, rows: Sequence[Row]) -> list[Any]:
        """The driver's parameters for these rows."""
        order, processors = self.order, self.processors
        if order is None and not processors and self.positional:
            return list(rows)
        if self.positional:
            return list(map(self.convert, rows))
        params: list[Any] = []
        for row in rows:
            values = list(row) if order is None else [row[i] for i in order]
            for index, process in processors:
                values[index] = process(values[index])
            params.append(dict(zip(self.binds, values, strict=True)))
        return params


class BulkWrite:
    """An INSERT or UPDATE run for many rows at once; a row is a tuple of values for
    the binds named ``names``, in that order."""

    def __init__(
        self,
        statement: UpdateBase,
        columns: Sequence[Column[Any]],
        names: Sequence[str],
        *,
        table: Table | None = None,
        keys: Sequence[str] | None = None,
    ):
        self.statement = statement
        self.names = list(names)
        self.columns = dict(zip(names, columns, strict=True))  # bind -> column it is for
        self.table = table  # with it, PostgreSQL writes by COPY: inserts, or updates by keys
        self.keys = None if keys is None else list(keys)
        self._compiled: dict[tuple[str, str, str], _Compiled] = {}

    @classmethod
    def insert(cls, table: Table) -> BulkWrite:
        """Insert rows holding every column of the table, in the table's order."""
        columns = list(table.columns)
        return cls(insert(table), columns, [column.key for column in columns], table=table)

    @classmethod
    def update(cls, table: Table, keys: Sequence[str]) -> BulkWrite:
        """Update, by the ``keys`` columns, rows holding every column of the table, in
        the table's order (a row whose key the table lacks changes nothing)."""
        columns = list(table.columns)
        values: dict[Any, Any] = {c: bindparam(c.key) for c in columns if c.key not in keys}
        match = [table.c[key] == bindparam(key) for key in keys]
        statement = update(table).values(values).where(*match)
        return cls(statement, columns, [c.key for c in columns], table=table, keys=keys)

    def __call__(self, conn: Connection, rows: Sequence[Row]) -> None:
        """Write the rows: one COPY on PostgreSQL, else the statement once for each
        row, in one executemany."""
        if rows:
            compiled = self._for(conn.dialect)
            copy = compiled.copy if len(rows) >= COPY_FROM else None
            if copy is not None and copy(conn, compiled.rows(rows)):
                return
            conn.exec_driver_sql(compiled.sql, compiled.params(rows))

    def _for(self, dialect: Dialect) -> _Compiled:
        key = (dialect.name, dialect.driver, str(dialect.paramstyle))
        compiled = self._compiled.get(key)
        if compiled is None:
            compiled = self._compiled[key] = _Compiled(self, dialect)
        return compiled


def _converter(
    width: int, order: list[int] | None, processors: list[tuple[int, Processor]]
) -> Callable[[Row], Row]:
    """One function that makes a row into the driver's positional parameters (the row's
    values in the statement's order, each through its column's processing), written
    out once per statement: no per-row loop over the columns in Python."""
    process = dict(processors)
    names = {f"p{index}": fn for index, fn in process.items()}
    items = []
    for index in range(width):
        value = f"row[{index if order is None else order[index]}]"
        items.append(f"p{index}({value})" if index in process else value)
    source = f"lambda row: ({''.join(item + ', ' for item in items)})"
    convert: Callable[[Row], Row] = eval(source, names)  # noqa: S307 - our own text
    return convert


def _processor(column: Column[Any], dialect: Dialect) -> Processor | None:
    """The column's bind processing on this database (a faster equivalent, if any)."""
    process: Processor | None = column.type.dialect_impl(dialect).bind_processor(dialect)
    if process is not None and _formats_times_as_iso_text(process):
        return _faster_times(process)
    return process


def _formats_times_as_iso_text(process: Processor) -> bool:
    try:
        return all(process(t) == _iso_text(t) for t in _SAMPLE_TIMES)
    except Exception:  # not a processor of times
        return False


def _iso_text(moment: datetime) -> str:
    """'2026-11-29 20:50:55.077557': what SQLite's DATETIME stores (zone left out)."""
    return moment.isoformat(" ", "microseconds")[:26]


def _faster_times(process: Processor) -> Processor:
    """``process``, with datetimes formatted by C code (it gives the same text)."""

    def faster(value: Any) -> Any:
        if type(value) is datetime:
            return value.isoformat(" ", "microseconds")[:26]  # _iso_text, inlined
        return process(value)

    return faster


_SAMPLE_TIMES = (  # where a formatting that differs would show
    datetime(2026, 11, 29, 20, 50, 55, 77557, tzinfo=UTC),
    datetime(2026, 1, 2, 3, 4, 5),
    datetime(1, 1, 1),
    datetime(999, 12, 31, 23, 59, 59, 999999, tzinfo=timezone(timedelta(hours=5, minutes=30))),
    datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=timezone(-timedelta(seconds=3601))),
)
