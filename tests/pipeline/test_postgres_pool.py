"""The PostgreSQL connection pool: a connection the server dropped while it sat idle is
replaced before anyone uses it, and hot lookups never take more than their share."""

from __future__ import annotations

import asyncio
import itertools
import os

import asyncpg
import pytest
import sqlalchemy as sa

from mmsgate import settings as settings_mod
from mmsgate.store import db as db_mod
from mmsgate.store.db import Database
from mmsgate.store.hot import Hot, Lookup
from tests import pg

_names = itertools.count()
pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(
        "postgresql" not in os.environ.get("MMSGATE_TEST_BACKENDS", "sqlite,postgresql"),
        reason="PostgreSQL not among MMSGATE_TEST_BACKENDS",
    ),
]


@pytest.fixture
def pg_url(pg_admin_url: str, pg_template: str) -> str:
    name = f"pool{os.getpid()}_{next(_names)}"
    return settings_mod.normalize_database_url(pg.create_database(pg_admin_url, name, pg_template))


async def _backend_pid(db: Database) -> int:
    async with db.read() as conn:
        return int((await conn.execute(sa.text("SELECT pg_backend_pid()"))).scalar_one())


async def test_a_connection_dropped_while_idle_is_replaced_before_use(
    pg_url: str, pg_admin_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server ends the pooled connection's backend; after the idle time the next
    checkout finds it dead, opens another, and the caller's statement succeeds."""
    pg_db = Database(pg_url)
    try:
        first = await _backend_pid(pg_db)
        admin = await asyncpg.connect(pg_admin_url + "/postgres")
        try:
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", first)
        finally:
            await admin.close()
        monkeypatch.setattr(db_mod, "IDLE_PING_SECONDS", 0.0)  # every connection is idle now
        second = await _backend_pid(pg_db)
        assert second != first
    finally:
        await pg_db.close()


async def test_hot_lookups_share_a_bounded_number_of_connections(pg_url: str) -> None:
    """Hundreds of concurrent hot lookups run on at most HOT_READS connections."""
    pg_db = Database(pg_url)
    lookup = Hot(
        sa.select(sa.func.pg_backend_pid().label("pid"), sa.func.pg_sleep(0.01).label("slept"))
    )
    try:
        results = await asyncio.gather(*(pg_db.run(lookup, {}) for _ in range(200)))
    finally:
        await pg_db.close()
    backends = {result.first().pid for result in results}
    assert 1 < len(backends) <= db_mod.HOT_READS


async def test_concurrent_row_lookups_share_one_query(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lookups made in one turn of the event loop are answered by one query: each caller
    gets its own row (the first of several), a repeated key gets it twice, a missing one
    None."""
    pg_db = Database(pg_url)
    one = Hot(sa.select(sa.literal("unused").label("name")).where(sa.bindparam("key") == ""))
    values = sa.values(sa.column("name", sa.String), sa.column("n", sa.Integer), name="v").data(
        [("a", 1), ("b", 2), ("b", 3)]
    )
    many = Hot(
        sa.select(values.c.name, values.c.n)
        .where(values.c.name == sa.any_(sa.bindparam("keys", type_=sa.ARRAY(sa.String))))
        .order_by(values.c.n)
    )
    queries: list[object] = []
    run = pg_db.run

    async def counted(statement: Hot | Lookup, params: dict[str, object]) -> object:
        queries.append(params)
        return await run(statement, params)

    monkeypatch.setattr(pg_db, "run", counted)
    lookup = Lookup(one, many, "name")
    try:
        found = await asyncio.gather(*(run(lookup, {"key": key}) for key in ("a", "b", "zz", "a")))
        rows = [result.first() for result in found]
    finally:
        await pg_db.close()
    assert [row and (row.name, row.n) for row in rows] == [("a", 1), ("b", 2), None, ("a", 1)]
    assert queries == [{"keys": ["a", "b", "zz"]}]


async def test_a_failed_shared_lookup_fails_every_caller(pg_url: str) -> None:
    """When the one query fails, each lookup that shared it raises its error."""
    pg_db = Database(pg_url)
    one = Hot(sa.select(sa.literal(1).label("n")).where(sa.bindparam("key") == ""))
    broken = Hot(
        sa.select(sa.cast(sa.literal("not a number"), sa.Integer).label("n")).where(
            sa.literal("x") == sa.any_(sa.bindparam("keys", type_=sa.ARRAY(sa.String)))
        )
    )
    try:
        outcomes = await asyncio.gather(
            *(pg_db.run(Lookup(one, broken, "n"), {"key": key}) for key in ("x", "y")),
            return_exceptions=True,
        )
    finally:
        await pg_db.close()
    assert len(outcomes) == 2
    assert all("invalid input syntax for type integer" in str(o) for o in outcomes)
