"""Faults of the worker's own writes: a claim, an outcome or a lease renewal that fails never
ends the loop (logged at error, backed off, tried again); an outcome that fails to be
written is retried, so a job the MMSC took is not run again after its lease; and /readyz
and /metrics say when jobs are due and no worker claims them."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
import structlog.testing
from prometheus_client import REGISTRY

from mmsgate import models
from mmsgate.carriers.mm7 import Mm7Carrier
from mmsgate.pipeline import deliver, fallback
from mmsgate.pipeline.deps import Deps
from mmsgate.pipeline.postback_sender import PostbackSender
from mmsgate.pipeline.worker import Outcome, RetryPolicy, Worker
from mmsgate.profiles import PROFILES
from mmsgate.store import deliveries, fallbacks, workers
from mmsgate.store import jobs as jobs_mod
from mmsgate.store.db import Database
from mmsgate.store.schema import jobs
from tests.conftest import Gateway, MediaServer
from tests.pipeline import test_fallback
from tests.pipeline.test_deliver import FakeCarrier, accept
from tests.pipeline.test_route_health import Peer, att, state_of
from tests.pipeline.test_worker import enqueue

pytestmark = pytest.mark.anyio
FAST = RetryPolicy(base=dt.timedelta(seconds=0.01), cap=dt.timedelta(seconds=0.05))
DEADLINE = 20.0  # seconds a test waits for the worker to get somewhere


class Flaky:
    """Wraps a store function so that its first `fails` calls raise, as a full disk would."""

    def __init__(self, real: Callable[..., Awaitable[Any]], fails: int) -> None:
        self.real, self.fails, self.calls = real, fails, 0
        self.before: Callable[[], None] = lambda: None  # runs before each call that succeeds

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if self.calls <= self.fails:
            raise sa.exc.OperationalError("UPDATE jobs", {}, Exception("database or disk is full"))
        self.before()
        return await self.real(*args, **kwargs)


def healthy(worker: Worker) -> float | None:
    return REGISTRY.get_sample_value("mmsgate_worker_healthy", {"worker": worker.name})


def errors(operation: str) -> float:
    found = REGISTRY.get_sample_value("mmsgate_worker_errors_total", {"operation": operation})
    return found or 0.0


async def until(condition: Callable[[], Awaitable[bool]]) -> None:
    """Poll `condition` until it holds; DEADLINE seconds without fails the test."""
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        if await condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"not reached in {DEADLINE} s")


async def done_count(db: Database) -> int:
    return (await jobs_mod.counts(db)).get(("encode_template", "done"), 0)


async def test_the_loop_outlives_failing_claims_renewals_and_outcomes(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Claims, lease renewals and outcome writes that raise are each logged at error and
    tried again; the loop goes on and every job ends done. The worker's health metric is
    0 while its claims fail, 1 once one succeeds."""
    await enqueue(db, 3)
    claim = Flaky(jobs_mod.claim, fails=3)
    renew = Flaky(jobs_mod.renew, fails=2)
    complete = Flaky(jobs_mod.complete, fails=1)
    for name, flaky in (("claim", claim), ("renew", renew), ("complete", complete)):
        monkeypatch.setattr(jobs_mod, name, flaky)
    worker = Worker(
        db,
        {models.JobKind.ENCODE_TEMPLATE: lambda _j, _d: _done()},
        None,
        lease=dt.timedelta(seconds=0.3),
        write_policy=FAST,
        idle_poll=0.02,
        beat_every=0.05,
    )
    health_at_recovery: list[float | None] = []
    claim.before = lambda: health_at_recovery.append(healthy(worker))
    before = {op: errors(op) for op in ("claim", "renew", "outcome")}
    with structlog.testing.capture_logs() as logs:
        task = asyncio.create_task(worker.run())
        await until(lambda: _all_done(db, renew))
        assert healthy(worker) == 1
        worker.stop()
        await task
    assert health_at_recovery[0] == 0  # bad while the claims failed, good after
    assert healthy(worker) == 0  # a stopped loop is not a healthy one
    failed = [e for e in logs if e["event"] == "worker.claim_failed"]
    assert [e["log_level"] for e in failed] == ["error"] * 3
    assert [e["failures"] for e in failed] == [1, 2, 3]
    assert any(e["event"] == "worker.claiming_again" for e in logs)
    assert [e["log_level"] for e in logs if e["event"] == "worker.renew_failed"] == ["error"] * 2
    assert [(e["log_level"], e["write"]) for e in logs if e["event"] == "job.write_failed"] == [
        ("error", "outcome")
    ]
    assert {op: errors(op) - before[op] for op in before} == {
        "claim": 3,
        "renew": 2,
        "outcome": 1,
    }
    assert await done_count(db) == 3


async def _all_done(db: Database, renew: Flaky) -> bool:
    return await done_count(db) == 3 and renew.calls > renew.fails


async def _done() -> Outcome:
    return Outcome()


async def test_an_outcome_never_written_is_given_up_to_the_lease(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An outcome whose write keeps failing is retried for one lease's time, then logged at
    error and left to the lease: the job is claimed again once its lease has run out."""
    await enqueue(db, 1)
    monkeypatch.setattr(jobs_mod, "complete", Flaky(jobs_mod.complete, fails=1_000_000))
    lease = dt.timedelta(seconds=0.2)
    worker = Worker(
        db,
        {models.JobKind.ENCODE_TEMPLATE: lambda _j, _d: _done()},
        None,
        lease=lease,
        write_policy=FAST,
        clock=lambda: dt.datetime.now(dt.UTC),
    )
    before = errors("outcome")
    with structlog.testing.capture_logs() as logs:
        assert await worker.run_once() == 1
    lost = [e for e in logs if e["event"] == "job.outcome_lost"]
    assert [e["log_level"] for e in lost] == ["error"]
    assert errors("outcome") - before > 1  # tried more than once before giving up
    later = dt.datetime.now(dt.UTC) + lease
    kinds = [models.JobKind.ENCODE_TEMPLATE]
    again = await jobs_mod.claim(db, "other", kinds, limit=1, lease=lease, now=later)
    assert [j.attempts for j in again] == [2]


@dataclasses.dataclass
class Delivery:
    """A worker delivering over an `mm7` route to the loopback peer, on a clock of its own."""

    worker: Worker
    db: Database
    now: list[dt.datetime]


@pytest.fixture
def peer() -> Iterator[Peer]:
    found = Peer()
    found.listen()
    try:
        yield found
    finally:
        found.close()


@pytest.fixture
async def delivery(gateway: Gateway, peer: Peer) -> AsyncIterator[Delivery]:
    db = Database(gateway.services.db.url)
    now = [dt.datetime.now(dt.UTC)]
    route = att(peer.url)
    deps = Deps(
        db,
        gateway.services.blobs,
        PostbackSender(),
        profiles=[PROFILES["default"]],
        routes=[route],
        carriers={"att": Mm7Carrier(route)},
        clock=lambda: now[0],
    )
    steps = {models.JobKind.DELIVER: deliver.deliver}
    worker = Worker(db, steps, deps, clock=lambda: now[0], write_policy=FAST)
    try:
        yield Delivery(worker, db, now)
    finally:
        await deps.carriers["att"].close()
        await deps.http.aclose()
        await db.close()


async def test_a_submit_whose_outcome_failed_to_be_written_is_not_sent_again(
    gateway: Gateway,
    media_server: MediaServer,
    peer: Peer,
    delivery: Delivery,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Marking the delivery done fails twice (a transient fault of our database): the worker
    writes it on the third try, so the job is done, and after its lease has run out nothing
    takes it over: the MMSC saw exactly one submit."""
    tracking_id = await accept(gateway, media_server)
    delivery.now[0] = dt.datetime.now(dt.UTC)  # the delivery is due
    monkeypatch.setattr(jobs_mod, "complete", Flaky(jobs_mod.complete, fails=2))
    with structlog.testing.capture_logs() as logs:
        assert await delivery.worker.run_once() == 1
    assert len(peer.bodies) == 1
    assert await state_of(delivery.db, tracking_id) == "submitted"
    assert await _deliver_job(delivery.db) == ("done", 1)
    assert [e["log_level"] for e in logs if e["event"] == "job.write_failed"] == ["error"]
    assert [e["failures"] for e in logs if e["event"] == "job.written"] == [2]

    delivery.now[0] += dt.timedelta(seconds=delivery.worker.lease.total_seconds() * 2)
    assert await delivery.worker.run_once() == 0
    assert len(peer.bodies) == 1
    assert await _deliver_job(delivery.db) == ("done", 1)


async def test_an_accepted_submit_whose_record_failed_is_not_sent_again(
    gateway: Gateway,
    media_server: MediaServer,
    peer: Peer,
    delivery: Delivery,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Recording that the MMSC took the submit (state submitted, N101) fails once: the
    step writes it again rather than failing, so the MMSC sees one submit, even once any
    retry would be due."""
    tracking_id = await accept(gateway, media_server)
    delivery.now[0] = dt.datetime.now(dt.UTC)
    monkeypatch.setattr(deliveries, "advance", Flaky(deliveries.advance, fails=1))
    with structlog.testing.capture_logs() as logs:
        assert await delivery.worker.run_once() == 1
    delivery.now[0] += dt.timedelta(hours=1)  # a retried job would be due by now
    assert await delivery.worker.run_once() == 0
    assert len(peer.bodies) == 1
    assert await state_of(delivery.db, tracking_id) == "submitted"
    assert await _deliver_job(delivery.db) == ("done", 1)
    assert [e["write"] for e in logs if e["event"] == "job.write_failed"] == ["submitted"]


async def test_a_fallback_sms_whose_record_failed_is_not_sent_again(
    gateway: Gateway, media_server: MediaServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Recording that the SMSC took the fallback SMS fails once: it is written on the next
    try, the recipient is sms_submitted, and the SMS went once."""
    tracking_id = await test_fallback.send(gateway, media_server)
    sms = test_fallback.FakeSms()
    deps = test_fallback.deps_for(gateway, FakeCarrier(test_fallback.REFUSED), sms)
    monkeypatch.setattr(fallbacks, "submitted", Flaky(fallbacks.submitted, fails=1))
    steps = {
        models.JobKind.DELIVER: deliver.deliver,
        models.JobKind.FALLBACK_SMS: fallback.send_sms,
    }
    now = [dt.datetime.now(dt.UTC)]
    worker = Worker(deps.db, steps, deps, clock=lambda: now[0], write_policy=FAST)
    try:
        with structlog.testing.capture_logs() as logs:
            for _ in range(3):  # the delivery, its SMS, then any retry of the SMS
                while await worker.run_once():
                    pass
                now[0] += dt.timedelta(hours=1)
    finally:
        await deps.http.aclose()
    assert len(sms.sent) == 1
    assert await test_fallback.state_and_codes(gateway, tracking_id) == ("sms_submitted", ["N101"])
    assert [e["write"] for e in logs if e["event"] == "job.write_failed"] == ["sms_submitted"]


async def _deliver_job(db: Database) -> tuple[str, int]:
    async with db.read() as conn:
        row = (
            await conn.execute(
                sa.select(jobs.c.state, jobs.c.attempts).where(
                    jobs.c.kind == models.JobKind.DELIVER.value
                )
            )
        ).one()
    return row.state, row.attempts


@pytest.mark.config(worker_stall_seconds=30.0)
async def test_readyz_and_metrics_say_when_due_jobs_wait_for_no_worker(gateway: Gateway) -> None:
    """Jobs due for longer than worker_stall_seconds with no worker claiming (none beat, or
    the last beat is as old): /readyz is 503 "worker stalled" and mmsgate_worker_stalled 1.
    A worker's claim makes both good again; a job due only a moment ago is no stall."""
    db = gateway.services.db
    now = dt.datetime.now(dt.UTC)
    kinds = [models.JobKind.ENCODE_TEMPLATE]
    await _due_job(db, now - dt.timedelta(seconds=5))
    assert (await gateway.client.get("/readyz")).json() == {"status": "ok"}

    await _due_job(db, now - dt.timedelta(seconds=90))
    ready = await gateway.client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["status"] == "worker stalled"
    assert ready.json()["worker"]["last_claim"] is None
    assert ready.json()["worker"]["jobs_due_since"] == (now - dt.timedelta(seconds=90)).isoformat()
    assert "mmsgate_worker_stalled 1" in (await gateway.client.get("/metrics")).text

    old = now - dt.timedelta(seconds=60)  # a worker that last claimed a minute ago
    await jobs_mod.claim(
        db, "gone", kinds, limit=0, lease=dt.timedelta(seconds=1), now=old, beat=True
    )
    ready = await gateway.client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["worker"]["last_claim"] == old.isoformat()

    worker = Worker(db, {models.JobKind.ENCODE_TEMPLATE: lambda _j, _d: _done()}, None)
    assert await worker.run_once() == 2
    assert (await gateway.client.get("/readyz")).json() == {"status": "ok"}
    scraped = (await gateway.client.get("/metrics")).text
    assert "mmsgate_worker_stalled 0" in scraped
    assert "mmsgate_worker_last_claim_seconds " in scraped


async def test_a_stopped_worker_leaves_and_a_running_one_beats(db: Database) -> None:
    """A running worker's beat is recent (even with all its slots busy); once it stops, its
    beat is gone."""
    await enqueue(db, 1)
    started, release = asyncio.Event(), asyncio.Event()

    async def busy(_job: jobs_mod.Job, _deps: object) -> Outcome:
        started.set()
        await release.wait()
        return Outcome()

    worker = Worker(
        db,
        {models.JobKind.ENCODE_TEMPLATE: busy},
        None,
        concurrency=1,
        beat_every=0.05,
        clock=lambda: dt.datetime.now(dt.UTC),
    )
    task = asyncio.create_task(worker.run())
    await started.wait()
    first = (await workers.progress(db, dt.datetime.now(dt.UTC))).last_beat
    assert first is not None

    async def beat_again() -> bool:
        last = (await workers.progress(db, dt.datetime.now(dt.UTC))).last_beat
        return last is not None and last > first

    await until(beat_again)  # its one slot is busy: the beat comes all the same
    release.set()
    worker.stop()
    await task
    assert (await workers.progress(db, dt.datetime.now(dt.UTC))).last_beat is None


async def _due_job(db: Database, run_at: dt.datetime) -> None:
    row = jobs_mod.new_job(models.JobKind.ENCODE_TEMPLATE, run_at, template_id=1)
    async with db.write() as conn:
        await conn.execute(jobs.insert(), [row])
