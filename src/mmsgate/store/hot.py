"""The statements every message runs (its delivery lookup, its state moves, its postback
job), compiled once and, on SQLite, run straight on the connection's `sqlite3` handle.

Through SQLAlchemy's async execution each statement costs 40–60 µs of Python around an
indexed statement SQLite runs in 10–40 µs (bench/deliver/README.md): building an execution
context, processing binds, wrapping the cursor in a result. Here a statement is compiled once
per dialect into its SQL, the order of its parameters and the type processors of its binds
and columns; a call binds a tuple and reads plain tuples. The SQL and the type handling are
SQLAlchemy's own, so a hot statement reads and writes exactly what the same statement does
through `conn.execute`. On PostgreSQL (asyncpg) it runs through the cursor of SQLAlchemy's
asyncpg adapter, so transactions, prepared statements and errors are handled as for any
other statement (asyncpg and SQLite are the two drivers mmsgate's database URLs select).
"""

from __future__ import annotations

import collections
import dataclasses
import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
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
        self._compiled: dict[tuple[str, str], _Compiled] = {}

    def compiled(self, dialect: Dialect) -> _Compiled:
        key = (dialect.name, dialect.driver)
        found = self._compiled.get(key)
        if found is None:
            found = self._compiled[key] = _compile(self.statement, self.keys, dialect)
        return found


class Result(NamedTuple):
    rows: list[Any]
    rowcount: int

    def first(self) -> Any:
        return self.rows[0] if self.rows else None


async def execute(conn: AsyncConnection, hot: Hot, params: Mapping[str, Any]) -> Result:
    """Run `hot` with `params` in `conn`'s transaction: its rows (attribute access by column
    name, as from `conn.execute`) and the count of rows it changed."""
    dialect = conn.dialect
    if dialect.name == "sqlite":
        # The connection under `conn`'s transaction: mmsgate's `sqlite_driver.Connection`.
        driver: Any = conn.sync_connection.connection.driver_connection  # type: ignore[union-attr]
        return run_sqlite(driver.handle, hot.compiled(dialect), params)
    return await _run_asyncpg(conn, hot.compiled(dialect), params)  # the only other driver


async def _run_asyncpg(
    conn: AsyncConnection, compiled: _Compiled, params: Mapping[str, Any]
) -> Result:
    """On PostgreSQL, through the cursor of SQLAlchemy's own asyncpg adapter, awaited
    directly: it begins `conn`'s transaction if no statement has yet, keeps its prepared
    statements, and turns asyncpg's errors into DBAPI ones, as for any statement."""
    adapted: Any = conn.sync_connection.connection.dbapi_connection  # type: ignore[union-attr]
    cursor = adapted.cursor()
    try:
        await cursor._prepare_and_execute(compiled.sql, _bound(compiled, params))
        return Result(_rows(compiled, cursor._rows) if compiled.row else [], cursor.rowcount)
    finally:
        cursor.close()


def run_sqlite(
    handle: sqlite3.Connection, compiled: _Compiled, params: Mapping[str, Any]
) -> Result:
    """Run a compiled statement on a `sqlite3` connection, where the caller is."""
    cursor = handle.execute(compiled.sql, _bound(compiled, params))
    try:
        if compiled.row is None:
            return Result([], cursor.rowcount)
        return Result(_rows(compiled, cursor.fetchall()), cursor.rowcount)
    finally:
        cursor.close()


def _bound(compiled: _Compiled, params: Mapping[str, Any]) -> list[Any]:
    given = compiled.defaults | dict(params) if compiled.defaults else params
    return [
        value if process is None or value is None else process(value)
        for value, process in zip((given[n] for n in compiled.names), compiled.binds, strict=True)
    ]


def _rows(compiled: _Compiled, fetched: Iterable[Sequence[Any]]) -> list[Any]:
    assert compiled.row is not None
    row, processors = compiled.row, compiled.results
    return [
        row(
            *(
                value if process is None or value is None else process(value)
                for value, process in zip(raw, processors, strict=True)
            )
        )
        for raw in fetched
    ]


def _compile(statement: sa.Executable, keys: list[str] | None, dialect: Dialect) -> _Compiled:
    compiled = statement.compile(dialect=dialect, column_keys=keys)  # type: ignore[attr-defined]
    names = tuple(compiled.positiontup or ())
    defaults = {
        name: value
        for name, value in compiled.params.items()
        if not compiled.binds[name].required and value is not None
    }
    # The dialect's own processors for each type (a TypeDecorator's included), as
    # SQLAlchemy's execution applies them: SQLite keeps datetimes as text, JSON as text.
    # `_cached_*_processor` is the per-dialect cache its execution itself reads; the
    # version is pinned by uv.lock and tests/pipeline/test_hot_statements.py checks the
    # round trip on both databases.
    binds = tuple(compiled.binds[name].type._cached_bind_processor(dialect) for name in names)
    columns = list(getattr(statement, "selected_columns", ()))
    if not columns:
        return _Compiled(str(compiled), names, defaults, binds, None, ())
    row = collections.namedtuple("Row", [c.key for c in columns])  # type: ignore[misc]
    results = tuple(c.type._cached_result_processor(dialect, None) for c in columns)
    return _Compiled(str(compiled), names, defaults, binds, row, results)
