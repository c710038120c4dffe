"""The SQLite connection under SQLAlchemy's async engine: the standard `sqlite3` module,
shaped like the aiosqlite connection SQLAlchemy's `sqlite+aiosqlite` dialect drives (it is
handed over with `create_async_engine(..., async_creator=...)`).

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
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import structlog

log = structlog.get_logger(__name__)
T = TypeVar("T")
INLINE_LIMIT = 0.002  # CPU seconds; a statement slower than this moves to the thread for good
WAIT_LIMIT = 0.1  # wall seconds, the same for a statement that waited (lock, disk)
_slow: set[str] = set()  # SQL that once ran slower than INLINE_LIMIT (kept per process)


def creator(path: str, *, timeout: float = 30.0) -> Callable[[], Any]:
    """The `async_creator` for one database file."""

    async def connect() -> Connection:
        raw = sqlite3.connect(path, timeout=timeout, check_same_thread=False, isolation_level=None)
        return Connection(raw)

    return connect


class _Inline:
    """Stands in for aiosqlite's queue to its thread; SQLAlchemy's adapter puts the
    isolation-level change on it, and it runs at once."""

    def put_nowait(self, item: tuple[asyncio.Future[Any] | None, Callable[[], Any]]) -> None:
        future, function = item
        try:
            result = function()
        except Exception as exc:  # noqa: BLE001 - handed to the waiting caller
            if future is not None:
                future.set_exception(exc)
        else:
            if future is not None:
                future.set_result(result)


class Connection:
    """One SQLite connection, with the awaitable methods SQLAlchemy's adapter calls."""

    def __init__(self, raw: sqlite3.Connection) -> None:
        self._conn = raw
        self._connection: sqlite3.Connection | None = raw  # falsy once closed
        self._tx = _Inline()
        self._thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="sqlite")

    @property
    def handle(self) -> sqlite3.Connection:
        """The `sqlite3` connection itself, for statements run where the caller is."""
        return self._conn

    async def in_thread(self, function: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, function, *args)

    def cursor(self) -> Cursor:
        return Cursor(self)

    async def execute(self, sql: str, parameters: Sequence[Any] = ()) -> Cursor:
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

    async def create_function(self, *args: Any, **kwargs: Any) -> None:
        self._conn.create_function(*args, **kwargs)

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
        self._cursor = connection._conn.cursor()
        self._rows: list[Any] = []

    async def __aenter__(self) -> Cursor:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def execute(self, sql: str, parameters: Sequence[Any] = ()) -> Cursor:
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

    def _run(self, sql: str, parameters: Sequence[Any]) -> list[Any]:
        self._cursor.execute(sql, parameters)
        return self._cursor.fetchall() if self._cursor.description else []

    async def executemany(self, sql: str, parameters: Iterable[Sequence[Any]]) -> Cursor:
        rows = list(parameters)
        if len(rows) > 100 or sql in _slow:
            await self._connection.in_thread(self._cursor.executemany, sql, rows)
        else:
            self._cursor.executemany(sql, rows)
        self._rows = []
        return self

    async def fetchall(self) -> list[Any]:
        rows, self._rows = self._rows, []
        return rows

    async def fetchone(self) -> Any:
        return self._rows.pop(0) if self._rows else None

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        count = size or self.arraysize
        rows, self._rows = self._rows[:count], self._rows[count:]
        return rows

    async def close(self) -> None:
        self._cursor.close()

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid
