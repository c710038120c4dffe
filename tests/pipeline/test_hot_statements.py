"""Hot statements (`store.hot`) read and write exactly what the same statement does through
SQLAlchemy's `conn.execute`, on both databases, on their own and inside the caller's
transaction."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

import pytest
import sqlalchemy as sa

from mmsgate import models
from mmsgate.store import hot
from mmsgate.store.db import Database
from mmsgate.store.jobs import new_job
from mmsgate.store.schema import UtcDateTime, jobs

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
        written = await db.run(
            _INSERT, new_job(models.JobKind.POSTBACK, NOW, payload=payload), conn
        )
    assert written.rowcount == 1
    assert written.rows == []
    job_id = await _last_id(db)

    row = (await db.run(_BY_ID, {"id": job_id})).first()
    async with db.read() as conn:
        plain = (await conn.execute(_BY_ID.statement, {"id": job_id})).one()
    assert tuple(row) == tuple(plain)
    assert row.payload == payload
    assert row.kind == "postback"
    assert row.locked_by is None
    assert row.run_at == NOW
    assert row.run_at.tzinfo is not None
    assert (await db.run(_BY_ID, {"id": job_id + 1000})).first() is None


async def test_a_hot_update_counts_rows_and_keeps_the_statements_own_values(
    db: Database,
) -> None:
    """An UPDATE's WHERE with a value of its own (state = 'pending') applies: the first
    update changes one row, the second (after the state moved) none."""
    async with db.write() as conn:
        await db.run(_INSERT, new_job(models.JobKind.POSTBACK, NOW), conn)
    job_id = await _last_id(db)
    async with db.write() as conn:
        first = await db.run(_MARK, {"job": job_id, "worker": "w1", "now": NOW}, conn)
        await conn.execute(jobs.update().where(jobs.c.id == job_id).values(state="running"))
        second = await db.run(_MARK, {"job": job_id, "worker": "w2", "now": NOW}, conn)
    assert (first.rowcount, second.rowcount) == (1, 0)
    assert (await db.run(_BY_ID, {"id": job_id})).first().locked_by == "w1"


async def test_hot_writes_belong_to_the_callers_transaction(db: Database) -> None:
    """A hot write in a transaction that fails is rolled back with it."""
    seen: list[int] = []

    async def insert_then_fail() -> None:
        async with db.write() as conn:
            await db.run(_INSERT, new_job(models.JobKind.POSTBACK, NOW), conn)
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
            await db.run(_INSERT, new_job(models.JobKind.POSTBACK, NOW.replace(tzinfo=None)), conn)
    assert await _count(db) == 0


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


_types = sa.MetaData()
_samples = sa.Table(
    "hot_samples",
    _types,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("at", UtcDateTime),
    sa.Column("data", sa.JSON),
    sa.Column("colour", sa.Enum(Colour)),
    sa.Column("blob", sa.LargeBinary),
    sa.Column("flag", sa.Boolean),
    sa.Column("ratio", sa.Float),
    sa.Column("name", sa.Text),
)
_SAMPLE_KEYS = ("id", "at", "data", "colour", "blob", "flag", "ratio", "name")
_PUT_SAMPLE = hot.Hot(_samples.insert(), keys=_SAMPLE_KEYS)
_SAMPLE = hot.Hot(sa.select(_samples).where(_samples.c.id == sa.bindparam("id")))
_RENAME_SAMPLE = hot.Hot(
    _samples.update()
    .where(_samples.c.id == sa.bindparam("id"))
    .values(name=sa.bindparam("new_name"), at=sa.bindparam("new_at", type_=UtcDateTime()))
    .returning(*_samples.c)
)
_FULL: dict[str, Any] = {
    "id": 1,
    "at": dt.datetime(2026, 3, 4, 5, 6, 7, 891011, tzinfo=dt.timezone(dt.timedelta(hours=2))),
    "data": {"é": [1, 2.5, None, True], "nested": {"x": "<y/>"}},
    "colour": Colour.BLUE,
    "blob": b"\x00\xff\x10binary\n",
    "flag": True,
    "ratio": 0.125,
    "name": "snowman ☃",
}
_EMPTY: dict[str, Any] = dict.fromkeys(_SAMPLE_KEYS) | {"id": 2}


async def _plain(db: Database, sample_id: int) -> tuple[object, ...]:
    async with db.read() as conn:
        return tuple((await conn.execute(_SAMPLE.statement, {"id": sample_id})).one())


async def test_hot_results_equal_sqlalchemys_for_every_column_type(db: Database) -> None:
    """Aware datetimes (given in another zone), JSON, enums, bytes, booleans, floats, text
    and NULLs of each: written hot (first in a transaction and after another statement),
    they read back hot, alone and inside a transaction, exactly as `conn.execute` reads
    them, and an UPDATE … RETURNING hot gives what a plain read then finds."""
    async with db.write() as conn:
        await conn.run_sync(_types.create_all)
    async with db.write() as conn:
        first = await db.run(_PUT_SAMPLE, _FULL, conn)
        second = await db.run(_PUT_SAMPLE, _EMPTY, conn)
    assert (first.rowcount, second.rowcount) == (1, 1)
    for sample in (_FULL, _EMPTY):
        plain = await _plain(db, _FULL["id"] if sample is _FULL else _EMPTY["id"])
        alone = (await db.run(_SAMPLE, {"id": sample["id"]})).first()
        async with db.write() as conn:
            leading = (await db.run(_SAMPLE, {"id": sample["id"]}, conn)).first()
            following = (await db.run(_SAMPLE, {"id": sample["id"]}, conn)).first()
        assert tuple(alone) == tuple(leading) == tuple(following) == plain
        assert tuple(alone) == tuple(
            sample[key] if key != "at" or sample[key] is None else NOW_IN_UTC
            for key in _SAMPLE_KEYS
        )
    assert (alone.at, alone.colour, alone.blob) == (None, None, None)
    async with db.write() as conn:
        renamed = await db.run(_RENAME_SAMPLE, {"id": 1, "new_name": None, "new_at": NOW}, conn)
    assert renamed.rowcount == 1
    assert tuple(renamed.first()) == await _plain(db, 1)
    assert renamed.first().name is None
    assert renamed.first().colour is Colour.BLUE


NOW_IN_UTC = _FULL["at"].astimezone(dt.UTC)
