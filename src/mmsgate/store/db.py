"""Engines, connection set-up and migrations for SQLite (embedded) and PostgreSQL.

SQLite runs in WAL mode with synchronous=FULL so that a committed `Success` survives power
loss; writes go through one connection that begins with BEGIN IMMEDIATE, so two processes
sharing a data dir queue on the lock instead of failing a half-done transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import sqlite3
import time
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Hashable,
    Iterator,
    Mapping,
    Sequence,
)
from pathlib import Path
from typing import Any, TypeVar

import anyio.to_thread
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from mmsgate.store import hot, sqlite_driver

T = TypeVar("T")
Item = TypeVar("Item")
_Work = Callable[[AsyncConnection], Awaitable[Any]]
_Settle = Callable[[Any, BaseException | None], None]
MIGRATIONS = Path(__file__).parent / "migrations"
_PG_MIGRATION_LOCK = 0x6D6D7367  # "mmsg": advisory lock id held while migrating
HOT_READS = 16  # PostgreSQL connections a process's hot lookups use at once
CONNECT_SECONDS = 10.0  # a PostgreSQL host that never answers fails a connect this soon
IDLE_PING_SECONDS = 5.0  # a pooled connection unused this long is checked before use


class Database:
    """The engines one process uses: `reader` for queries and `writer` for transactions."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self._local_write = asyncio.Lock()
        self._pending: list[tuple[_Work, _Settle]] = []
        self._groups: dict[Hashable, _Group] = {}
        self._flusher: asyncio.Task[None] | None = None
        self._lock_fd: int | None = None
        self._hot_reader: sqlite3.Connection | None = None
        self._hot_reads = asyncio.Semaphore(HOT_READS)
        self._gathering: dict[int, dict[Any, list[asyncio.Future[Any]]]] = {}
        self._answering: set[asyncio.Task[None]] = set()
        if self.is_sqlite:
            self.writer = _sqlite_engine(url, immediate=True, pool_size=1)
            # WAL readers are cheap and do not block one another: as many as the requests a
            # process serves at once, so none waits long for a connection.
            self.reader = _sqlite_engine(url, immediate=False, pool_size=16)
            self._lock_path = _sqlite_path(url).with_suffix(".write.lock")
            self.thread_writer: sa.Engine | None = _sqlite_sync_engine(url)
            self._thread_lock_fd: int | None = None
        else:
            # Connections past the pool are opened and closed per use, and a new backend
            # costs PostgreSQL milliseconds of CPU: hot lookups, which the worker's jobs
            # make hundreds at once, take turns for HOT_READS of the pool's connections so
            # the rest is left for transactions. 32 at most a process (serve and two
            # workers stay under PostgreSQL's default max_connections of 100).
            self.writer = create_async_engine(
                url, pool_size=24, max_overflow=8, connect_args={"timeout": CONNECT_SECONDS}
            )
            _ping_after_idle(self.writer.sync_engine)
            # Reads run without BEGIN/ROLLBACK (two round trips each): PostgreSQL's READ
            # COMMITTED gives each statement its own snapshot either way.
            self.reader = self.writer.execution_options(isolation_level="AUTOCOMMIT")
            self.thread_writer = None

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A connection for queries: in a read transaction on SQLite (rolled back at the
        end), in autocommit on PostgreSQL. Never for writes: those go through `write`."""
        async with self.reader.connect() as conn:
            yield conn

    async def read_hot(self, statement: hot.Hot, params: Mapping[str, Any]) -> hot.Result:
        """Run one hot query (`store.hot`). On SQLite it runs at once on a connection of its
        own in autocommit, each query its own snapshot: no pool, no BEGIN or ROLLBACK, for
        the indexed lookups each message makes."""
        if not self.is_sqlite:
            async with self._hot_reads, self.read() as conn:
                return await hot.execute(conn, statement, params)
        if self._hot_reader is None:
            self._hot_reader = sqlite3.connect(
                _sqlite_path(self.url), isolation_level=None, check_same_thread=False
            )
            self._hot_reader.execute("PRAGMA busy_timeout=30000")
        return hot.run_sqlite(self._hot_reader, statement.compiled(self.reader.dialect), params)

    async def read_hot_row(self, one: hot.Hot, many: hot.Hot, column: str, key: Any) -> Any:
        """The first row whose `column` equals `key`, or None.

        On SQLite `one` runs at once with `key`. On PostgreSQL the lookups made while one
        gathers (until the event loop's next turn) share one query, `many`, given all their
        keys at once (`keys`): a worker's concurrent jobs and concurrent delivery reports
        each look up one row, and one round trip for the lot costs the server a fraction
        of one each."""
        if self.is_sqlite:
            return (await self.read_hot(one, {"key": key})).first()
        loop = asyncio.get_running_loop()
        waiting = self._gathering.get(id(many))
        if waiting is None:
            waiting = self._gathering[id(many)] = {}
            loop.call_soon(self._answer_gathered, many, column)
        future: asyncio.Future[Any] = loop.create_future()
        waiting.setdefault(key, []).append(future)
        return await future

    def _answer_gathered(self, many: hot.Hot, column: str) -> None:
        task = asyncio.get_running_loop().create_task(self._answer(many, column))
        self._answering.add(task)
        task.add_done_callback(self._answering.discard)

    async def _answer(self, many: hot.Hot, column: str) -> None:
        waiting = self._gathering.pop(id(many))
        found: dict[Any, Any] = {}
        failure: Exception | None = None
        try:
            rows = (await self.read_hot(many, {"keys": list(waiting)})).rows
        except Exception as exc:  # noqa: BLE001 - handed to every caller waiting on it
            failure = exc
        else:
            for row in rows:
                found.setdefault(getattr(row, column), row)
        for key, futures in waiting.items():
            for future in futures:
                if future.done():
                    continue
                if failure is None:
                    future.set_result(found.get(key))
                else:
                    future.set_exception(failure)

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A connection in a write transaction, committed when the block ends cleanly.

        On SQLite, processes sharing the database take turns through a file lock before
        BEGIN IMMEDIATE: waiting on the lock wakes a process the moment the other one
        commits, where SQLite's own busy handler would sleep in growing steps.
        """
        if not self.is_sqlite:
            async with self.writer.begin() as conn:
                yield conn
            return
        async with self._local_write:
            fd = await self._take_file_lock()
            try:
                async with self.writer.begin() as conn:
                    yield conn
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    async def batched(self, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """Run `work` in a write transaction shared with all other batched work that is
        waiting: one commit (one fsync) for the lot. The result comes once it is committed.

        For small, independent writes from many concurrent tasks (job outcomes, state
        moves). If any work in a batch fails, the batch is rolled back and each work runs
        again in a transaction of its own, so one failure fails only its own caller.
        """
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending.append((work, _settle(future)))
        self._start_flush()
        return await future

    async def batched_together(
        self,
        key: Hashable,
        item: Item,
        work: Callable[[AsyncConnection, list[Item]], Awaitable[Sequence[T]]],
    ) -> T:
        """Like `batched`, and the items given with the same `key` while a batch gathers go
        to one call of `work(conn, items)`, which returns one result per item, in order:
        one statement for many rows where `batched` would run one per caller."""
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = _Group(work)
            self._pending.append((group.run, group.settle))
            self._start_flush()
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        group.items.append(item)
        group.futures.append(future)
        return await future

    def _start_flush(self) -> None:
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="mmsgate-batched-writes")

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending, self._groups = self._pending, [], {}
            try:
                async with self.write() as conn:
                    results = [await work(conn) for work, _ in batch]
            except Exception:  # noqa: BLE001 - rerun alone, each failure goes to its caller
                await self._one_by_one(batch)
                continue
            for (_, settle), result in zip(batch, results, strict=True):
                settle(result, None)

    async def _one_by_one(self, batch: list[tuple[_Work, _Settle]]) -> None:
        for work, settle in batch:
            try:
                async with self.write() as conn:
                    result = await work(conn)
            except Exception as exc:  # noqa: BLE001 - handed to the caller
                settle(None, exc)
            else:
                settle(result, None)

    def write_in_thread(self, work: Callable[[sa.Connection], T]) -> T:
        """Run `work` in a write transaction from a worker thread (SQLite only).

        The group-commit writer uses this: the whole batch runs on plain sqlite3 in one
        thread, with no hop back to the event loop per statement, so the write lock is held
        only as long as the batch really takes.
        """
        assert self.thread_writer is not None
        if self._thread_lock_fd is None:
            self._thread_lock_fd = _open_lock(self._lock_path)
        fcntl.flock(self._thread_lock_fd, fcntl.LOCK_EX)
        try:
            with self.thread_writer.begin() as conn:
                return work(conn)
        finally:
            fcntl.flock(self._thread_lock_fd, fcntl.LOCK_UN)

    async def _take_file_lock(self) -> int:
        if self._lock_fd is None:
            self._lock_fd = _open_lock(self._lock_path)
        fd = self._lock_fd
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            await anyio.to_thread.run_sync(fcntl.flock, fd, fcntl.LOCK_EX)
        return fd

    async def migrate(self) -> list[str]:
        """Bring the schema to the newest revision; safe to call from several processes.
        Returns the revisions applied, oldest first (none when it was already current)."""
        if self.is_sqlite:
            lock_path = _sqlite_path(self.url).with_suffix(".migrate.lock")
            lock_path.parent.mkdir(parents=True, exist_ok=True)
            with _file_lock(lock_path):
                async with self.writer.begin() as conn:
                    return await conn.run_sync(_upgrade)
        async with self.writer.begin() as conn:
            await conn.execute(sa.text(f"SELECT pg_advisory_xact_lock({_PG_MIGRATION_LOCK})"))
            return await conn.run_sync(_upgrade)

    async def revisions(self) -> tuple[str | None, str]:
        """(the schema revision the database is at, or None if it has none; the newest)."""
        async with self.reader.connect() as conn:
            current = await conn.run_sync(_current_revision)
        return current, _scripts().get_current_head() or ""

    async def ping(self) -> bool:
        """Whether the database answers a trivial query."""
        try:
            async with self.reader.connect() as conn:
                await conn.execute(sa.text("SELECT 1"))
        except (OSError, sa.exc.SQLAlchemyError):
            return False
        return True

    async def close(self) -> None:
        if self._flusher is not None:
            await self._flusher  # batched writes already handed in are committed first
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        if self._hot_reader is not None:
            self._hot_reader.close()
            self._hot_reader = None
        if self.thread_writer is not None:
            self.thread_writer.dispose()
            if self._thread_lock_fd is not None:
                os.close(self._thread_lock_fd)
                self._thread_lock_fd = None
        await self.writer.dispose()
        if self.is_sqlite:  # on PostgreSQL the reader shares the writer's pool
            await self.reader.dispose()


def _settle(future: asyncio.Future[Any]) -> _Settle:
    """Hands a batched work's result (or exception) to the caller waiting on `future`."""

    def settle(result: Any, exc: BaseException | None) -> None:
        if future.done():
            return
        if exc is None:
            future.set_result(result)
        else:
            future.set_exception(exc)

    return settle


class _Group:
    """Items waiting for one call of a `batched_together` work, and their callers."""

    def __init__(self, work: Callable[[AsyncConnection, list[Any]], Awaitable[Sequence[Any]]]):
        self.work = work
        self.items: list[Any] = []
        self.futures: list[asyncio.Future[Any]] = []

    async def run(self, conn: AsyncConnection) -> Sequence[Any]:
        results = await self.work(conn, self.items)
        if len(results) != len(self.items):
            raise RuntimeError("batched_together work gave a result count unlike its items")
        return results

    def settle(self, results: Any, exc: BaseException | None) -> None:
        for n, future in enumerate(self.futures):
            _settle(future)(None if exc is not None else results[n], exc)


def _open_lock(path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    return os.open(path, os.O_RDWR | os.O_CREAT, 0o600)


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(_config())


def _current_revision(connection: sa.Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def _upgrade(connection: sa.Connection) -> list[str]:
    before = _current_revision(connection)
    config = _config()
    config.attributes["connection"] = connection
    command.upgrade(config, "head")
    after = _current_revision(connection)
    if after is None or after == before:
        return []
    applied = _scripts().iterate_revisions(after, before)  # newest first, `before` excluded
    return [script.revision for script in reversed(list(applied))]


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _ping_after_idle(engine: sa.Engine) -> None:
    """Check a pooled PostgreSQL connection before handing it out, if it sat unused for
    IDLE_PING_SECONDS: the server may have restarted or dropped it meanwhile, and a dead one
    is then replaced instead of failing the caller's first statement. Connections in
    steady use skip the round trip that checking every checkout (`pool_pre_ping`) costs."""

    @event.listens_for(engine, "checkin")
    def _returned(_dbapi_connection: Any, record: Any) -> None:
        record.info["returned_at"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _check(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        returned = record.info.get("returned_at")
        if returned is None or time.monotonic() - returned < IDLE_PING_SECONDS:
            return
        try:
            alive = engine.dialect.do_ping(dbapi_connection)
        except Exception:  # noqa: BLE001 - any failure means the connection is unusable
            alive = False
        if not alive:
            # The pool drops this connection and checks out a new one.
            raise sa.exc.DisconnectionError("pooled connection found dead after idling")


def _sqlite_path(url: str) -> Path:
    return Path(url.split("///", 1)[1])


def _sqlite_engine(url: str, *, immediate: bool, pool_size: int) -> AsyncEngine:
    path = _sqlite_path(url)
    path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=0,
        async_creator=sqlite_driver.creator(str(path), timeout=30),
    )
    _prepare_sqlite(engine.sync_engine, immediate=immediate)
    return engine


def _sqlite_sync_engine(url: str) -> sa.Engine:
    """The blocking engine of the group-commit writer thread (see `Database.write_in_thread`)."""
    plain = "sqlite:///" + url.split("///", 1)[1]
    engine = sa.create_engine(
        plain,
        pool_size=1,
        max_overflow=0,
        connect_args={"timeout": 30, "check_same_thread": False},
    )
    _prepare_sqlite(engine, immediate=True)
    return engine


def _prepare_sqlite(engine: sa.Engine, *, immediate: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control from the driver so BEGIN IMMEDIATE and SAVEPOINT work
        # (SQLAlchemy's documented recipe for the pysqlite/aiosqlite drivers).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
