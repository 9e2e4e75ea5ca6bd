"""Bulk writes compiled once: the rows a view kept, in one statement per flush.

SQLAlchemy Core caches a statement's compiled form, but for an executemany it still
works out every row's parameters in Python, which costs more than the database's own
work when a view writes tens of thousands of rows. A :class:`BulkWrite` compiles its
statement once per database, applies the columns' own bind processing (the functions
SQLAlchemy would apply) and hands the rows straight to the driver's executemany.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Column, Connection, Dialect, Table, insert
from sqlalchemy.sql.dml import UpdateBase

Processor = Callable[[Any], Any]
Compiled = tuple[str, list[str], bool, list[tuple[int, str, Processor]]]


class BulkWrite:
    """An INSERT or UPDATE run for many rows at once; each row a dict by bind name."""

    @classmethod
    def insert(cls, table: Table) -> BulkWrite:
        """Insert rows holding every column of the table."""
        return cls(insert(table), {column.key: column for column in table.columns})

    def __init__(self, statement: UpdateBase, columns: dict[str, Column[Any]]) -> None:
        self.statement = statement
        self.columns = columns  # bind name -> the column it writes or matches
        self._compiled: dict[tuple[str, str, str], Compiled] = {}

    def __call__(self, conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
        """Run the statement once for each row, in one executemany."""
        if not rows:
            return
        sql, names, positional, processors = self._for(conn.dialect)
        params: list[Any] = []
        for row in rows:
            values = [row[name] for name in names]
            for index, _, process in processors:
                values[index] = process(values[index])
            params.append(tuple(values) if positional else dict(zip(names, values, strict=True)))
        conn.exec_driver_sql(sql, params)

    def _for(self, dialect: Dialect) -> Compiled:
        key = (dialect.name, dialect.driver, dialect.paramstyle)
        compiled = self._compiled.get(key)
        if compiled is None:
            statement = self.statement.compile(dialect=dialect)
            positional = bool(statement.positional)
            names = list(statement.positiontup or ()) if positional else list(statement.params)
            processors = [
                (index, name, process)
                for index, name in enumerate(names)
                if (process := self._processor(name, dialect)) is not None
            ]
            compiled = self._compiled[key] = (
                str(statement),
                names,
                positional,
                processors,
            )
        return compiled

    def _processor(self, name: str, dialect: Dialect) -> Processor | None:
        column_type = self.columns[name].type
        return column_type.dialect_impl(dialect).bind_processor(dialect)
