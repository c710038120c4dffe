"""Everything of SQLite below SQLAlchemy: the connection under its async engine, and hot
statements (`store.hot`) run on `sqlite3` itself.

The connection is the standard `sqlite3` module, with the awaitable methods SQLAlchemy's
`sqlite+aiosqlite` dialect calls on a driver connection (handed over with
`create_async_engine(..., async_creator=...)`). It is opened in autocommit
(`isolation_level=None`), so SQLAlchemy never needs to change the isolation level and
BEGIN IMMEDIATE and SAVEPOINT work (SQLAlchemy's documented recipe for SQLite).

Why not aiosqlite itself: it runs every call (cursor, execute, fetch, close, commit) as a hop
to the connection's thread and back, about four hops per statement; measured, those hops cost
more CPU than the statements, in the API and in the worker alike. Here:

- a statement runs where it is awaited, on the event loop, unless it has once taken longer
  than INLINE_LIMIT: from then on that SQL runs in the connection's thread, so a query that
  grows slow (a report over a large table) stops holding up the loop. Rows are fetched in the
  same step as the statement, so fetching costs nothing more.
- COMMIT always runs in the thread: it waits for the disk (synchronous=FULL fsyncs the WAL).
- the rest (cursor, close, rollback, functions) is immediate and runs inline.

Blocking the loop for an indexed statement costs less than the hop would; SQLite's busy
wait does not arise for writes, which `Database.write` serialises with a file lock first.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import TypeVar

import structlog

from mmsgate.store import hot

log = structlog.get_logger(__name__)
T = TypeVar("T")
INLINE_LIMIT = 0.002  # CPU seconds; a statement slower than this moves to the thread for good
WAIT_LIMIT = 0.1  # wall seconds, the same for a statement that waited (lock, disk)
_slow: set[str] = set()  # SQL that once ran slower than INLINE_LIMIT (kept per process)


_Row = tuple[object, ...]
BUSY_TIMEOUT = 30.0  # seconds a statement waits for another process's write lock


def creator(path: str) -> Callable[[], Awaitable[Connection]]:
    """The `async_creator` for one database file."""

    async def connect() -> Connection:
        return Connection(_open(path))

    return connect


def _open(path: str) -> sqlite3.Connection:
    return sqlite3.connect(
        path, timeout=BUSY_TIMEOUT, check_same_thread=False, isolation_level=None
    )


def reader(path: Path) -> sqlite3.Connection:
    """A connection of its own for hot reads: in autocommit, each query its own snapshot,
    no pool and no BEGIN or ROLLBACK."""
    return _open(str(path))


def run(handle: sqlite3.Connection, compiled: hot.Compiled, params: hot.Params) -> hot.Result:
    """Run a compiled hot statement on a `sqlite3` connection, where the caller is (in its
    transaction, if it has one)."""
    cursor = handle.execute(compiled.sql, compiled.bound(params))
    try:
        if compiled.row is None:
            return hot.Result([], cursor.rowcount)
        rows = compiled.rows(cursor.fetchall())
        return hot.Result(rows, len(rows))
    finally:
        cursor.close()


class Connection:
    """One SQLite connection, with the awaitable methods SQLAlchemy's adapter calls."""

    def __init__(self, raw: sqlite3.Connection) -> None:
        self._conn = raw
        # Falsy once closed: SQLAlchemy's adapter asks this before a COMMIT or ROLLBACK.
        self._connection: sqlite3.Connection | None = raw
        self._thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="sqlite")

    @property
    def handle(self) -> sqlite3.Connection:
        """The `sqlite3` connection itself, for statements run where the caller is."""
        return self._conn

    async def in_thread(self, function: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, function, *args)

    def cursor(self) -> Cursor:
        return Cursor(self)

    async def execute(self, sql: str, parameters: Sequence[object] = ()) -> Cursor:
        return await self.cursor().execute(sql, parameters)

    async def commit(self) -> None:
        if self._conn.in_transaction:
            await self.in_thread(self._conn.commit)

    async def rollback(self) -> None:
        self._conn.rollback()

    async def close(self) -> None:
        self.stop()

    def stop(self) -> None:
        if self._connection is not None:
            self._connection = None
            self._conn.close()
            self._thread.shutdown(wait=False)

    async def create_function(
        self,
        name: str,
        narg: int,
        func: Callable[..., str | bytes | int | float | None] | None,
        *,
        deterministic: bool = False,
    ) -> None:
        self._conn.create_function(name, narg, func, deterministic=deterministic)

    @property
    def isolation_level(self) -> str | None:
        return self._conn.isolation_level

    @property
    def in_transaction(self) -> bool:
        return self._conn.in_transaction


class Cursor:
    """A cursor whose execute also fetches, so the rows are in hand when asked for."""

    arraysize = 1

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self._cursor = connection.handle.cursor()
        self._rows: list[_Row] = []

    async def __aenter__(self) -> Cursor:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def execute(self, sql: str, parameters: Sequence[object] = ()) -> Cursor:
        if sql in _slow:
            self._rows = await self._connection.in_thread(self._run, sql, parameters)
            return self
        started, cpu = time.perf_counter(), time.thread_time()
        try:
            self._rows = self._run(sql, parameters)
        finally:
            # CPU time, as the loop's other work and other processes also delay the clock;
            # the wall clock only for waits (a lock held elsewhere, a slow disk).
            if (
                time.thread_time() - cpu > INLINE_LIMIT
                or time.perf_counter() - started > WAIT_LIMIT
            ):
                _slow.add(sql)
                log.info("sqlite.statement_moved_to_thread", sql=sql[:200])
        return self

    def _run(self, sql: str, parameters: Sequence[object]) -> list[_Row]:
        self._cursor.execute(sql, parameters)
        return self._cursor.fetchall() if self._cursor.description else []

    async def executemany(self, sql: str, parameters: Iterable[Sequence[object]]) -> Cursor:
        rows = list(parameters)
        if len(rows) > 100 or sql in _slow:
            await self._connection.in_thread(self._cursor.executemany, sql, rows)
        else:
            self._cursor.executemany(sql, rows)
        self._rows = []
        return self

    async def fetchall(self) -> list[_Row]:
        rows, self._rows = self._rows, []
        return rows

    async def fetchone(self) -> _Row | None:
        return self._rows.pop(0) if self._rows else None

    async def fetchmany(self, size: int | None = None) -> list[_Row]:
        count = size or self.arraysize
        rows, self._rows = self._rows[:count], self._rows[count:]
        return rows

    async def close(self) -> None:
        self._cursor.close()

    @property
    def description(self) -> tuple[tuple[object, ...], ...] | None:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid
