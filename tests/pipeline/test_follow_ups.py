"""Follow-up jobs: a step's Outcome names them, the worker queues them with the job's
completion, once, and only while it still holds the job; and retrying for ever."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import sqlalchemy as sa

from mmsgate import models
from mmsgate.pipeline.worker import FOREVER, Outcome, RetryPolicy, Worker
from mmsgate.store import jobs as jobs_mod
from mmsgate.store.db import Database
from mmsgate.store.jobs import FollowUp
from mmsgate.store.schema import jobs
from tests.pipeline.conftest import T0, Clock
from tests.pipeline.test_worker import enqueue

pytestmark = pytest.mark.anyio
K = models.JobKind
LEASE = dt.timedelta(seconds=30)


async def queue(db: Database) -> list[tuple[str, str, str | None, Any]]:
    async with db.read() as conn:
        rows = await conn.execute(
            sa.select(jobs.c.kind, jobs.c.state, jobs.c.tracking_id, jobs.c.payload).order_by(
                jobs.c.id
            )
        )
        return [(r.kind, r.state, r.tracking_id, r.payload) for r in rows]


async def test_a_done_jobs_follow_ups_are_queued_and_run_once(db: Database) -> None:
    """A step that ends with two follow-ups: both are queued pending with the job done, and
    the next round runs each of them once."""
    await enqueue(db, 1)
    ran: list[tuple[str | None, Any]] = []

    async def encode(job: jobs_mod.Job, _deps: object) -> Outcome:
        return Outcome.then(
            FollowUp(K.POSTBACK, tracking_id="t-1", payload={"n": 1}),
            FollowUp(K.POSTBACK, tracking_id="t-2"),
        )

    async def postback(job: jobs_mod.Job, _deps: object) -> Outcome:
        ran.append((job.tracking_id, job.payload))
        return Outcome()

    steps = {K.ENCODE_TEMPLATE: encode, K.POSTBACK: postback}
    worker = Worker(db, steps, None, clock=Clock())  # type: ignore[arg-type]
    assert await worker.run_once() == 1
    assert await queue(db) == [
        ("encode_template", "done", None, None),
        ("postback", "pending", "t-1", {"n": 1}),
        ("postback", "pending", "t-2", None),
    ]
    assert await worker.run_once() == 2
    assert await worker.run_once() == 0
    assert sorted(ran, key=str) == [("t-1", {"n": 1}), ("t-2", None)]


async def test_a_taken_over_job_queues_no_follow_up(db: Database) -> None:
    """A worker whose lease ran out, and whose job another took, queues nothing on
    completing: only the holder's completion queues the follow-up, so it is queued once."""
    await enqueue(db, 1)
    kinds = [K.ENCODE_TEMPLATE]
    [mine] = await jobs_mod.claim(db, "slow", kinds, limit=1, lease=LEASE, now=T0)
    later = T0 + 2 * LEASE
    [theirs] = await jobs_mod.claim(db, "other", kinds, limit=1, lease=LEASE, now=later)
    follow_up = FollowUp(K.POSTBACK, tracking_id="t-1")
    assert not await jobs_mod.complete(db, mine, "slow", later, follow_ups=[follow_up])
    assert [k for k, *_ in await queue(db)] == ["encode_template"]
    assert await jobs_mod.complete(db, theirs, "other", later, follow_ups=[follow_up])
    assert await queue(db) == [
        ("encode_template", "done", None, None),
        ("postback", "pending", "t-1", None),
    ]


async def test_a_completion_that_fails_queues_nothing(db: Database) -> None:
    """A follow-up the database cannot take fails the completion with it: the job stays
    running (its lease will bring it back) and nothing half-written is queued."""
    await enqueue(db, 1)
    [job] = await jobs_mod.claim(db, "w", [K.ENCODE_TEMPLATE], limit=1, lease=LEASE, now=T0)
    unstorable = FollowUp(K.POSTBACK, tracking_id="t-1", payload={"x": object()})
    with pytest.raises(sa.exc.StatementError, match="not JSON serializable"):
        await jobs_mod.complete(db, job, "w", T0, follow_ups=[unstorable])
    assert await queue(db) == [("encode_template", "running", None, None)]


def test_only_a_done_outcome_has_follow_ups() -> None:
    """A retry naming follow-ups is refused: they would be queued again at every try."""
    with pytest.raises(ValueError, match="follow-ups"):
        Outcome(done=False, error="busy", follow_ups=(FollowUp(K.POSTBACK),))


async def test_forever_retries_past_any_count(db: Database) -> None:
    """Under FOREVER a job tried two million times is retried again (its backoff capped),
    not buried; a counted policy ends at its last attempt."""
    await enqueue(db, 2)
    async with db.write() as conn:
        await conn.execute(jobs.update().values(attempts=2_000_000))

    async def busy(job: jobs_mod.Job, _deps: object) -> Outcome:
        return Outcome.retry("busy")

    steps = {K.ENCODE_TEMPLATE: busy}
    worker = Worker(db, steps, None, clock=Clock(), policy=FOREVER)  # type: ignore[arg-type]
    assert await worker.run_once() == 2
    assert [s for _, s, _, _ in await queue(db)] == ["pending", "pending"]
    assert not FOREVER.exhausted(10**12)
    assert FOREVER.delay(10**9) <= FOREVER.cap * 1.2  # capped, not an overflow
    assert RetryPolicy(max_attempts=3).exhausted(3)
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
