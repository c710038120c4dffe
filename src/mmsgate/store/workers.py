"""Worker beats: whether anything is working the queue, as every process can read it.

A worker writes its beat in the transaction of a claim (no write of its own), every few
seconds while its loop runs and its claims succeed; one whose claims fail (disk full, the
database refusing writes), whose loop ended or whose process died writes none. A `serve`
process cannot see a worker's loop, but it can see that jobs have been due for a while and
no beat is recent: then nothing is working the queue, and `/readyz` and `/metrics` say so.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from mmsgate import models
from mmsgate.store.db import Database, PerDialect
from mmsgate.store.schema import jobs, workers


@dataclasses.dataclass(frozen=True, slots=True)
class Progress:
    """The newest beat of any worker, and since when the longest-waiting due job waits."""

    last_beat: dt.datetime | None  # None: no worker has beaten (or every one left)
    due_since: dt.datetime | None  # None: no job is due

    def stalled(self, now: dt.datetime, after: dt.timedelta) -> bool:
        """Jobs have been due for `after` and no worker has claimed in that time. A worker
        busy with long jobs still beats, so a backlog alone is not a stall."""
        if self.due_since is None or now - self.due_since < after:
            return False
        return self.last_beat is None or now - self.last_beat >= after


def _upsert(insert: Callable[[sa.Table], sqlite.Insert | postgresql.Insert]) -> sa.Executable:
    statement = insert(workers).values(name=sa.bindparam("worker"), beat_at=sa.bindparam("now"))
    return statement.on_conflict_do_update(
        index_elements=[workers.c.name], set_={"beat_at": statement.excluded.beat_at}
    )


_BEAT = PerDialect(sqlite=_upsert(sqlite.insert), postgresql=_upsert(postgresql.insert))


async def beat(db: Database, conn: AsyncConnection, worker: str, now: dt.datetime) -> None:
    """Record in the caller's write transaction (of `db`) that `worker` claimed at `now`."""
    await conn.execute(db.pick(_BEAT), {"worker": worker, "now": now})


async def leave(db: Database, worker: str) -> None:
    """Forget a worker that stops: its beat no longer counts for anything."""
    async with db.write() as conn:
        await conn.execute(workers.delete().where(workers.c.name == worker))


async def progress(db: Database, now: dt.datetime) -> Progress:
    """The beats and the due jobs, read in two indexed lookups: the oldest pending job due
    (the (state, run_at) index) and the running job whose lease ran out first (a dead
    worker's, due to be taken over; running jobs are few)."""
    pending = models.JobState.PENDING.value
    running = models.JobState.RUNNING.value
    async with db.read() as conn:
        last_beat = await conn.scalar(sa.select(sa.func.max(workers.c.beat_at)))
        waiting = await conn.scalar(
            sa.select(sa.func.min(jobs.c.run_at)).where(
                jobs.c.state == pending, jobs.c.run_at <= now
            )
        )
        abandoned = await conn.scalar(
            sa.select(sa.func.min(jobs.c.lease_expires_at)).where(
                jobs.c.state == running, jobs.c.lease_expires_at <= now
            )
        )
    due = [_aware(t) for t in (waiting, abandoned) if t is not None]
    return Progress(_aware(last_beat) if last_beat else None, min(due) if due else None)


def _aware(value: object) -> dt.datetime:
    """Aggregates come back untyped (SQLite gives text): as aware UTC, like the columns."""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    assert isinstance(value, dt.datetime)
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
