"""The migrations create exactly the schema the code declares, on both databases."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from mmsgate import settings as settings_mod
from mmsgate.store.db import Database
from mmsgate.store.schema import metadata

pytestmark = pytest.mark.anyio


async def test_migrated_schema_matches_metadata(db_url: str) -> None:
    """After `migrate`, autogenerate finds no difference between the database and schema.py."""
    db = Database(settings_mod.normalize_database_url(db_url))
    try:
        await db.migrate()
        await db.migrate()  # idempotent
        async with db.writer.connect() as conn:
            diff = await conn.run_sync(
                lambda sync: compare_metadata(
                    MigrationContext.configure(sync, opts={"compare_type": True}), metadata
                )
            )
    finally:
        await db.close()
    assert diff == []
