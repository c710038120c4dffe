"""The SQLite connection under SQLAlchemy's async engine: results, errors, transactions, and
statements that prove slow moving off the event loop."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from mmsgate.store import sqlite_driver
from mmsgate.store.db import Database

pytestmark = pytest.mark.anyio
things = sa.Table(
    "things",
    sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String, nullable=False, unique=True),
)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    async with database.write() as conn:
        await conn.run_sync(things.metadata.create_all)
    yield database
    await database.close()


async def test_rows_counts_and_ids_come_back(db: Database) -> None:
    """Inserts report their id and rowcount; selects return every row; RETURNING works."""
    async with db.write() as conn:
        result = await conn.execute(things.insert().values(name="a"))
        assert result.inserted_primary_key == (1,)
        await conn.execute(things.insert(), [{"name": "b"}, {"name": "c"}])
        changed = await conn.execute(
            things.update().where(things.c.id > 1).values(name=things.c.name + "!")
        )
        assert changed.rowcount == 2
        gone = await conn.scalars(things.delete().where(things.c.id == 3).returning(things.c.name))
        assert gone.all() == ["c!"]
    async with db.read() as conn:
        assert (
            await conn.execute(sa.select(things.c.name).order_by(things.c.id))
        ).scalars().all() == ["a", "b!"]


async def test_errors_are_sqlalchemy_errors_and_roll_back(db: Database) -> None:
    """A constraint violation raises IntegrityError and leaves nothing of its transaction."""

    async def twice() -> None:
        async with db.write() as conn:
            await conn.execute(things.insert().values(name="x"))
            await conn.execute(things.insert().values(name="x"))

    with pytest.raises(sa.exc.IntegrityError):
        await twice()
    async with db.read() as conn:
        assert await conn.scalar(sa.select(sa.func.count()).select_from(things)) == 0


async def test_commit_is_durable_across_connections(db: Database, tmp_path: Path) -> None:
    """What one Database commits, another opening the same file reads."""
    async with db.write() as conn:
        await conn.execute(things.insert().values(name="kept"))
    other = Database(db.url)
    try:
        async with other.read() as conn:
            assert await conn.scalar(sa.select(things.c.name)) == "kept"
    finally:
        await other.close()


async def test_a_slow_statement_moves_to_the_thread(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A statement that once took longer than the limit runs off the event loop from then on,
    with the same results."""
    monkeypatch.setattr(sqlite_driver, "INLINE_LIMIT", -1.0)  # every statement is "slow"
    monkeypatch.setattr(sqlite_driver, "_slow", set())
    query = sa.select(sa.func.count()).select_from(things)
    async with db.read() as conn:
        assert await conn.scalar(query) == 0
    assert any("count(*)" in sql for sql in sqlite_driver._slow)
    async with db.write() as conn:
        await conn.execute(things.insert().values(name="y"))
    async with db.read() as conn:
        assert await conn.scalar(query) == 1  # now run in the connection's thread
