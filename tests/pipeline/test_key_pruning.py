"""The worker's housekeeping deletes Idempotency-Keys past their 24 h, on both databases."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
import sqlalchemy as sa

from mmsgate import models
from mmsgate.pipeline.worker import Outcome, Worker
from mmsgate.store import accounts, idempotency
from mmsgate.store.db import Database
from mmsgate.store.schema import idempotency_keys
from tests.pipeline.conftest import T0

pytestmark = pytest.mark.anyio


async def keys_left(db: Database) -> set[str]:
    async with db.read() as conn:
        return set((await conn.execute(sa.select(idempotency_keys.c.key))).scalars())


async def test_the_worker_prunes_expired_keys_even_when_it_keeps_every_job(db: Database) -> None:
    """A worker that keeps all done jobs (`done_jobs_kept_days = 0`) still deletes the keys
    24 h old, and keeps a younger one."""
    created = await accounts.create(db, "acme", senders=["28444"])
    assert created is not None
    async with db.write() as conn:
        await conn.execute(
            idempotency_keys.insert(),
            [
                {
                    "account_id": created.account.id,
                    "key": key,
                    "fingerprint": "f" * 64,
                    "mms_id": 1,
                    "result": {"kind": "saved"},
                    "created_at": at,
                }
                for key, at in [
                    ("old", T0 - idempotency.WINDOW),
                    ("older", T0 - dt.timedelta(days=3)),
                    ("young", T0 - dt.timedelta(hours=23)),
                ]
            ],
        )

    async def done(_job: object, _deps: object) -> Outcome:
        return Outcome()

    worker = Worker(
        db,
        {models.JobKind.ENCODE_TEMPLATE: done},
        None,
        clock=lambda: T0,
        keep_done=None,
        prune_every=0.05,
    )
    task = asyncio.create_task(worker.run())
    try:
        for _ in range(200):  # 10 s at most: polled against that bound, no sleep to wait
            if await keys_left(db) == {"young"}:
                break
            await asyncio.sleep(0.05)
    finally:
        worker.stop()
        await task
    assert await keys_left(db) == {"young"}
