"""The statements every message runs (its delivery lookup, its state moves, its postback
job), compiled once per dialect, for `Database.run`.

Through SQLAlchemy's async execution each statement costs 40–60 µs of Python around an
indexed statement SQLite runs in 10–40 µs (bench/deliver/README.md): building an execution
context, processing binds, wrapping the cursor in a result. Here a statement is compiled once
per dialect (SQLAlchemy's public `compile()`) into its SQL, the order of its parameters and
the type processors of its binds and columns (`TypeEngine.bind_processor` and
`result_processor` of the type as the dialect implements it); a call binds a list and reads
plain named tuples. The SQL and the type handling are SQLAlchemy's own, so a hot statement
reads and writes exactly what the same statement does through `conn.execute`
(tests/pipeline/test_hot_statements.py checks it on both databases).

This module knows no driver: `sqlite_driver.run` runs a compiled statement on a `sqlite3`
connection, `pg_driver.run` on an asyncpg one, each through the driver's public interface.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import NamedTuple, cast

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection

from mmsgate.store.rows import Row

_Processor = Callable[[object], object] | None
Params = Mapping[str, object]


@dataclasses.dataclass(frozen=True, slots=True)
class Compiled:
    """One statement as one dialect runs it."""

    sql: str
    names: tuple[str, ...]  # the bind parameters, in their order in `sql`
    defaults: dict[str, object]  # values the statement itself gives (`state == 'running'`)
    binds: tuple[_Processor, ...]
    row: Callable[..., Row] | None  # a named tuple of the selected columns
    # How each column is read, when the dialect can tell without the driver's type code
    # for it (SQLite's can; `typed` gives them for asyncpg, whose numbers need it).
    results: tuple[_Processor, ...] | None
    column_types: tuple[sa.types.TypeEngine[object], ...]

    def typed(self, dialect: Dialect, coltypes: Sequence[object]) -> Compiled:
        """The same, its columns read as the driver's type codes for them say (asyncpg's
        numeric processors differ by the column's PostgreSQL type)."""
        results = tuple(
            _result_processor(t, dialect, code)
            for t, code in zip(self.column_types, coltypes, strict=True)
        )
        return dataclasses.replace(self, results=results)

    def bound(self, params: Params) -> list[object]:
        """The parameters' values in `sql`'s order, each as the column type binds it."""
        given = self.defaults | dict(params) if self.defaults else params
        return [
            value if process is None or value is None else process(value)
            for value, process in zip((given[n] for n in self.names), self.binds, strict=True)
        ]

    def rows(self, fetched: Iterable[Sequence[object]]) -> list[Row]:
        """Fetched rows as named tuples, each value as the column type reads it."""
        assert self.row is not None
        assert self.results is not None, "read with the driver's column types (`typed`)"
        row, processors = self.row, self.results
        return [
            row(
                *(
                    value if process is None or value is None else process(value)
                    for value, process in zip(raw, processors, strict=True)
                )
            )
            for raw in fetched
        ]


class Hot:
    """One statement, built once, with its parameters named by `bindparam` or by `keys`
    (the columns an INSERT writes)."""

    def __init__(self, statement: sa.Executable, *, keys: Sequence[str] | None = None) -> None:
        self.statement = statement
        self.keys = list(keys) if keys is not None else None
        self._compiled: dict[tuple[str, str, bool], Compiled] = {}

    def compiled(self, dialect: Dialect) -> Compiled:
        key = (dialect.name, dialect.driver, False)
        found = self._compiled.get(key)
        if found is None:
            found = self._compiled[key] = _compile(self.statement, self.keys, dialect)
        return found

    def typed(self, dialect: Dialect, coltypes: Sequence[object] | None = None) -> Compiled | None:
        """As `compiled`, its columns read as the driver's type codes for them (`coltypes`)
        say; None if they were never given."""
        key = (dialect.name, dialect.driver, True)
        found = self._compiled.get(key)
        if found is None and coltypes is not None:
            found = self._compiled[key] = self.compiled(dialect).typed(dialect, coltypes)
        return found


@dataclasses.dataclass(frozen=True, slots=True)
class Lookup:
    """A lookup of the rows whose `column` equals a key (`{"key": …}`): `one` finds them for
    one key; `many`, the same for all of `{"keys": [...]}` at once, lets the Database answer
    lookups made together with one query where the backend gains by it."""

    one: Hot
    many: Hot
    column: str


class Result(NamedTuple):
    """What a hot statement gave: its rows (attribute access by column name, as from
    `conn.execute`) and the count of rows it changed or returned."""

    rows: list[Row]
    rowcount: int

    def first(self) -> Row | None:
        return self.rows[0] if self.rows else None


def driver_connection(conn: AsyncConnection) -> object:
    """The driver's own connection under `conn`, through SQLAlchemy's public attributes
    (`get_raw_connection()` gives the same through a greenlet hop, which costs more than a
    hot statement)."""
    sync = conn.sync_connection
    assert sync is not None, "an AsyncConnection in use has its sync connection"
    return sync.connection.driver_connection


def _compile(statement: sa.Executable, keys: list[str] | None, dialect: Dialect) -> Compiled:
    compiled = statement.compile(dialect=dialect, column_keys=keys)  # type: ignore[attr-defined]
    names = tuple(compiled.positiontup or ())
    defaults = {
        name: value
        for name, value in compiled.params.items()
        if not compiled.binds[name].required and value is not None
    }
    # The dialect's own implementation of each type (a TypeDecorator's included), as
    # SQLAlchemy's execution applies it: SQLite keeps datetimes as text, JSON as text.
    binds = tuple(_bind_processor(compiled.binds[name].type, dialect) for name in names)
    # A SELECT's columns, or those of an INSERT/UPDATE/DELETE … RETURNING.
    columns = list(getattr(statement, "exported_columns", ()))
    if not columns:
        return Compiled(str(compiled), names, defaults, binds, None, (), ())
    # A named tuple answers its columns by name, as `Row` says.
    row = cast(Callable[..., Row], collections.namedtuple("Row", [c.key for c in columns]))
    types = tuple(c.type for c in columns)
    try:
        results: tuple[_Processor, ...] | None = tuple(
            _result_processor(t, dialect, None) for t in types
        )
    except (TypeError, sa.exc.SQLAlchemyError):  # the processor needs the type code
        results = None
    return Compiled(str(compiled), names, defaults, binds, row, results, types)


def _bind_processor(type_: sa.types.TypeEngine[object], dialect: Dialect) -> _Processor:
    return type_.dialect_impl(dialect).bind_processor(dialect)


def _result_processor(
    type_: sa.types.TypeEngine[object], dialect: Dialect, coltype: object
) -> _Processor:
    return type_.dialect_impl(dialect).result_processor(dialect, coltype)
