"""Everything of PostgreSQL below SQLAlchemy: hot statements (`store.hot`) run on the asyncpg
connection under a SQLAlchemy connection, through asyncpg's public interface.

asyncpg prepares each statement once per connection (its statement cache) and runs it with
the values bound; the SQL, the order of the values and their type processing come from
SQLAlchemy's own compilation (`store.hot`), and the connection's codecs (JSON, set up by
SQLAlchemy's asyncpg dialect when it connects) are the ones every statement uses.

Transactions stay SQLAlchemy's: its asyncpg dialect begins one with the first statement a
transaction runs. A hot statement that would be the first therefore goes, compiled as it
is, through SQLAlchemy's `exec_driver_sql` (which begins it), and every later one straight
to asyncpg, inside it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Protocol, cast

from sqlalchemy.ext.asyncio import AsyncConnection

from mmsgate.store import hot

# The count in a command's status ("UPDATE 3", "INSERT 0 1"), as SQLAlchemy's adapter reads it.
_STATUS = re.compile(r"(?:SELECT|UPDATE|DELETE|INSERT \d+) (\d+)")


class _Type(Protocol):
    oid: int


class _Attribute(Protocol):
    type: _Type


class _Prepared(Protocol):
    def get_attributes(self) -> Sequence[_Attribute]: ...


class _Asyncpg(Protocol):
    """The part of `asyncpg.Connection`'s public interface used here (asyncpg has no types)."""

    def is_in_transaction(self) -> bool: ...

    async def prepare(self, query: str) -> _Prepared: ...

    async def execute(self, query: str, *args: object) -> str: ...

    async def fetch(self, query: str, *args: object) -> list[Sequence[object]]: ...


async def run(conn: AsyncConnection, statement: hot.Hot, params: hot.Params) -> hot.Result:
    """Run `statement` with `params` on `conn`, in its transaction if it is in one."""
    raw = cast(_Asyncpg, hot.driver_connection(conn))
    compiled = statement.compiled(conn.dialect)
    if compiled.row is not None:
        compiled = statement.typed(conn.dialect) or await _type(raw, statement, compiled, conn)
    values = compiled.bound(params)
    if not raw.is_in_transaction() and not _autocommit(conn):
        return await _through_sqlalchemy(conn, compiled, values)
    if compiled.row is None:
        status = await raw.execute(compiled.sql, *values)
        found = _STATUS.match(status)
        return hot.Result([], int(found.group(1)) if found else -1)
    rows = compiled.rows(await raw.fetch(compiled.sql, *values))
    return hot.Result(rows, len(rows))


# The PostgreSQL type of each column a statement gives, by its SQL: the schema's, the same on
# every connection.
_coltypes: dict[str, list[int]] = {}


async def _type(
    raw: _Asyncpg, statement: hot.Hot, compiled: hot.Compiled, conn: AsyncConnection
) -> hot.Compiled:
    """`statement` compiled, its columns read as SQLAlchemy reads them from PostgreSQL's
    type of each (asked once per SQL and process: asyncpg's `prepare` describes them)."""
    coltypes = _coltypes.get(compiled.sql)
    if coltypes is None:
        prepared = await raw.prepare(compiled.sql)
        coltypes = [attribute.type.oid for attribute in prepared.get_attributes()]
        _coltypes[compiled.sql] = coltypes
    typed = statement.typed(conn.dialect, coltypes)
    assert typed is not None
    return typed


def _autocommit(conn: AsyncConnection) -> bool:
    """Whether `conn` runs each statement on its own (the Database's PostgreSQL reads)."""
    options = conn.sync_engine.get_execution_options()
    return bool(options.get("isolation_level") == "AUTOCOMMIT")


async def _through_sqlalchemy(
    conn: AsyncConnection, compiled: hot.Compiled, values: list[object]
) -> hot.Result:
    """The compiled SQL through SQLAlchemy's own execution (`exec_driver_sql`), which
    begins the transaction; `preserve_rowcount` keeps an INSERT's count too."""
    result = await conn.exec_driver_sql(
        compiled.sql, tuple(values), execution_options={"preserve_rowcount": True}
    )
    if compiled.row is None:
        return hot.Result([], result.rowcount)
    rows = compiled.rows(result.all())
    return hot.Result(rows, len(rows))
