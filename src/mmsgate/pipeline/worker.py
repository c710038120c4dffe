"""The worker loop: claim due jobs, run each one's step, record the outcome, repeat.

Steps know nothing of the queue: each is `async def step(job, deps) -> Outcome`, and no
step calls another. The loop turns an Outcome into the job's next state: done (with the
follow-up jobs it names, queued in the transaction that marks it done, so a follow-up is
never lost and never queued twice), retried with exponential backoff and jitter, deferred
or buried. It is the only place that catches every exception (a step that crashes is retried, then
buried, and the worker goes on). Its own writes to the queue may fail too (a full disk, a
database refusing writes): a claim, an outcome or a lease renewal that fails is logged at
error and tried again, and the loop never ends for it. Its claims carry its beat
(`store.workers`), by which any process tells whether the queue is being worked. Stopping
is graceful: claimed jobs finish first.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import math
import random
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar

import structlog
from structlog.typing import FilteringBoundLogger

from mmsgate import metrics, models
from mmsgate.pipeline.deps import Deps
from mmsgate.store import idempotency, jobs, workers
from mmsgate.store.db import Database
from mmsgate.store.jobs import FollowUp

log = structlog.get_logger(__name__)
T = TypeVar("T")


@dataclasses.dataclass(frozen=True, slots=True)
class Outcome:
    """What a step says happened: done, try again later (`retry_after`), or give up; or
    `deferred`: not tried at all (its turn was not there), due again after `retry_after`
    without counting an attempt. A done job may name `follow_ups`: the jobs its work calls
    for next, which the worker queues with the job's completion."""

    done: bool = True
    retry_after: dt.timedelta | None = None
    error: str | None = None
    give_up: bool = False
    deferred: bool = False
    follow_ups: tuple[FollowUp, ...] = ()

    def __post_init__(self) -> None:
        if self.follow_ups and not self.done:
            raise ValueError("only a done job has follow-ups")  # a retry would queue them twice

    @classmethod
    def then(cls, *follow_ups: FollowUp) -> Outcome:
        """Done, and these jobs are to run next."""
        return cls(follow_ups=follow_ups)

    @classmethod
    def retry(cls, error: str, after: dt.timedelta | None = None) -> Outcome:
        return cls(done=False, retry_after=after, error=error)

    @classmethod
    def failed(cls, error: str) -> Outcome:
        return cls(done=False, error=error, give_up=True)

    @classmethod
    def later(cls, after: dt.timedelta) -> Outcome:
        return cls(done=False, retry_after=after, deferred=True)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


Step = Callable[[jobs.Job, Deps], Awaitable[Outcome]]


@dataclasses.dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Backoff base * 2^(attempt-1), capped, with up to 20 % jitter; after `max_attempts`
    the job is dead, and with `max_attempts=None` (FOREVER) it is retried as long as its
    step asks (a delivery, until its message expires)."""

    base: dt.timedelta = dt.timedelta(seconds=2)
    cap: dt.timedelta = dt.timedelta(minutes=10)
    max_attempts: int | None = 20

    def __post_init__(self) -> None:
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1, or None for no limit")

    def exhausted(self, attempts: int) -> bool:
        """Whether a job tried `attempts` times has had its last try."""
        return self.max_attempts is not None and attempts >= self.max_attempts

    def delay(self, attempt: int) -> dt.timedelta:
        # The exponent is bounded: a job retried for ever reaches attempts whose 2^n no
        # float can hold, long after the cap has taken over.
        doubled = 2.0 ** min(attempt - 1, 64)
        seconds = min(self.cap.total_seconds(), self.base.total_seconds() * doubled)
        return dt.timedelta(seconds=seconds * (1 + random.uniform(0, 0.2)))


# Retried for as long as the step asks: the step itself decides when to stop (an expiry).
FOREVER = RetryPolicy(max_attempts=None)


# How a worker retries its own writes to the queue (a claim, an outcome) when they fail:
# from half a second, doubling, up to 30 s between tries.
WRITE_POLICY = RetryPolicy(base=dt.timedelta(seconds=0.5), cap=dt.timedelta(seconds=30))


# How long a step retries a write recording what a peer already took (`keep_trying`).
STEP_WRITE_WITHIN = dt.timedelta(minutes=5)


async def keep_trying(
    write: Callable[[], Awaitable[T]],
    bound: FilteringBoundLogger,
    *,
    what: str,
    within: dt.timedelta = STEP_WRITE_WITHIN,
    policy: RetryPolicy = WRITE_POLICY,
) -> T:
    """`write()`, tried again after a growing wait while it fails, for up to `within`; then
    its last error is raised.

    For the writes that record what was already done: a job's outcome, or a step's record
    that an MMSC or SMSC took a message. Failing the step instead would run it again, and
    send the message twice, for a fault of our own database. Logged at error on the first
    failure (`job.write_failed`, naming `what`), at warning once written (`job.written`).
    The job stays held meanwhile, its lease renewed, so no other worker runs it."""
    loop = asyncio.get_running_loop()
    give_up_at = loop.time() + within.total_seconds()
    failures = 0
    while True:
        try:
            result = await write()
        except Exception as exc:
            failures += 1
            metrics.WORKER_ERRORS.labels(what).inc()
            wait = policy.delay(failures).total_seconds()
            if loop.time() + wait > give_up_at:
                raise
            if failures == 1:
                bound.error(
                    "job.write_failed", write=what, error=_describe(exc), retry_in=round(wait, 3)
                )
            await asyncio.sleep(wait)
            continue
        if failures:
            bound.warning("job.written", write=what, failures=failures)
        return result


def worker_name() -> str:
    return f"{socket.gethostname()}-{secrets.token_hex(4)}"


class Worker:
    """Runs steps for claimed jobs until told to stop."""

    def __init__(
        self,
        db: Database,
        steps: Mapping[models.JobKind, Step],
        deps: Deps,
        *,
        name: str | None = None,
        concurrency: int = 8,
        lease: dt.timedelta = dt.timedelta(minutes=5),
        idle_poll: float = 0.2,
        claim_gap: float = 0.02,
        policy: RetryPolicy = RetryPolicy(),
        policies: Mapping[models.JobKind, RetryPolicy] | None = None,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        keep_done: dt.timedelta | None = None,
        prune_every: float = 300.0,
        write_policy: RetryPolicy = WRITE_POLICY,
        beat_every: float = 5.0,
    ) -> None:
        self.db, self.steps, self.deps = db, dict(steps), deps
        self.name = name or worker_name()
        self.concurrency, self.lease, self.idle_poll = concurrency, lease, idle_poll
        self.claim_gap = claim_gap
        self.policy, self.clock = policy, clock
        self.policies = dict(policies or {})
        self.stopping = asyncio.Event()
        self.held: set[int] = set()  # ids of the jobs running now, whose leases are renewed
        # Jobs of a dead worker are looked for this often, not at every claim: the look walks
        # every running job's index entry, and such jobs are rare and wait a lease anyway.
        self.abandoned_every = min(5.0, lease.total_seconds() / 3)
        self.keep_done, self.prune_every = keep_done, prune_every
        self._abandoned_looked = -math.inf
        self.write_policy, self.beat_every = write_policy, beat_every
        self._beaten = -math.inf  # time.monotonic() of the last beat written
        self._claim_failures = 0  # claims failed in a row
        self.healthy = False  # the loop runs and its last claim succeeded

    async def run(self) -> None:
        """Work until `stop()`; jobs already claimed are finished before returning.

        No fault of the database ends it: a claim that fails is logged, backed off and
        tried again (`_claim_or_back_off`), an outcome that cannot be written is retried
        (`record`), and a lease renewal that fails waits for the next round."""
        log.info("worker.started", worker=self.name, kinds=[k.value for k in self.steps])
        self._set_healthy(True)
        helpers = [asyncio.ensure_future(c) for c in (self._renew_leases(), self._prune_done())]
        try:
            await self._work()
        except Exception:  # a defect of the loop itself: say so loudly, as /readyz will
            log.exception("worker.loop_failed", worker=self.name)
            raise
        finally:
            self._set_healthy(False)
            for helper in helpers:
                helper.cancel()
        await self._leave()
        log.info("worker.stopped", worker=self.name)

    async def _work(self) -> None:
        """Up to `concurrency` jobs run at once; free slots are refilled as jobs end (no
        batch waits for its slowest job), but by the handful: a claim is a write
        transaction, so the loop claims once a quarter of the slots are free, or
        `claim_gap` after its last claim, rather than once per job that ends. Every
        `beat_every` it claims even with no slot free: the claim carries its beat."""
        loop = asyncio.get_running_loop()
        running: set[asyncio.Task[None]] = set()
        changed = asyncio.Event()  # a job ended, or stop() was called
        stopping = asyncio.ensure_future(self._wake_on_stop(changed))
        refill = max(1, self.concurrency // 4)
        last_claim, drained, ended_since = -math.inf, True, 0

        def ended(task: asyncio.Task[None]) -> None:
            nonlocal ended_since
            running.discard(task)
            ended_since += 1
            changed.set()

        while not self.stopping.is_set():
            free = self.concurrency - len(running)
            since = loop.time() - last_claim
            beat_in = self.beat_every - (time.monotonic() - self._beaten)
            wanted = free and (since >= self.claim_gap or (free >= refill and not drained))
            if wanted or beat_in <= 0:
                last_claim, ended_since = loop.time(), 0
                claimed = await self._claim_or_back_off(free)
                drained = len(claimed) < free
                for job in claimed:
                    task = asyncio.create_task(self.run_job(job))
                    running.add(task)
                    task.add_done_callback(ended)
                continue
            # Sleep until the next claim is due, or a job ends, or stop(). With the queue
            # drained and no job ended since (so none could have queued a follow-up), the
            # next claim is a poll, `idle_poll` after the last.
            due = self.idle_poll if drained and not ended_since else self.claim_gap
            wait = min(max(0.0, due - since), beat_in) if free else beat_in
            changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await changed.wait()
        stopping.cancel()
        if running:
            await asyncio.gather(*running)

    async def _claim_or_back_off(self, limit: int) -> list[jobs.Job]:
        """Claim; when that fails (disk full, database down, any error), log it at error,
        wait a growing while (or until stop()) and claim nothing this time. The loop goes
        on, and so does every job it runs: one failed write must not end the worker."""
        try:
            claimed = await self.claim(limit)
        except Exception as exc:
            self._claim_failures += 1
            wait = self.write_policy.delay(self._claim_failures).total_seconds()
            metrics.WORKER_ERRORS.labels("claim").inc()
            self._set_healthy(False)
            log.error(
                "worker.claim_failed",
                worker=self.name,
                error=_describe(exc),
                failures=self._claim_failures,
                retry_in=round(wait, 3),
                exc_info=self._claim_failures == 1,  # the traceback once, not every retry
            )
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self.stopping.wait()
            return []
        if self._claim_failures:
            log.warning("worker.claiming_again", worker=self.name, failures=self._claim_failures)
            self._claim_failures = 0
        self._set_healthy(True)
        return claimed

    def _set_healthy(self, healthy: bool) -> None:
        self.healthy = healthy
        metrics.WORKER_HEALTHY.labels(worker=self.name).set(1 if healthy else 0)

    async def _leave(self) -> None:
        try:
            await workers.leave(self.db, self.name)
        except Exception as exc:  # noqa: BLE001 - its beat only goes stale, as a dead worker's
            log.error("worker.leave_failed", worker=self.name, error=_describe(exc))

    async def _renew_leases(self) -> None:
        """Every third of a lease, extend the leases of the jobs still running: a job is
        another worker's to take only once this one has died, never while it works on it."""
        every = self.lease.total_seconds() / 3
        while True:
            await asyncio.sleep(every)
            try:
                await jobs.renew(
                    self.db, self.name, sorted(self.held), until=self.clock() + self.lease
                )
            except Exception:  # a database blip: the next round tries again
                metrics.WORKER_ERRORS.labels("renew").inc()
                log.exception("worker.renew_failed", worker=self.name)

    async def _prune_done(self) -> None:
        """Every `prune_every` seconds, delete the done jobs older than `keep_done` (the
        queue holds what is to do, not the whole past: the recipients' history does) and
        the Idempotency-Keys past their window (store/idempotency.py)."""
        while True:
            try:
                if self.keep_done is not None:
                    pruned = await jobs.prune(self.db, before=self.clock() - self.keep_done)
                    if pruned:
                        log.info("worker.pruned", worker=self.name, jobs=pruned)
                expired = await idempotency.prune(self.db, now=self.clock())
                if expired:
                    log.info("worker.pruned", worker=self.name, idempotency_keys=expired)
            except Exception:  # a database blip: the next round tries again
                metrics.WORKER_ERRORS.labels("prune").inc()
                log.exception("worker.prune_failed", worker=self.name)
            await asyncio.sleep(self.prune_every)

    async def _wake_on_stop(self, changed: asyncio.Event) -> None:
        await self.stopping.wait()
        changed.set()

    async def claim(self, limit: int) -> list[jobs.Job]:
        """Up to `limit` due jobs, and this worker's beat when one is due (`store.workers`)."""
        now = time.monotonic()
        look = now - self._abandoned_looked >= self.abandoned_every
        beat = now - self._beaten >= self.beat_every
        claimed = await jobs.claim(
            self.db,
            self.name,
            list(self.steps),
            limit=limit,
            lease=self.lease,
            now=self.clock(),
            abandoned=look,
            beat=beat,
        )
        if look:
            self._abandoned_looked = now
        if beat:
            self._beaten = now
        return claimed

    def stop(self) -> None:
        self.stopping.set()

    async def run_once(self) -> int:
        """Claim one batch and run it; returns how many jobs ran."""
        claimed = await self.claim(self.concurrency)
        await asyncio.gather(*(self.run_job(job) for job in claimed))
        return len(claimed)

    async def run_job(self, job: jobs.Job) -> None:
        bound = log.bind(job_id=job.id, kind=job.kind.value, attempt=job.attempts)
        self.held.add(job.id)
        try:
            try:
                outcome = await self.steps[job.kind](job, self.deps)
            except Exception as exc:  # noqa: BLE001 - the worker's error boundary: record it
                bound.exception("job.crashed")
                outcome = Outcome.retry(f"{type(exc).__name__}: {exc}")
            await self.record(job, outcome, bound)
        finally:
            self.held.discard(job.id)

    async def record(self, job: jobs.Job, outcome: Outcome, bound: FilteringBoundLogger) -> None:
        """Write the job's outcome; a write that fails is retried, for up to one lease.

        The step has already acted (an MMSC may have taken the submit): an outcome left
        unwritten would leave the job `running` until its lease ran out, and then it would
        run again. The failure is local (our own database), so it is worth waiting out.
        While it retries the job stays held and its lease renewed, so no worker takes it
        over. The bound: a database that refuses writes for good would otherwise keep the
        job's slot, and a stopping worker, forever. After one lease's time the job is left
        to its lease, logged at error (`job.outcome_lost`): it runs again once the lease
        runs out, at least once as the queue promises, which this retry makes rare."""
        now = self.clock()
        try:
            await keep_trying(
                lambda: self._write_outcome(job, outcome, bound, now),
                bound,
                what="outcome",
                within=self.lease,
                policy=self.write_policy,
            )
        except Exception as exc:  # noqa: BLE001 - given up to the lease, as argued above
            bound.error("job.outcome_lost", error=_describe(exc))

    async def _write_outcome(
        self, job: jobs.Job, outcome: Outcome, bound: FilteringBoundLogger, now: dt.datetime
    ) -> None:
        policy = self.policies.get(job.kind, self.policy)
        if outcome.done:
            await jobs.complete(self.db, job, self.name, now, follow_ups=outcome.follow_ups)
            bound.debug("job.done")
        elif outcome.deferred:
            at = now + (outcome.retry_after or dt.timedelta())
            await jobs.defer(self.db, job, self.name, at=at, now=now)
            bound.debug("job.deferred", at=at.isoformat())
        elif outcome.give_up or policy.exhausted(job.attempts):
            await jobs.bury(self.db, job, self.name, error=outcome.error or "failed", now=now)
            bound.warning("job.dead", error=outcome.error)
        else:
            at = now + (outcome.retry_after or policy.delay(job.attempts))
            await jobs.retry(self.db, job, self.name, at=at, error=outcome.error or "", now=now)
            bound.info("job.retry", error=outcome.error, at=at.isoformat())
