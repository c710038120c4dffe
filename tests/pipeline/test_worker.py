"""The worker loop over the real jobs table: claim, outcome, retry, bury, lease take-over."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
import sqlalchemy as sa

from mmsgate import models
from mmsgate.pipeline.worker import Outcome, RetryPolicy, Worker
from mmsgate.store import jobs as jobs_mod
from mmsgate.store.db import Database
from mmsgate.store.schema import jobs
from tests.pipeline.conftest import T0, Clock

pytestmark = pytest.mark.anyio


async def enqueue(
    db: Database, n: int, kind: models.JobKind = models.JobKind.ENCODE_TEMPLATE
) -> None:
    rows = [
        {
            "kind": kind.value,
            "state": "pending",
            "template_id": i,
            "attempts": 0,
            "run_at": T0,
            "created_at": T0,
            "updated_at": T0,
        }
        for i in range(n)
    ]
    async with db.write() as conn:
        await conn.execute(jobs.insert(), rows)


async def states(db: Database) -> list[tuple[int | None, str, int]]:
    async with db.read() as conn:
        rows = await conn.execute(
            sa.select(jobs.c.template_id, jobs.c.state, jobs.c.attempts).order_by(jobs.c.id)
        )
        return [tuple(r) for r in rows]  # type: ignore[misc]


async def test_done_jobs_are_recorded_once(db: Database) -> None:
    """Each due job runs once and ends `done`."""
    await enqueue(db, 5)
    seen: list[int | None] = []

    async def step(job: jobs_mod.Job, _deps: object) -> Outcome:
        seen.append(job.template_id)
        return Outcome()

    clock = Clock()
    worker = Worker(db, {models.JobKind.ENCODE_TEMPLATE: step}, None, clock=clock)
    assert await worker.run_once() == 5
    assert await worker.run_once() == 0
    assert sorted(seen) == [0, 1, 2, 3, 4]  # type: ignore[type-var]
    assert {s for _, s, _ in await states(db)} == {"done"}


async def test_crash_is_retried_with_backoff_then_buried(db: Database) -> None:
    """A crashing step is retried after a growing delay and buried after max attempts."""
    await enqueue(db, 1)

    async def step(_job: jobs_mod.Job, _deps: object) -> Outcome:
        raise RuntimeError("boom")

    clock = Clock()
    policy = RetryPolicy(base=dt.timedelta(seconds=10), max_attempts=3)
    worker = Worker(db, {models.JobKind.ENCODE_TEMPLATE: step}, None, clock=clock, policy=policy)
    assert await worker.run_once() == 1
    assert await worker.run_once() == 0  # not due yet
    async with db.read() as conn:
        row = (await conn.execute(sa.select(jobs))).one()
    assert row.state == "pending"
    assert "RuntimeError: boom" in row.last_error
    assert dt.timedelta(seconds=10) <= row.run_at - T0 <= dt.timedelta(seconds=12)
    for _ in range(2):
        clock.now += dt.timedelta(minutes=5)
        assert await worker.run_once() == 1
    assert await states(db) == [(0, "dead", 3)]


async def test_step_may_give_up_or_ask_for_a_later_retry(db: Database) -> None:
    """Outcome.failed buries at once; Outcome.retry(after=…) sets the next attempt time."""
    await enqueue(db, 2)

    async def step(job: jobs_mod.Job, _deps: object) -> Outcome:
        if job.template_id == 0:
            return Outcome.failed("not fixable")
        return Outcome.retry("busy", after=dt.timedelta(hours=1))

    clock = Clock()
    worker = Worker(db, {models.JobKind.ENCODE_TEMPLATE: step}, None, clock=clock)
    await worker.run_once()
    async with db.read() as conn:
        rows = (await conn.execute(sa.select(jobs).order_by(jobs.c.template_id))).all()
    assert (rows[0].state, rows[0].last_error) == ("dead", "not fixable")
    assert (rows[1].state, rows[1].run_at) == ("pending", T0 + dt.timedelta(hours=1))


async def test_abandoned_job_is_taken_over_after_its_lease(db: Database) -> None:
    """A job claimed by a worker that died is claimed again once the lease has run out,
    and the dead worker can no longer record an outcome for it."""
    await enqueue(db, 1)
    clock = Clock()
    lease = dt.timedelta(seconds=30)
    kinds = [models.JobKind.ENCODE_TEMPLATE]
    first = await jobs_mod.claim(db, "dead-worker", kinds, limit=1, lease=lease, now=clock())
    assert len(first) == 1
    assert (
        await jobs_mod.claim(
            db, "other", kinds, limit=1, lease=lease, now=clock() + dt.timedelta(seconds=29)
        )
        == []
    )
    taken = await jobs_mod.claim(
        db, "other", kinds, limit=1, lease=lease, now=clock() + dt.timedelta(seconds=31)
    )
    assert [j.id for j in taken] == [first[0].id]
    assert taken[0].attempts == 2
    assert not await jobs_mod.complete(db, first[0], "dead-worker", clock())
    assert await jobs_mod.complete(db, taken[0], "other", clock())


async def test_two_workers_share_the_queue_without_doubles(db: Database) -> None:
    """Two workers claiming at once together run every job exactly once."""
    await enqueue(db, 60)
    runs: list[int | None] = []

    async def step(job: jobs_mod.Job, _deps: object) -> Outcome:
        runs.append(job.template_id)
        await asyncio.sleep(0)
        return Outcome()

    workers = [
        Worker(db, {models.JobKind.ENCODE_TEMPLATE: step}, None, concurrency=7) for _ in range(2)
    ]

    async def drain(worker: Worker) -> None:
        while await worker.run_once():
            pass

    await asyncio.gather(*(drain(w) for w in workers))
    assert sorted(runs) == list(range(60))  # type: ignore[type-var]


async def test_run_stops_gracefully(db: Database) -> None:
    """run() returns soon after stop(), with every job it claimed recorded as done."""
    await enqueue(db, 3)
    ran = 0
    all_ran = asyncio.Event()

    async def step(_job: jobs_mod.Job, _deps: object) -> Outcome:
        nonlocal ran
        ran += 1
        if ran == 3:
            all_ran.set()
        return Outcome()

    worker = Worker(db, {models.JobKind.ENCODE_TEMPLATE: step}, None, idle_poll=0.05)
    task = asyncio.create_task(worker.run())
    async with asyncio.timeout(10):
        await all_ran.wait()
        worker.stop()
        await task
    assert (await jobs_mod.counts(db))[("encode_template", "done")] == 3


async def test_freed_slots_are_refilled_by_the_handful(db: Database) -> None:
    """While jobs are queued, the worker claims once a quarter of its slots are free, not
    once per job that ends: a claim is a write transaction."""
    await enqueue(db, 60)
    limits: list[int] = []
    ran = 0
    all_ran = asyncio.Event()

    class Counting(Worker):
        async def claim(self, limit: int) -> list[jobs_mod.Job]:
            limits.append(limit)
            return await super().claim(limit)

    async def step(_job: jobs_mod.Job, _deps: object) -> Outcome:
        nonlocal ran
        ran += 1
        if ran == 60:
            all_ran.set()
        return Outcome()

    worker = Counting(
        db, {models.JobKind.ENCODE_TEMPLATE: step}, None, concurrency=8, claim_gap=60.0
    )
    task = asyncio.create_task(worker.run())
    async with asyncio.timeout(10):
        await all_ran.wait()
        worker.stop()
        await task
    assert (await jobs_mod.counts(db))[("encode_template", "done")] == 60
    assert min(limits) >= 2  # a quarter of 8 slots


async def test_a_job_longer_than_its_lease_is_not_taken_over(db: Database) -> None:
    """A live worker renews the leases of the jobs it runs: a job that takes three leases'
    time stays its own, and no other worker claims it meanwhile."""
    await enqueue(db, 1)
    lease = dt.timedelta(seconds=0.3)
    started = asyncio.Event()
    runs = 0

    async def slow(_job: jobs_mod.Job, _deps: object) -> Outcome:
        nonlocal runs
        runs += 1
        started.set()
        await asyncio.sleep(1.0)
        return Outcome()

    worker = Worker(
        db,
        {models.JobKind.ENCODE_TEMPLATE: slow},
        None,
        lease=lease,
        clock=lambda: dt.datetime.now(dt.UTC),
    )
    task = asyncio.create_task(worker.run())
    kinds = [models.JobKind.ENCODE_TEMPLATE]
    async with asyncio.timeout(10):
        await started.wait()
        stolen = []
        for _ in range(9):  # 0.9 s: three leases' time, while the job runs
            await asyncio.sleep(0.1)
            now = dt.datetime.now(dt.UTC)
            stolen += await jobs_mod.claim(db, "other", kinds, limit=1, lease=lease, now=now)
        worker.stop()
        await task
    assert stolen == []
    assert runs == 1
    assert (await jobs_mod.counts(db))[("encode_template", "done")] == 1


async def test_a_running_worker_takes_over_a_dead_workers_job(db: Database) -> None:
    """A running worker looks for abandoned jobs every so often (not at every claim) and
    takes a dead worker's job once its lease has run out."""
    await enqueue(db, 1)
    lease = dt.timedelta(seconds=0.3)
    kinds = [models.JobKind.ENCODE_TEMPLATE]
    now = dt.datetime.now(dt.UTC)
    [dead] = await jobs_mod.claim(db, "dead-worker", kinds, limit=1, lease=lease, now=now)
    done = asyncio.Event()

    async def step(_job: jobs_mod.Job, _deps: object) -> Outcome:
        done.set()
        return Outcome()

    worker = Worker(
        db,
        {models.JobKind.ENCODE_TEMPLATE: step},
        None,
        lease=lease,
        idle_poll=0.02,
        clock=lambda: dt.datetime.now(dt.UTC),
    )
    assert worker.abandoned_every == pytest.approx(0.1)
    task = asyncio.create_task(worker.run())
    async with asyncio.timeout(10):
        await done.wait()
        worker.stop()
        await task
    assert not await jobs_mod.complete(db, dead, "dead-worker", dt.datetime.now(dt.UTC))
    assert (await jobs_mod.counts(db))[("encode_template", "done")] == 1


async def test_done_jobs_are_pruned_after_they_are_kept(db: Database) -> None:
    """Done jobs older than the cut are deleted, in batches; newer done jobs, dead jobs
    and jobs still to run stay. A worker does it on its own, every so often."""
    await enqueue(db, 7)
    old, new = T0 - dt.timedelta(days=8), T0 + dt.timedelta(days=1)
    fates = [("done", old)] * 4 + [("done", new), ("dead", old), ("pending", old)]
    async with db.write() as conn:
        for template_id, (state, run_at) in enumerate(fates):
            await conn.execute(
                jobs.update()
                .where(jobs.c.template_id == template_id)
                .values(state=state, run_at=run_at)
            )
    assert await jobs_mod.prune(db, before=T0, batch=3) == 4
    assert [(t, s) for t, s, _ in await states(db)] == [(4, "done"), (5, "dead"), (6, "pending")]

    await enqueue(db, 1)  # due at T0: done by the worker, then pruned by it a week later
    worker = Worker(
        db,
        {models.JobKind.ENCODE_TEMPLATE: lambda _j, _d: _done()},
        None,
        clock=lambda: T0 + dt.timedelta(days=8),
        keep_done=dt.timedelta(days=7),
        prune_every=0.05,
    )
    task = asyncio.create_task(worker.run())
    for _ in range(200):  # 10 s at most: the old pending job and the new one, run and pruned
        if len(await states(db)) == 2:
            break
        await asyncio.sleep(0.05)
    worker.stop()
    await task
    assert [(t, s) for t, s, _ in await states(db)] == [(4, "done"), (5, "dead")]


async def _done() -> Outcome:
    return Outcome()
