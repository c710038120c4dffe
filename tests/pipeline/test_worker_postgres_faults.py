"""A PostgreSQL server that stops taking writes under a running worker: the loop outlives
every failed claim and works the queue again once writes are back, without a restart."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import os

import asyncpg
import pytest
import structlog.testing

from mmsgate import models
from mmsgate import settings as settings_mod
from mmsgate.pipeline.worker import Outcome, Worker
from mmsgate.store import jobs as jobs_mod
from mmsgate.store import workers
from mmsgate.store.db import Database
from tests import pg
from tests.pipeline.test_worker_faults import FAST, healthy, until

_names = itertools.count()
pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(
        "postgresql" not in os.environ.get("MMSGATE_TEST_BACKENDS", "sqlite,postgresql"),
        reason="PostgreSQL not among MMSGATE_TEST_BACKENDS",
    ),
]


class Server:
    """The test database, and a way to make the server refuse (or take again) its writes."""

    def __init__(self, admin_url: str, name: str, url: str) -> None:
        self.admin_url, self.name, self.url = admin_url, name, url

    async def read_only(self, on: bool) -> None:
        """Every session opened from now on is read-only (or not); the open ones are ended,
        as a failover to a read-only replica would end them."""
        admin = await asyncpg.connect(self.admin_url + "/postgres")
        try:
            setting = "SET default_transaction_read_only = on" if on else "RESET ALL"
            await admin.execute(f'ALTER DATABASE "{self.name}" {setting}')
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = $1 AND pid <> pg_backend_pid()",
                self.name,
            )
        finally:
            await admin.close()

    async def enqueue(self) -> None:
        """Queue a due job in a session of its own that may write, read-only or not."""
        conn = await asyncpg.connect(self.admin_url + "/" + self.name)
        try:
            await conn.execute("SET default_transaction_read_only = off")
            await conn.execute(
                "INSERT INTO jobs (kind, state, attempts, run_at, created_at, updated_at)"
                " VALUES ($1, 'pending', 0, now(), now(), now())",
                models.JobKind.ENCODE_TEMPLATE.value,
            )
        finally:
            await conn.close()


@pytest.fixture
def server(pg_admin_url: str, pg_template: str) -> Server:
    name = f"ro{os.getpid()}_{next(_names)}"
    url = settings_mod.normalize_database_url(pg.create_database(pg_admin_url, name, pg_template))
    return Server(pg_admin_url, name, url)


async def test_a_server_refusing_writes_does_not_end_the_worker(server: Server) -> None:
    """The server turns read-only under a running worker: its claims fail (logged at error,
    the worker unhealthy, the queue stalled by its beats) while a job waits; writes back,
    the same worker claims and runs the job, healthy again."""
    db = Database(server.url)
    probe = Database(server.url)  # the test's own reads, on connections opened after the switch
    ran = asyncio.Event()

    async def step(_job: jobs_mod.Job, _deps: object) -> Outcome:
        ran.set()
        return Outcome()

    worker = Worker(
        db,
        {models.JobKind.ENCODE_TEMPLATE: step},
        None,
        write_policy=FAST,
        idle_poll=0.02,
        beat_every=0.05,
    )
    stall = dt.timedelta(seconds=0.5)
    try:
        with structlog.testing.capture_logs() as logs:
            task = asyncio.create_task(worker.run())
            await until(lambda: _beaten(db))
            await server.read_only(True)
            await server.enqueue()

            async def stalled() -> bool:
                now = dt.datetime.now(dt.UTC)
                return (await workers.progress(probe, now)).stalled(now, stall)

            await until(stalled)
            assert not ran.is_set()
            assert healthy(worker) == 0
            await server.read_only(False)
            async with asyncio.timeout(20):
                await ran.wait()
            await until(lambda: _is_healthy(worker))
            worker.stop()
            await task
    finally:
        await db.close()
        await probe.close()
    failed = [e for e in logs if e["event"] == "worker.claim_failed"]
    assert failed
    assert {e["log_level"] for e in failed} == {"error"}
    assert any("read-only" in e["error"] for e in failed)
    assert (await _done(server)) == 1


async def _beaten(db: Database) -> bool:
    return (await workers.progress(db, dt.datetime.now(dt.UTC))).last_beat is not None


async def _is_healthy(worker: Worker) -> bool:
    return healthy(worker) == 1


async def _done(server: Server) -> int:
    conn = await asyncpg.connect(server.admin_url + "/" + server.name)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM jobs WHERE state = 'done'"))
    finally:
        await conn.close()
