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
from mmsgate.store.hot import Hot
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
        results = await asyncio.gather(*(pg_db.read_hot(lookup, {}) for _ in range(200)))
    finally:
        await pg_db.close()
    backends = {result.first().pid for result in results}
    assert 1 < len(backends) <= db_mod.HOT_READS
