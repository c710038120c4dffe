"""The statements every message runs (its delivery lookup, its state moves, its postback
job), compiled once and, on SQLite, run straight on the connection's `sqlite3` handle.

Through SQLAlchemy's async execution each statement costs 40–60 µs of Python around an
indexed statement SQLite runs in 10–40 µs (bench/deliver/README.md): building an execution
context, processing binds, wrapping the cursor in a result. Here a statement is compiled once
per dialect into its SQL, the order of its parameters and the type processors of its binds
and columns; a call binds a tuple and reads plain tuples. The SQL and the type handling are
SQLAlchemy's own, so a hot statement reads and writes exactly what the same statement does
through `conn.execute`. On PostgreSQL a hot statement goes through `conn.execute` unchanged.
"""

from __future__ import annotations

import collections
import dataclasses
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection

_Processor = Callable[[Any], Any] | None


@dataclasses.dataclass(frozen=True, slots=True)
class _Compiled:
    sql: str
    names: tuple[str, ...]  # the bind parameters, in their order in `sql`
    defaults: dict[str, Any]  # values the statement itself gives (`state == 'running'`)
    binds: tuple[_Processor, ...]
    row: type[tuple[Any, ...]] | None  # a named tuple of the selected columns, if any
    results: tuple[_Processor, ...]


class Hot:
    """One statement, built once, with its parameters named by `bindparam` or by `keys`
    (the columns an INSERT writes)."""

    def __init__(self, statement: sa.Executable, *, keys: Sequence[str] | None = None) -> None:
        self.statement = statement
        self.keys = list(keys) if keys is not None else None
        self._compiled: _Compiled | None = None

    def compiled(self, dialect: Dialect) -> _Compiled:
        if self._compiled is None:
            self._compiled = _compile(self.statement, self.keys, dialect)
        return self._compiled


class Result(NamedTuple):
    rows: list[Any]
    rowcount: int

    def first(self) -> Any:
        return self.rows[0] if self.rows else None


async def execute(conn: AsyncConnection, hot: Hot, params: Mapping[str, Any]) -> Result:
    """Run `hot` with `params` in `conn`'s transaction: its rows (attribute access by column
    name, as from `conn.execute`) and the count of rows it changed."""
    if conn.dialect.name != "sqlite":
        result = await conn.execute(hot.statement, dict(params))
        rows = list(result.all()) if result.returns_rows else []
        return Result(rows, result.rowcount)
    # The connection under the transaction `conn` holds: mmsgate's `sqlite_driver.Connection`.
    driver: Any = conn.sync_connection.connection.driver_connection  # type: ignore[union-attr]
    return run_sqlite(driver.handle, hot.compiled(conn.dialect), params)


def run_sqlite(
    handle: sqlite3.Connection, compiled: _Compiled, params: Mapping[str, Any]
) -> Result:
    """Run a compiled statement on a `sqlite3` connection, where the caller is."""
    given = compiled.defaults | dict(params) if compiled.defaults else params
    values = [
        value if process is None or value is None else process(value)
        for value, process in zip((given[n] for n in compiled.names), compiled.binds, strict=True)
    ]
    cursor = handle.execute(compiled.sql, values)
    try:
        if compiled.row is None:
            return Result([], cursor.rowcount)
        row, processors = compiled.row, compiled.results
        rows = [
            row(
                *(
                    value if process is None or value is None else process(value)
                    for value, process in zip(raw, processors, strict=True)
                )
            )
            for raw in cursor.fetchall()
        ]
        return Result(rows, cursor.rowcount)
    finally:
        cursor.close()


def _compile(statement: sa.Executable, keys: list[str] | None, dialect: Dialect) -> _Compiled:
    compiled = statement.compile(dialect=dialect, column_keys=keys)  # type: ignore[attr-defined]
    names = tuple(compiled.positiontup or ())
    defaults = {n: v for n, v in compiled.params.items() if v is not None}
    # The dialect's own processors for each type (a TypeDecorator's included), as
    # SQLAlchemy's execution applies them: SQLite keeps datetimes as text, JSON as text.
    binds = tuple(compiled.binds[name].type._cached_bind_processor(dialect) for name in names)
    columns = list(getattr(statement, "selected_columns", ()))
    if not columns:
        return _Compiled(str(compiled), names, defaults, binds, None, ())
    row = collections.namedtuple("Row", [c.key for c in columns])  # type: ignore[misc]
    results = tuple(c.type._cached_result_processor(dialect, None) for c in columns)
    return _Compiled(str(compiled), names, defaults, binds, row, results)
