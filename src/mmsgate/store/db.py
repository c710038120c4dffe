"""The database: engines, transactions, group commit, hot statements and migrations, for
SQLite (embedded) and PostgreSQL. The one module of `store/` that knows which backend runs:
each backend's machinery below SQLAlchemy is in its own module (`sqlite_driver`,
`pg_driver`), and a statement spelled per backend is a `PerDialect` the Database picks from.

SQLite runs in WAL mode with synchronous=FULL so that a committed `Success` survives power
loss; writes go through one connection that begins with BEGIN IMMEDIATE, so two processes
sharing a data dir queue on the lock instead of failing a half-done transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import functools
import os
import sqlite3
import time
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Hashable,
    Iterator,
    Sequence,
)
from pathlib import Path
from typing import Generic, Protocol, TypeVar, cast, overload

import anyio.to_thread
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

from mmsgate.store import hot, pg_driver, sqlite_driver
from mmsgate.store.rows import Row

T = TypeVar("T")
Item = TypeVar("Item")
# What `Database.batched` runs: the items of one group in a write transaction, a result each.
GroupWork = Callable[[AsyncConnection, list[Item]], Awaitable[Sequence[T]]]
_Gathered = dict[object, list["asyncio.Future[hot.Result]"]]  # lookups waiting, by key
MIGRATIONS = Path(__file__).parent / "migrations"
_PG_MIGRATION_LOCK = 0x6D6D7367  # "mmsg": advisory lock id held while migrating
HOT_READS = 16  # PostgreSQL connections a process's hot lookups use at once
CONNECT_SECONDS = 10.0  # a PostgreSQL host that never answers fails a connect this soon
IDLE_PING_SECONDS = 5.0  # a pooled connection unused this long is checked before use


@dataclasses.dataclass(frozen=True, slots=True)
class PerDialect(Generic[T]):
    """One thing in each backend's spelling (an upsert, a claim); `Database.pick` chooses."""

    sqlite: T
    postgresql: T


class Database:
    """The database one process uses. Its ways in:

    - `read()`: a connection for queries; `write()`: one in a write transaction;
    - `batched(work)`: group commit, work of many concurrent callers in one transaction;
    - `run(statement, params)`: a hot statement (`store.hot`), on the fastest path the
      backend has, on its own or in a caller's transaction;
    - `pick(PerDialect(...))`: the backend's spelling of a statement.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._sqlite = url.startswith("sqlite")
        self._local_write = asyncio.Lock()
        self._pending: list[_Batched] = []
        self._groups: dict[Hashable, _Group[object, object]] = {}
        self._flusher: asyncio.Task[None] | None = None
        self._lock_fd: int | None = None
        self._hot_reader: sqlite3.Connection | None = None
        self._hot_reads = asyncio.Semaphore(HOT_READS)
        self._gathering: dict[int, _Gathered] = {}
        self._answering: set[asyncio.Task[None]] = set()
        if self._sqlite:
            self.writer = _sqlite_engine(url, immediate=True, pool_size=1)
            # WAL readers are cheap and do not block one another: as many as the requests a
            # process serves at once, so none waits long for a connection.
            self.reader = _sqlite_engine(url, immediate=False, pool_size=16)
            self._lock_path = _sqlite_path(url).with_suffix(".write.lock")
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

    @property
    def embedded(self) -> bool:
        """Whether the database is this data dir's own file (SQLite): nobody else would
        migrate it, and processes sharing it take turns to write."""
        return self._sqlite

    def pick(self, choice: PerDialect[T]) -> T:
        """This backend's one of `choice`."""
        return choice.sqlite if self._sqlite else choice.postgresql

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A connection for queries: in a read transaction on SQLite (rolled back at the
        end), in autocommit on PostgreSQL. Never for writes: those go through `write`."""
        async with self.reader.connect() as conn:
            yield conn

    async def run(
        self,
        statement: hot.Hot | hot.Lookup,
        params: hot.Params,
        conn: AsyncConnection | None = None,
    ) -> hot.Result:
        """Run a hot statement (`store.hot`) in `conn`'s transaction, or with no `conn` as a
        read of its own. A `Lookup` takes `{"key": …}` and gives the rows of that key.

        A read of its own on SQLite runs at once on a connection of its own in
        autocommit, each query its own snapshot: no pool, no BEGIN or ROLLBACK, for the
        indexed lookups each message makes. On PostgreSQL, the lookups made while one
        gathers (until the event loop's next turn) share one query, the lookup's `many`,
        given all their keys at once: a worker's concurrent jobs and concurrent delivery
        reports each look up one row, and one round trip for the lot costs the server a
        fraction of one each."""
        if isinstance(statement, hot.Lookup):
            if conn is not None or self._sqlite:
                return await self.run(statement.one, params, conn)
            return await self._gather(statement, params["key"])
        if conn is not None:
            if self._sqlite:
                driver = hot.driver_connection(conn)
                assert isinstance(driver, sqlite_driver.Connection)
                return sqlite_driver.run(driver.handle, statement.compiled(conn.dialect), params)
            return await pg_driver.run(conn, statement, params)
        if not self._sqlite:
            async with self._hot_reads, self.read() as read:
                return await pg_driver.run(read, statement, params)
        if self._hot_reader is None:
            self._hot_reader = sqlite_driver.reader(_sqlite_path(self.url))
        compiled = statement.compiled(self.reader.dialect)
        return sqlite_driver.run(self._hot_reader, compiled, params)

    async def _gather(self, lookup: hot.Lookup, key: object) -> hot.Result:
        loop = asyncio.get_running_loop()
        waiting = self._gathering.get(id(lookup.many))
        if waiting is None:
            waiting = self._gathering[id(lookup.many)] = {}
            loop.call_soon(self._answer_gathered, lookup)
        future: asyncio.Future[hot.Result] = loop.create_future()
        waiting.setdefault(key, []).append(future)
        return await future

    def _answer_gathered(self, lookup: hot.Lookup) -> None:
        task = asyncio.get_running_loop().create_task(self._answer(lookup))
        self._answering.add(task)
        task.add_done_callback(self._answering.discard)

    async def _answer(self, lookup: hot.Lookup) -> None:
        waiting = self._gathering.pop(id(lookup.many))
        found: dict[object, list[Row]] = {}
        failure: Exception | None = None
        try:
            rows = (await self.run(lookup.many, {"keys": list(waiting)})).rows
        except Exception as exc:  # noqa: BLE001 - handed to every caller waiting on it
            failure = exc
        else:
            for row in rows:
                found.setdefault(getattr(row, lookup.column), []).append(row)
        for key, futures in waiting.items():
            mine = found.get(key, [])
            for future in futures:
                if future.done():
                    continue
                if failure is None:
                    future.set_result(hot.Result(mine, len(mine)))
                else:
                    future.set_exception(failure)

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A connection in a write transaction, committed when the block ends cleanly.

        On SQLite, processes sharing the database take turns through a file lock before
        BEGIN IMMEDIATE: waiting on the lock wakes a process the moment the other one
        commits, where SQLite's own busy handler would sleep in growing steps.
        """
        if not self._sqlite:
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

    @overload
    async def batched(self, work: Callable[[AsyncConnection], Awaitable[T]]) -> T: ...

    @overload
    async def batched(
        self,
        work: GroupWork[Item, T],
        *,
        key: Hashable,
        item: Item,
        most: int | None = None,
    ) -> T: ...

    async def batched(
        self,
        work: Callable[..., Awaitable[object]],
        *,
        key: Hashable | None = None,
        item: object = None,
        most: int | None = None,
    ) -> object:
        """Group commit: run `work` in a write transaction shared with all other batched
        work that is waiting, one commit (one fsync) for the lot. The result comes once it
        is committed.

        `work(conn)` alone, for small, independent writes from many concurrent tasks (job
        outcomes, state moves). With a `key`, the items given with that key while a batch
        gathers (up to `most` a call) go to one call of `work(conn, items)`, which returns
        one result per item, in order: one statement for many rows where plain work would
        run one per caller.

        If anything in a batch fails, the batch is rolled back and each item runs again
        in a transaction of its own, so one failure fails only its own caller.
        """
        if key is None:
            alone = _Alone(work)
            self._pending.append(alone)
            future = alone.future
        else:
            group = self._groups.get(key)
            if group is None or (most is not None and len(group.items) >= most):
                group = self._groups[key] = _Group(cast(GroupWork[object, object], work))
                self._pending.append(group)
            future = group.add(item)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="mmsgate-batched-writes")
        return await future

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending, self._groups = self._pending, [], {}
            try:
                async with self.write() as conn:
                    settles = [await group.run(conn) for group in batch]
            except Exception:  # noqa: BLE001 - rerun alone, each failure goes to its caller
                for group in batch:
                    await group.run_each(self.write)
                continue
            for settle in settles:
                settle()

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
        if self._sqlite:
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
        await self.writer.dispose()
        if self._sqlite:  # on PostgreSQL the reader shares the writer's pool
            await self.reader.dispose()


def _settle(future: asyncio.Future[T], result: T | None, exc: BaseException | None) -> None:
    """Hands a batched work's result (or exception) to the caller waiting on `future`."""
    if future.done():
        return
    if exc is None:
        future.set_result(result)  # type: ignore[arg-type]  # None only with an exception
    else:
        future.set_exception(exc)


class _Batched(Protocol):
    """Work waiting in a batch (`Database.batched`), whatever its items and results."""

    async def run(self, conn: AsyncConnection) -> Callable[[], None]:
        """Run in the batch's transaction; what hands the results over once committed."""

    async def run_each(
        self, write: Callable[[], contextlib.AbstractAsyncContextManager[AsyncConnection]]
    ) -> None:
        """Run each item in a transaction of its own, handing over its result or error."""


class _Alone(Generic[T]):
    """Plain batched work and its caller."""

    __slots__ = ("future", "work")

    def __init__(self, work: Callable[[AsyncConnection], Awaitable[T]]) -> None:
        self.work = work
        self.future: asyncio.Future[T] = asyncio.get_running_loop().create_future()

    async def run(self, conn: AsyncConnection) -> Callable[[], None]:
        return functools.partial(_settle, self.future, await self.work(conn), None)

    async def run_each(
        self, write: Callable[[], contextlib.AbstractAsyncContextManager[AsyncConnection]]
    ) -> None:
        try:
            async with write() as conn:
                result = await self.work(conn)
        except Exception as exc:  # noqa: BLE001 - handed to the caller
            _settle(self.future, None, exc)
        else:
            _settle(self.future, result, None)


class _Group(Generic[Item, T]):
    """Items waiting for one call of a batched work, and their callers."""

    def __init__(self, work: GroupWork[Item, T]) -> None:
        self.work = work
        self.items: list[Item] = []
        self.futures: list[asyncio.Future[T]] = []

    def add(self, item: Item) -> asyncio.Future[T]:
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self.items.append(item)
        self.futures.append(future)
        return future

    async def run(self, conn: AsyncConnection) -> Callable[[], None]:
        results = await self._call(conn, self.items)
        return functools.partial(self._settle_all, results)

    async def run_each(
        self, write: Callable[[], contextlib.AbstractAsyncContextManager[AsyncConnection]]
    ) -> None:
        for item, future in zip(self.items, self.futures, strict=True):
            try:
                async with write() as conn:
                    (result,) = await self._call(conn, [item])
            except Exception as exc:  # noqa: BLE001 - handed to the caller
                _settle(future, None, exc)
            else:
                _settle(future, result, None)

    async def _call(self, conn: AsyncConnection, items: list[Item]) -> Sequence[T]:
        results = await self.work(conn, items)
        if len(results) != len(items):
            raise RuntimeError("batched work gave a result count unlike its items")
        return results

    def _settle_all(self, results: Sequence[T]) -> None:
        for future, result in zip(self.futures, results, strict=True):
            _settle(future, result, None)


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
    def _returned(_dbapi_connection: DBAPIConnection, record: ConnectionPoolEntry) -> None:
        record.info["returned_at"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _check(
        dbapi_connection: DBAPIConnection, record: ConnectionPoolEntry, _proxy: object
    ) -> None:
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
        async_creator=sqlite_driver.creator(str(path)),
    )
    _prepare_sqlite(engine.sync_engine, immediate=immediate)
    return engine


def _prepare_sqlite(engine: sa.Engine, *, immediate: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: DBAPIConnection, _record: object) -> None:
        # The driver connection is in autocommit already (`sqlite_driver`), so BEGIN
        # IMMEDIATE and SAVEPOINT are SQLAlchemy's to send.
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
