"""Group commit: concurrent work (small writes and accepted requests alike) shares one
transaction, and one failing piece of work fails only its own caller."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from mmsgate import codes, errors, models
from mmsgate.store.schema import accounts, templates
from mmsgate.store.writer import NewTemplate
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


async def test_items_with_one_key_go_to_one_call_with_results_in_order(
    gateway: Gateway,
) -> None:
    """Thirty callers with the same key: one call of the work with all their items, one
    commit, and each caller gets its own item's result; another key gets its own call."""
    db = gateway.services.db
    calls: list[list[int]] = []

    async def double(conn: AsyncConnection, items: list[int]) -> list[int]:
        calls.append(list(items))
        await conn.execute(sa.select(1))
        return [2 * n for n in items]

    results = await asyncio.gather(
        *(db.batched(double, key="double", item=n) for n in range(30)),
        db.batched(double, key="other", item=100),
    )
    assert results == [2 * n for n in range(30)] + [200]
    assert sorted(calls) == [list(range(30)), [100]]


async def test_a_failing_group_fails_only_its_own_callers(gateway: Gateway) -> None:
    """A group whose work raises fails each of its callers; other work in the batch commits."""
    db = gateway.services.db

    async def broken(conn: AsyncConnection, items: list[int]) -> list[int]:
        await conn.execute(sa.text("SELECT * FROM no_such_table"))
        return items

    async def rename(conn: AsyncConnection) -> str:
        await conn.execute(
            accounts.update().where(accounts.c.id == gateway.account.id).values(name="kept")
        )
        return "renamed"

    results = await asyncio.gather(
        db.batched(broken, key="broken", item=1),
        db.batched(broken, key="broken", item=2),
        db.batched(rename),
        return_exceptions=True,
    )
    assert all(isinstance(r, sa.exc.SQLAlchemyError) for r in results[:2])
    assert results[2] == "renamed"
    async with db.read() as conn:
        name = await conn.scalar(
            sa.select(accounts.c.name).where(accounts.c.id == gateway.account.id)
        )
    assert name == "kept"


def _template(account_id: int, name: str) -> NewTemplate:
    return NewTemplate(
        account_id=account_id,
        kind="inline",
        name=name,
        subject=None,
        state=models.TemplateState.READY,
        slides=[],
        total_size=0,
    )


async def test_accepted_requests_share_the_group_commit_and_fail_alone(
    gateway: Gateway,
) -> None:
    """Requests handed to the writer while other batched work waits commit with it in one
    transaction; a request whose rows cannot be written (no such account) fails alone with
    E503 and leaves nothing, the others are stored."""
    commits = 0

    def count(*_args: object) -> None:
        nonlocal commits
        commits += 1

    # Every engine's commits, whichever engine the writer would use.
    sa.event.listen(sa.engine.Engine, "commit", count)
    try:
        await _share_and_fail_alone(gateway, lambda: commits)
    finally:
        sa.event.remove(sa.engine.Engine, "commit", count)


async def _share_and_fail_alone(gateway: Gateway, commits: Callable[[], int]) -> None:
    db = gateway.services.db
    writer = gateway.services.writer

    async def rename(conn: AsyncConnection) -> str:
        await conn.execute(
            accounts.update().where(accounts.c.id == gateway.account.id).values(name="shared")
        )
        return "renamed"

    saved = await asyncio.gather(
        *(writer.save_template(_template(gateway.account.id, f"t{n}")) for n in range(10)),
        db.batched(rename),
    )
    assert saved[10] == "renamed"
    assert len(set(saved[:10])) == 10
    assert commits() == 1  # ten requests and the other work, one transaction

    results = await asyncio.gather(
        *(writer.save_template(_template(gateway.account.id, f"u{n}")) for n in range(5)),
        writer.save_template(_template(10_000, "orphan")),
        return_exceptions=True,
    )
    failed = results[5]
    assert isinstance(failed, errors.ApiError)
    assert failed.code is codes.ErrorCode.INTERNAL
    assert all(isinstance(r, int) for r in results[:5])
    async with db.read() as conn:
        names = set(
            await conn.scalars(sa.select(templates.c.name).where(templates.c.kind == "inline"))
        )
    assert {f"u{n}" for n in range(5)} <= names
    assert "orphan" not in names
