"""The queue: claiming, finishing, retrying and burying jobs in the `jobs` table.

A claim sets a lease; a worker that dies simply stops renewing it, and once the lease has
run out the job can be claimed again. On PostgreSQL claims use FOR UPDATE SKIP LOCKED so
many workers share the queue without waiting on each other; on SQLite the write lock
already makes one claim at a time.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TypedDict

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from mmsgate import models
from mmsgate.models import JSONValue
from mmsgate.store import workers
from mmsgate.store.db import Database, PerDialect
from mmsgate.store.rows import Row
from mmsgate.store.schema import UtcDateTime, jobs, recipients


@dataclasses.dataclass(frozen=True, slots=True)
class Job:
    """A claimed job: what to do, on what, and how many times it was tried (this one included)."""

    id: int
    kind: models.JobKind
    attempts: int
    tracking_id: str | None
    template_id: int | None
    payload: dict[str, JSONValue] | None  # as the job's kind writes it (`new_job`)
    created_at: dt.datetime


@dataclasses.dataclass(frozen=True, slots=True)
class FollowUp:
    """A job to queue once the job naming it is done, in the same transaction."""

    kind: models.JobKind
    tracking_id: str | None = None
    template_id: int | None = None
    payload: dict[str, JSONValue] | None = None


# The queue's statements are built once, with bound parameters: building and hashing an
# UPDATE with a subquery costs SQLAlchemy more than running it (measured: ~350 against ~80
# microseconds), and the queue runs them for every batch of jobs.
_NOW = sa.bindparam("now", type_=UtcDateTime())
_KINDS = sa.bindparam("kinds", expanding=True, type_=sa.String())
_WORKER = sa.bindparam("worker", type_=sa.String())
_ABANDONED = sa.select(jobs.c.id).where(
    jobs.c.state == models.JobState.RUNNING.value,
    jobs.c.lease_expires_at < _NOW,
    jobs.c.kind.in_(_KINDS),
)
_PENDING = (
    sa.select(jobs.c.id)
    .where(
        jobs.c.state == models.JobState.PENDING.value,
        jobs.c.run_at <= _NOW,
        jobs.c.kind.in_(_KINDS),
    )
    .order_by(jobs.c.run_at)
)


def _take(due: sa.Select[tuple[int]], skip_locked: bool) -> sa.Executable:
    """The UPDATE … RETURNING that leases up to `limit` of the jobs `due` selects."""
    due = due.limit(sa.bindparam("limit", type_=sa.Integer()))
    if skip_locked:
        due = due.with_for_update(skip_locked=True)
    return (
        jobs.update()
        .where(jobs.c.id.in_(due.scalar_subquery()))
        .values(
            state=models.JobState.RUNNING.value,
            locked_by=_WORKER,
            lease_expires_at=sa.bindparam("until", type_=UtcDateTime()),
            attempts=jobs.c.attempts + 1,
            updated_at=_NOW,
        )
        .returning(*jobs.c)
    )


# A queue's statistics go stale within seconds (thousands of jobs queued since the table was
# last analysed): PostgreSQL then takes the (state, run_at) index as a bitmap, reads every
# due job and sorts them, 4-6 ms a claim with 8,000 queued, where walking the index in
# run_at order stops after `limit` rows (measured: 6.0 → 1.5 ms a claim). Set for the
# claim's transaction only.
_INDEX_ORDER = sa.text(
    "SELECT set_config('enable_bitmapscan', 'off', true), set_config('enable_seqscan', 'off', true)"
)
# (abandoned, pending, what the claim's transaction runs first): PostgreSQL skips rows other
# workers have locked; SQLite's write lock already makes one claim at a time.
_CLAIMS = PerDialect(
    sqlite=(_take(_ABANDONED, False), _take(_PENDING, False), None),
    postgresql=(_take(_ABANDONED, True), _take(_PENDING, True), _INDEX_ORDER),
)


async def claim(
    db: Database,
    worker: str,
    kinds: Sequence[models.JobKind],
    *,
    limit: int,
    lease: dt.timedelta,
    now: dt.datetime,
    abandoned: bool = True,
    beat: bool = False,
) -> list[Job]:
    """Take up to `limit` due jobs under a lease held by `worker`: abandoned ones (their
    lease ran out) first, unless `abandoned` is False, then pending ones, oldest first.
    With `beat`, the same transaction records the worker's beat (`store.workers`); a
    `limit` of 0 then records the beat alone.

    Two statements, each served by the (state, run_at) index: the pending one walks the
    index in run_at order and stops after `limit` rows, so a claim costs the same with ten
    jobs queued or a million (one query with OR between the two would read and sort every
    due job). On PostgreSQL, FOR UPDATE SKIP LOCKED lets workers claim side by side."""
    params: dict[str, object] = {
        "now": now,
        "until": now + lease,
        "kinds": [k.value for k in kinds],
        "worker": worker,
    }
    taken: list[Row] = []
    look_abandoned, look_pending, index_order = db.pick(_CLAIMS)
    async with db.write() as conn:
        if beat:
            await workers.beat(db, conn, worker, now)
        if index_order is not None and limit:
            await conn.execute(index_order)
        for statement in (look_abandoned, look_pending) if abandoned else (look_pending,):
            if len(taken) < limit:
                params["limit"] = limit - len(taken)
                taken += (await conn.execute(statement, params)).all()
    return sorted((_job(r) for r in taken), key=lambda j: j.id)


def _job(row: Row) -> Job:
    """A row of the jobs table as a Job: the one reader of a job row's fields."""
    return Job(
        id=row.id,
        kind=models.JobKind(row.kind),
        attempts=row.attempts,
        tracking_id=row.tracking_id,
        template_id=row.template_id,
        payload=row.payload,
        created_at=row.created_at,
    )


async def _finish(db: Database, job: Job, worker: str, **values: object) -> bool:
    """Record an outcome, only if `worker` still holds the job (a taken-over job is not ours).
    Outcomes of concurrent jobs share one commit."""
    statement = (
        jobs.update()
        .where(
            jobs.c.id == job.id,
            jobs.c.locked_by == worker,
            jobs.c.state == models.JobState.RUNNING.value,
        )
        .values(lease_expires_at=None, **values)
    )

    async def work(conn: AsyncConnection) -> bool:
        return (await conn.execute(statement)).rowcount == 1

    return await db.batched(work)


async def renew(db: Database, worker: str, ids: Sequence[int], *, until: dt.datetime) -> int:
    """Extend the lease of jobs `worker` still runs, so none is taken over while it works
    on it (a submit waiting its turn on a slow MMSC can outlast one lease); how many."""
    if not ids:
        return 0
    statement = (
        jobs.update()
        .where(
            jobs.c.id.in_(list(ids)),
            jobs.c.locked_by == worker,
            jobs.c.state == models.JobState.RUNNING.value,
        )
        .values(lease_expires_at=until)
    )
    async with db.write() as conn:
        return (await conn.execute(statement)).rowcount


async def prune(db: Database, *, before: dt.datetime, batch: int = 1000) -> int:
    """Delete done jobs last run before `before`, `batch` rows per transaction so no write
    holds the database long; how many. Dead jobs stay (they are for `postbacks replay`),
    and so does every recipient's state and history: only the queue's own rows go.

    Served by the (state, run_at) index: a done job's run_at is when its last attempt was
    due, a moment before it finished."""
    pick = (
        sa.select(jobs.c.id)
        .where(jobs.c.state == models.JobState.DONE.value, jobs.c.run_at < before)
        .limit(batch)
        .scalar_subquery()
    )
    deleted = 0
    while True:
        async with db.write() as conn:
            count = (await conn.execute(jobs.delete().where(jobs.c.id.in_(pick)))).rowcount
        deleted += count
        if count < batch:
            return deleted


async def complete(
    db: Database, job: Job, worker: str, now: dt.datetime, follow_ups: Sequence[FollowUp] = ()
) -> bool:
    """Mark the job done, if `worker` still holds it, and queue its follow-ups in the same
    transaction: only when it was still ours, so a follow-up is queued exactly once (a
    job taken over by another worker queues its own). The jobs that end while a batch of
    writes gathers are marked with one UPDATE."""
    item = (job.id, now, tuple(follow_ups))
    return await db.batched(_complete(worker), key=("complete", worker), item=item)


_COMPLETE = (
    jobs.update()
    .where(
        jobs.c.id.in_(sa.bindparam("ids", expanding=True)),
        jobs.c.locked_by == _WORKER,
        jobs.c.state == models.JobState.RUNNING.value,
    )
    .values(state=models.JobState.DONE.value, lease_expires_at=None, updated_at=_NOW)
    .returning(jobs.c.id)
)
_Done = tuple[int, dt.datetime, tuple[FollowUp, ...]]


def _complete(worker: str) -> Callable[[AsyncConnection, list[_Done]], Awaitable[list[bool]]]:
    async def work(conn: AsyncConnection, items: list[_Done]) -> list[bool]:
        ids = [job_id for job_id, _, _ in items]
        params = {"ids": ids, "worker": worker, "now": max(now for _, now, _ in items)}
        done = set((await conn.scalars(_COMPLETE, params)).all())
        if queued := [_queued(f, now) for i, now, fs in items if i in done for f in fs]:
            await conn.execute(jobs.insert(), queued)
        return [job_id in done for job_id in ids]

    return work


def _queued(follow_up: FollowUp, now: dt.datetime) -> dict[str, object]:
    f = follow_up
    return new_job(
        f.kind, now, tracking_id=f.tracking_id, template_id=f.template_id, payload=f.payload
    )


async def retry(
    db: Database, job: Job, worker: str, *, at: dt.datetime, error: str, now: dt.datetime
) -> bool:
    return await _finish(
        db,
        job,
        worker,
        state=models.JobState.PENDING.value,
        run_at=at,
        last_error=error[:2000],
        locked_by=None,
        updated_at=now,
    )


async def defer(db: Database, job: Job, worker: str, *, at: dt.datetime, now: dt.datetime) -> bool:
    """Put a job back, due at `at`, as if this claim had not happened: the attempt it counted
    is taken back, as the step did not try (its turn had not come)."""
    return await _finish(
        db,
        job,
        worker,
        state=models.JobState.PENDING.value,
        run_at=at,
        attempts=jobs.c.attempts - 1,
        locked_by=None,
        updated_at=now,
    )


async def bury(db: Database, job: Job, worker: str, *, error: str, now: dt.datetime) -> bool:
    return await _finish(
        db, job, worker, state=models.JobState.DEAD.value, last_error=error[:2000], updated_at=now
    )


async def counts(db: Database) -> dict[tuple[str, str], int]:
    """Jobs by (kind, state), for metrics and tests."""
    async with db.read() as conn:
        rows = (
            await conn.execute(
                sa.select(jobs.c.kind, jobs.c.state, sa.func.count()).group_by(
                    jobs.c.kind, jobs.c.state
                )
            )
        ).all()
    return {(r[0], r[1]): int(r[2]) for r in rows}


class SystemState(TypedDict):
    """The whole system's state, as `/metrics` shows it."""

    recipients: dict[tuple[str, str], int]  # by (state, route; "" before one is chosen)
    jobs: dict[tuple[str, str], int]  # by (kind, state)
    oldest: dict[str, float]  # by kind: seconds the oldest due job has waited


async def system_state(db: Database, now: dt.datetime) -> SystemState:
    """Recipients by state and route; jobs by kind and state; the oldest due job's age."""
    async with db.read() as conn:
        by_state = (
            await conn.execute(
                sa.select(recipients.c.state, recipients.c.route, sa.func.count()).group_by(
                    recipients.c.state, recipients.c.route
                )
            )
        ).all()
        by_job = (
            await conn.execute(
                sa.select(jobs.c.kind, jobs.c.state, sa.func.count()).group_by(
                    jobs.c.kind, jobs.c.state
                )
            )
        ).all()
        oldest = (
            await conn.execute(
                sa.select(jobs.c.kind, sa.func.min(jobs.c.run_at))
                .where(jobs.c.state == models.JobState.PENDING.value, jobs.c.run_at <= now)
                .group_by(jobs.c.kind)
            )
        ).all()
    return {
        "recipients": {(r[0], r[1] or ""): int(r[2]) for r in by_state},
        "jobs": {(r[0], r[1]): int(r[2]) for r in by_job},
        "oldest": {r[0]: (now - _aware(r[1])).total_seconds() for r in oldest if r[1]},
    }


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def new_job(
    kind: models.JobKind,
    now: dt.datetime,
    *,
    tracking_id: str | None = None,
    template_id: int | None = None,
    payload: Mapping[str, object] | None = None,
) -> dict[str, object]:
    """A pending job row, due now, for inserting in the transaction that makes it needed."""
    return {
        "kind": kind.value,
        "state": models.JobState.PENDING.value,
        "tracking_id": tracking_id,
        "template_id": template_id,
        "payload": payload,
        "attempts": 0,
        "run_at": now,
        "created_at": now,
        "updated_at": now,
    }


@dataclasses.dataclass(frozen=True, slots=True)
class QueuedPostback:
    """A postback job as the operator sees it: its state, tries and last error."""

    id: int
    state: models.JobState
    attempts: int
    created_at: dt.datetime
    last_error: str | None
    payload: dict[str, JSONValue] | None  # the account and the event (`postback_job`)

    @property
    def account_id(self) -> object:
        """The account it goes to, as the job names it."""
        return (self.payload or {}).get("account_id")


def queued_postback_of(row: Row) -> QueuedPostback:
    """A row of the jobs table as a QueuedPostback: the job (`_job`) and its queue state."""
    job = _job(row)
    return QueuedPostback(
        id=job.id,
        state=models.JobState(row.state),
        attempts=job.attempts,
        created_at=job.created_at,
        last_error=row.last_error,
        payload=job.payload,
    )


async def postbacks(
    db: Database,
    account_id: int | None,
    *,
    failed_only: bool,
    since: dt.datetime | None,
    limit: int,
) -> list[QueuedPostback]:
    """Postback jobs, newest first: optionally one account's, only dead ones, since a time."""
    where: list[sa.ColumnElement[bool]] = [jobs.c.kind == models.JobKind.POSTBACK.value]
    if failed_only:
        where.append(jobs.c.state == models.JobState.DEAD.value)
    if since is not None:
        where.append(jobs.c.created_at >= since)
    async with db.read() as conn:
        rows = (
            await conn.execute(
                sa.select(jobs).where(*where).order_by(jobs.c.id.desc()).limit(limit)
            )
        ).all()
    found = [queued_postback_of(r) for r in rows]
    return [p for p in found if account_id is None or p.account_id == account_id]


async def replay_postbacks(
    db: Database, account_id: int | None, since: dt.datetime, now: dt.datetime
) -> int:
    """Queue dead postbacks made since `since` again (as new attempts, due now)."""
    dead = await postbacks(db, account_id, failed_only=True, since=since, limit=1_000_000)
    ids = [r.id for r in dead]
    if not ids:
        return 0
    async with db.write() as conn:
        for start in range(0, len(ids), 500):
            await conn.execute(
                jobs.update()
                .where(
                    jobs.c.id.in_(ids[start : start + 500]),
                    jobs.c.state == models.JobState.DEAD.value,
                )
                .values(
                    state=models.JobState.PENDING.value,
                    run_at=now,
                    attempts=0,
                    created_at=now,
                    locked_by=None,
                    updated_at=now,
                )
            )
    return len(ids)
