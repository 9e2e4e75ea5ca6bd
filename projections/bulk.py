"""Bulk writes compiled once: the rows a view kept, in one statement per flush.

SQLAlchemy Core caches a statement's compiled form, but for an executemany it still
works out every row's parameters in Python, which costs more than the database's own
work when a view writes tens of thousands of rows. A :class:`BulkWrite` compiles its
statement once per database, applies the columns' own bind processing (the functions
SQLAlchemy would apply) and hands the rows straight to the driver's executemany.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from sqlalchemy import Column, Connection, Dialect, Table, insert
from sqlalchemy.sql.dml import UpdateBase

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

    def params(self, rows: Sequence[Row]) -> list[Any]:
        """The driver's parameters for these rows."""
        order, processors = self.order, self.processors
        if order is None and not processors and self.positional:
            return list(rows)
        params: list[Any] = []
        for row in rows:
            values = list(row) if order is None else [row[i] for i in order]
            for index, process in processors:
                values[index] = process(values[index])
            params.append(
                tuple(values) if self.positional else dict(zip(self.binds, values, strict=True))
            )
        return params


class BulkWrite:
    """An INSERT or UPDATE run for many rows at once; a row is a tuple of values for
    the binds named ``names``, in that order."""

    def __init__(self, statement: UpdateBase, columns: Sequence[Column[Any]], names: Sequence[str]):
        self.statement = statement
        self.names = list(names)
        self.columns = dict(zip(names, columns, strict=True))  # bind -> column it is for
        self._compiled: dict[tuple[str, str, str], _Compiled] = {}

    @classmethod
    def insert(cls, table: Table) -> BulkWrite:
        """Insert rows holding every column of the table, in the table's order."""
        columns = list(table.columns)
        return cls(insert(table), columns, [column.key for column in columns])

    def __call__(self, conn: Connection, rows: Sequence[Row]) -> None:
        """Run the statement once for each row, in one executemany."""
        if rows:
            compiled = self._for(conn.dialect)
            conn.exec_driver_sql(compiled.sql, compiled.params(rows))

    def _for(self, dialect: Dialect) -> _Compiled:
        key = (dialect.name, dialect.driver, str(dialect.paramstyle))
        compiled = self._compiled.get(key)
        if compiled is None:
            compiled = self._compiled[key] = _Compiled(self, dialect)
        return compiled


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
        return _iso_text(value) if type(value) is datetime else process(value)

    return faster


_SAMPLE_TIMES = (  # where a formatting that differs would show
    datetime(2026, 11, 29, 20, 50, 55, 77557, tzinfo=UTC),
    datetime(2026, 1, 2, 3, 4, 5),
    datetime(1, 1, 1),
    datetime(999, 12, 31, 23, 59, 59, 999999, tzinfo=timezone(timedelta(hours=5, minutes=30))),
    datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=timezone(-timedelta(seconds=3601))),
)
