"""Postbacks share the worker fairly: a hanging or slow receiver holds few slots and slows
only its own account; the status line decides success; unusable URLs fail at once."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from mmsgate import models
from mmsgate.errors import AccountError
from mmsgate.pipeline import postbacks
from mmsgate.pipeline.deps import Deps
from mmsgate.pipeline.postback_sender import PostbackSender
from mmsgate.pipeline.shares import PostbackShares
from mmsgate.pipeline.worker import Worker
from mmsgate.store import accounts
from mmsgate.store.blobs import FileBlobStore
from mmsgate.store.db import Database
from mmsgate.store.schema import accounts as accounts_table
from mmsgate.store.schema import jobs

pytestmark = pytest.mark.anyio
DEADLINE = 30.0  # seconds: generous, for a loaded machine; the behaviour takes well under one
FIVE_MIB = 5 * 1024 * 1024


@dataclasses.dataclass
class Hook:
    """A postback receiver on loopback. `answer` is "ok" (200 at once), "hang" (reads the
    request, answers only once `released`) or a body kind for a 200 with a 5 MiB body ("length", "chunked",
    "endless"). Counts requests, connections open now and at most, and connections the
    gateway closed while waiting (its timeouts)."""

    answer: str
    url: str = ""
    bodies: list[bytes] = dataclasses.field(default_factory=list)
    open: int = 0
    most_open: int = 0
    given_up: int = 0
    # connections open when each request arrived, and whether the gateway had given up before
    arrivals: list[tuple[int, int]] = dataclasses.field(default_factory=list)
    changed: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    released: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    serving: set[asyncio.Task[Any]] = dataclasses.field(default_factory=set)

    async def until(self, check: Callable[[], bool]) -> None:
        async with asyncio.timeout(DEADLINE):
            while not check():
                self.changed.clear()
                await self.changed.wait()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.serving.add(task)
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").lower()
                length = int(head.split("content-length:")[1].split("\r\n")[0])
                self.bodies.append(await reader.readexactly(length))
                self.arrivals.append((self.open, self.given_up))
                self.changed.set()
                if self.answer == "hang" and await self.gave_up(reader):
                    return
                await self.respond(writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            self.open -= 1
            self.changed.set()
            writer.close()

    async def gave_up(self, reader: asyncio.StreamReader) -> bool:
        """Hold the request until `released` (False) or the gateway hangs up (True)."""
        eof = asyncio.ensure_future(reader.read())
        release = asyncio.ensure_future(self.released.wait())
        done, pending = await asyncio.wait({eof, release}, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if eof in done:
            self.given_up += 1
            self.changed.set()
            return True
        return False

    async def respond(self, writer: asyncio.StreamWriter) -> None:
        if self.answer in ("ok", "hang"):
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        elif self.answer == "length":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % FIVE_MIB)
            writer.write(b"x" * FIVE_MIB)
        elif self.answer == "chunked":
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            for _ in range(5):
                writer.write(b"100000\r\n" + b"x" * (1024 * 1024) + b"\r\n")
            writer.write(b"0\r\n\r\n")
        else:  # "endless": a 200, then a body that never ends
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n")
            while True:
                writer.write(b"x" * 65536)
                await writer.drain()
        await writer.drain()


@contextlib.asynccontextmanager
async def hook(answer: str) -> AsyncIterator[Hook]:
    receiver = Hook(answer)
    server = await asyncio.start_server(receiver.serve, "127.0.0.1", 0)
    receiver.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/hook"
    try:
        yield receiver
    finally:
        receiver.released.set()
        server.close()
        for task in receiver.serving:
            task.cancel()
        await asyncio.gather(*receiver.serving, return_exceptions=True)


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


async def account_with_jobs(db: Database, name: str, sender: str, url: str, count: int) -> int:
    """An account posting to `url`, with `count` postbacks queued for it."""
    created = await accounts.create(db, name, senders=[sender], postback_url=url)
    assert created is not None
    account_id = created.account.id
    rows = [
        postbacks.postback_job(
            models.PostbackEvent(models.PostbackKind.TEMPLATE, account_id, "N003", mms_id=i), now()
        )
        for i in range(count)
    ]
    async with db.write() as conn:
        await conn.execute(jobs.insert(), rows)
    return account_id


def worker_for(db: Database, concurrency: int, timeout: float, **shares: Any) -> Worker:
    deps = Deps(
        db,
        FileBlobStore(Path(tempfile.mkdtemp())),
        PostbackSender(allow_private_networks=True, timeout=timeout),
        postback_shares=PostbackShares(**shares)
        if shares
        else PostbackShares.for_worker(concurrency, 16),
    )
    steps = {models.JobKind.POSTBACK: postbacks.send_postback}
    return Worker(db, steps, deps, concurrency=concurrency, idle_poll=0.05)


@contextlib.asynccontextmanager
async def running(worker: Worker, *hooks: Hook) -> AsyncIterator[None]:
    """The worker running until the block ends; then the hooks answer what they hold."""
    task = asyncio.create_task(worker.run())
    try:
        yield
    finally:
        worker.stop()
        for receiver in hooks:
            receiver.released.set()
        await task
        await worker.deps.http.aclose()


async def job_states(db: Database) -> list[tuple[str, int, str | None]]:
    async with db.read() as conn:
        rows = await conn.execute(
            sa.select(jobs.c.state, jobs.c.attempts, jobs.c.last_error).order_by(jobs.c.id)
        )
        return [(r.state, r.attempts, r.last_error) for r in rows]


async def test_a_hanging_receiver_does_not_delay_another_accounts_postbacks(db: Database) -> None:
    """With account A's receiver hanging on 40 postbacks, account B's postbacks all arrive
    while A's are still hanging (none timed out yet), and A holds only its host's share."""
    async with hook("hang") as slow, hook("ok") as fine:
        await account_with_jobs(db, "a", "1111", slow.url, 40)
        await account_with_jobs(db, "b", "2222", fine.url, 5)
        worker = worker_for(db, concurrency=16, timeout=120.0)
        async with running(worker, slow):
            await fine.until(lambda: len(fine.bodies) == 5)
            assert slow.given_up == 0
            assert 1 <= slow.most_open <= worker.deps.postback_shares.per_host
        assert sorted(fine.bodies) == sorted(
            postbacks.template_postback("N003", i) for i in range(5)
        )


async def test_a_timing_out_receiver_gets_fewer_concurrent_postbacks(db: Database) -> None:
    """A receiver that lets every postback time out gets its host's share at first, then
    one postback at a time: never more connections after a timeout than before."""
    async with hook("hang") as slow:
        await account_with_jobs(db, "a", "1111", slow.url, 30)
        worker = worker_for(db, concurrency=32, timeout=0.3, per_host=4, total=16)
        async with running(worker, slow):
            await slow.until(lambda: sum(gone >= 4 for _, gone in slow.arrivals) >= 6)
        before = [open_ for open_, gone in slow.arrivals if gone == 0]
        after = [open_ for open_, gone in slow.arrivals if gone >= 4]
        assert max(before) == 4
        # one in flight, and at most the one just given up on not yet seen closed
        assert max(after) <= 2
    states = await job_states(db)
    # all waiting for another try (one may have been answered as the receiver let go)
    assert {state for state, _, _ in states} <= {"pending", "done"}
    # a job turned away for want of a turn was not tried: it spent no attempt
    assert sum(attempts for _, attempts, _ in states) == len(slow.bodies)


@pytest.mark.parametrize("body", ["length", "chunked", "endless"])
async def test_a_2xx_with_a_huge_body_is_delivered_once(db: Database, body: str) -> None:
    """A 200 whose body is 5 MiB (by Content-Length, chunked, or never ending) counts as
    delivered at its status line: posted once, the job done."""
    async with hook(body) as receiver:
        await account_with_jobs(db, "a", "1111", receiver.url, 1)
        worker = worker_for(db, concurrency=4, timeout=10.0)
        started = time.monotonic()
        assert await worker.run_once() == 1
        assert time.monotonic() - started < 10.0  # not a timeout that happened to pass
        assert await worker.run_once() == 0
        assert len(receiver.bodies) == 1
        assert [state for state, _, _ in await job_states(db)] == ["done"]
        await worker.deps.http.aclose()


@pytest.mark.parametrize("url", ["file:///etc/passwd", "gopher://example.com/", "http:///x"])
async def test_a_stored_url_no_postback_can_reach_fails_at_once(db: Database, url: str) -> None:
    """An account whose stored postback URL is not http(s) (data from before URLs were
    checked) has its postback failed at the first attempt, not retried for 24 hours."""
    await account_with_jobs(db, "a", "1111", "https://example.com/hook", 1)
    async with db.write() as conn:
        await conn.execute(sa.update(accounts_table).values(postback_url=url))
    worker = worker_for(db, concurrency=4, timeout=10.0)
    assert await worker.run_once() == 1
    [(state, attempts, error)] = await job_states(db)
    assert (state, attempts) == ("dead", 1)
    assert error is not None
    assert url in error
    assert "http" in error
    await worker.deps.http.aclose()


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.com/x", "http:///x"])
async def test_a_url_no_postback_can_reach_is_refused_when_set(db: Database, url: str) -> None:
    """Creating an account, or updating one, with a postback URL that is not http(s) is
    refused with the reason; the account keeps its URL."""
    with pytest.raises(AccountError, match="http:// or https://"):
        await accounts.create(db, "a", senders=["1111"], postback_url=url)
    assert await accounts.by_name(db, "a") is None
    await accounts.create(db, "a", senders=["1111"], postback_url="https://example.com/h")
    with pytest.raises(AccountError, match=r"not an http or https URL|has no host"):
        await accounts.update(db, "a", postback_url=url)
    found = await accounts.by_name(db, "a")
    assert found is not None
    assert found.postback_url == "https://example.com/h"
