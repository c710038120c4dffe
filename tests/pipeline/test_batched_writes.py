"""Group commit for small writes: concurrent work shares one transaction, and one failing
piece of work fails only its own caller."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from mmsgate.store.schema import accounts
from tests.conftest import Gateway

pytestmark = pytest.mark.anyio


async def test_concurrent_work_commits_together_and_a_failure_stays_alone(
    gateway: Gateway,
) -> None:
    """Twenty renames and one bad statement: the twenty commit, the bad one raises."""
    db = gateway.services.db
    commits = 0

    def count(*_args: object) -> None:
        nonlocal commits
        commits += 1

    sa.event.listen(db.writer.sync_engine, "commit", count)

    def rename(n: int):  # type: ignore[no-untyped-def]
        async def work(conn: AsyncConnection) -> int:
            await conn.execute(
                accounts.update().where(accounts.c.id == gateway.account.id).values(name=f"n{n}")
            )
            return n

        return work

    async def broken(conn: AsyncConnection) -> None:
        await conn.execute(sa.text("SELECT * FROM no_such_table"))

    together = await asyncio.gather(*(db.batched(rename(n)) for n in range(20)))
    assert together == list(range(20))
    assert commits == 1  # twenty pieces of work, one transaction
    results = await asyncio.gather(
        *(db.batched(rename(n)) for n in range(20)), db.batched(broken), return_exceptions=True
    )
    assert results[:20] == list(range(20))
    assert isinstance(results[20], sa.exc.SQLAlchemyError)
    async with db.read() as conn:
        name = await conn.scalar(
            sa.select(accounts.c.name).where(accounts.c.id == gateway.account.id)
        )
    assert name == "n19"
    assert commits == 1 + 20  # after the failure each ran alone; the broken one rolled back
