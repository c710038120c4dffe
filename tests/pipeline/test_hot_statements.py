"""Hot statements (`store.hot`) read and write exactly what the same statement does through
SQLAlchemy's `conn.execute`, on both databases, inside the caller's transaction."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from mmsgate import models
from mmsgate.store import hot
from mmsgate.store.db import Database
from mmsgate.store.jobs import new_job
from mmsgate.store.schema import jobs

pytestmark = pytest.mark.anyio
NOW = dt.datetime(2026, 3, 4, 5, 6, 7, 891011, tzinfo=dt.UTC)
_INSERT = hot.Hot(jobs.insert(), keys=tuple(new_job(models.JobKind.POSTBACK, NOW)))
_BY_ID = hot.Hot(
    sa.select(jobs.c.id, jobs.c.kind, jobs.c.payload, jobs.c.run_at, jobs.c.locked_by).where(
        jobs.c.id == sa.bindparam("id")
    )
)
_MARK = hot.Hot(
    jobs.update()
    .where(jobs.c.id == sa.bindparam("job"), jobs.c.state == models.JobState.PENDING.value)
    .values(
        locked_by=sa.bindparam("worker"),
        updated_at=sa.bindparam("now", type_=jobs.c.updated_at.type),
    )
)


async def _last_id(db: Database) -> int:
    async with db.read() as conn:
        return int((await conn.execute(sa.select(sa.func.max(jobs.c.id)))).scalar_one())


async def test_a_hot_insert_and_select_match_sqlalchemy(db: Database) -> None:
    """A row written hot reads back the same hot and through SQLAlchemy: aware UTC
    datetimes to the microsecond, JSON as the dict it was, absent values as None."""
    payload = {"account_id": 7, "body": "<x>é</x>", "list": [1, 2]}
    async with db.write() as conn:
        written = await hot.execute(
            conn, _INSERT, new_job(models.JobKind.POSTBACK, NOW, payload=payload)
        )
    assert written.rowcount == 1
    assert written.rows == []
    job_id = await _last_id(db)

    row = (await db.read_hot(_BY_ID, {"id": job_id})).first()
    async with db.read() as conn:
        plain = (await conn.execute(_BY_ID.statement, {"id": job_id})).one()
    assert tuple(row) == tuple(plain)
    assert row.payload == payload
    assert row.kind == "postback"
    assert row.locked_by is None
    assert row.run_at == NOW
    assert row.run_at.tzinfo is not None
    assert (await db.read_hot(_BY_ID, {"id": job_id + 1000})).first() is None


async def test_a_hot_update_counts_rows_and_keeps_the_statements_own_values(
    db: Database,
) -> None:
    """An UPDATE's WHERE with a value of its own (state = 'pending') applies: the first
    update changes one row, the second (after the state moved) none."""
    async with db.write() as conn:
        await hot.execute(conn, _INSERT, new_job(models.JobKind.POSTBACK, NOW))
    job_id = await _last_id(db)
    async with db.write() as conn:
        first = await hot.execute(conn, _MARK, {"job": job_id, "worker": "w1", "now": NOW})
        await conn.execute(jobs.update().where(jobs.c.id == job_id).values(state="running"))
        second = await hot.execute(conn, _MARK, {"job": job_id, "worker": "w2", "now": NOW})
    assert (first.rowcount, second.rowcount) == (1, 0)
    assert (await db.read_hot(_BY_ID, {"id": job_id})).first().locked_by == "w1"


async def test_hot_writes_belong_to_the_callers_transaction(db: Database) -> None:
    """A hot write in a transaction that fails is rolled back with it."""
    seen: list[int] = []

    async def insert_then_fail() -> None:
        async with db.write() as conn:
            await hot.execute(conn, _INSERT, new_job(models.JobKind.POSTBACK, NOW))
            count = sa.select(sa.func.count()).select_from(jobs)
            seen.append(int((await conn.execute(count)).scalar_one()))
            raise LookupError("after the write")

    with pytest.raises(LookupError):
        await insert_then_fail()
    assert seen == [1]  # written inside the transaction
    assert await _count(db) == 0


async def _count(db: Database) -> int:
    async with db.read() as conn:
        return int((await conn.execute(sa.select(sa.func.count()).select_from(jobs))).scalar_one())


async def test_a_bind_value_of_the_wrong_type_fails_before_anything_is_written(
    db: Database,
) -> None:
    """A naive datetime is refused by the column type, as through `conn.execute`."""
    with pytest.raises((ValueError, sa.exc.StatementError), match="naive"):
        async with db.write() as conn:
            await hot.execute(
                conn, _INSERT, new_job(models.JobKind.POSTBACK, NOW.replace(tzinfo=None))
            )
    assert await _count(db) == 0
