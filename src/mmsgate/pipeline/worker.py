"""The worker loop: claim due jobs, run each one's step, record the outcome, repeat.

Steps know nothing of the queue: each is `async def step(job, deps) -> Outcome`. The loop
turns an Outcome into the job's next state, retries with exponential backoff and jitter,
and is the only place that catches every exception (a step that crashes is retried, then
buried, and the worker goes on). Stopping is graceful: claimed jobs finish first.
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
from typing import Any

import structlog

from mmsgate import models
from mmsgate.store import jobs
from mmsgate.store.db import Database

log = structlog.get_logger(__name__)


@dataclasses.dataclass(frozen=True, slots=True)
class Outcome:
    """What a step says happened: done, try again later (`retry_after`), or give up."""

    done: bool = True
    retry_after: dt.timedelta | None = None
    error: str | None = None
    give_up: bool = False

    @classmethod
    def retry(cls, error: str, after: dt.timedelta | None = None) -> Outcome:
        return cls(done=False, retry_after=after, error=error)

    @classmethod
    def failed(cls, error: str) -> Outcome:
        return cls(done=False, error=error, give_up=True)


Step = Callable[[jobs.Job, Any], Awaitable[Outcome]]


@dataclasses.dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Backoff base * 2^(attempt-1), capped, with up to 20 % jitter; `max_attempts` then dead."""

    base: dt.timedelta = dt.timedelta(seconds=2)
    cap: dt.timedelta = dt.timedelta(minutes=10)
    max_attempts: int = 20

    def delay(self, attempt: int) -> dt.timedelta:
        seconds = min(self.cap.total_seconds(), self.base.total_seconds() * 2 ** (attempt - 1))
        return dt.timedelta(seconds=seconds * (1 + random.uniform(0, 0.2)))


def worker_name() -> str:
    return f"{socket.gethostname()}-{secrets.token_hex(4)}"


class Worker:
    """Runs steps for claimed jobs until told to stop."""

    def __init__(
        self,
        db: Database,
        steps: Mapping[models.JobKind, Step],
        deps: Any,
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

    async def run(self) -> None:
        """Work until `stop()`; jobs already claimed are finished before returning.

        Up to `concurrency` jobs run at once; free slots are refilled as jobs end (no batch
        waits for its slowest job), but by the handful: a claim is a write transaction, so
        the loop claims once a quarter of the slots are free, or `claim_gap` after its last
        claim, rather than once per job that ends."""
        log.info("worker.started", worker=self.name, kinds=[k.value for k in self.steps])
        loop = asyncio.get_running_loop()
        running: set[asyncio.Task[None]] = set()
        changed = asyncio.Event()  # a job ended, or stop() was called
        stopping = asyncio.ensure_future(self._wake_on_stop(changed))
        renewing = asyncio.ensure_future(self._renew_leases())
        pruning = asyncio.ensure_future(self._prune_done())
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
            if free and (since >= self.claim_gap or (free >= refill and not drained)):
                last_claim, ended_since = loop.time(), 0
                claimed = await self.claim(free)
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
            changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, due - since) if free else None):
                    await changed.wait()
        stopping.cancel()
        if running:
            await asyncio.gather(*running)
        renewing.cancel()
        pruning.cancel()
        log.info("worker.stopped", worker=self.name)

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
                log.exception("worker.renew_failed", worker=self.name)

    async def _prune_done(self) -> None:
        """Every `prune_every` seconds, delete the done jobs older than `keep_done`: the
        queue holds what is to do, not the whole past (the recipients' history does)."""
        if self.keep_done is None:
            return
        while True:
            try:
                pruned = await jobs.prune(self.db, before=self.clock() - self.keep_done)
                if pruned:
                    log.info("worker.pruned", worker=self.name, jobs=pruned)
            except Exception:  # a database blip: the next round tries again
                log.exception("worker.prune_failed", worker=self.name)
            await asyncio.sleep(self.prune_every)

    async def _wake_on_stop(self, changed: asyncio.Event) -> None:
        await self.stopping.wait()
        changed.set()

    async def claim(self, limit: int) -> list[jobs.Job]:
        now = time.monotonic()
        look = now - self._abandoned_looked >= self.abandoned_every
        if look:
            self._abandoned_looked = now
        return await jobs.claim(
            self.db,
            self.name,
            list(self.steps),
            limit=limit,
            lease=self.lease,
            now=self.clock(),
            abandoned=look,
        )

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

    async def record(self, job: jobs.Job, outcome: Outcome, bound: Any) -> None:
        now = self.clock()
        policy = self.policies.get(job.kind, self.policy)
        if outcome.done:
            await jobs.complete(self.db, job, self.name, now)
            bound.debug("job.done")
        elif outcome.give_up or job.attempts >= policy.max_attempts:
            await jobs.bury(self.db, job, self.name, error=outcome.error or "failed", now=now)
            bound.warning("job.dead", error=outcome.error)
        else:
            at = now + (outcome.retry_after or policy.delay(job.attempts))
            await jobs.retry(self.db, job, self.name, at=at, error=outcome.error or "", now=now)
            bound.info("job.retry", error=outcome.error, at=at.isoformat())
