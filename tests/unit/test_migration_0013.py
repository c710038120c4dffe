"""Migration 0013 on a database of the revision before it: accounts that exist keep XML
postbacks, templates that exist have no client-reference, on both databases."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from mmsgate import models
from mmsgate import settings as settings_mod
from mmsgate.store import accounts
from mmsgate.store.db import MIGRATIONS, Database

pytestmark = pytest.mark.anyio
NOW = dt.datetime(2026, 3, 4, 5, 6, 7, tzinfo=dt.UTC)


def downgrade_to_0012(connection: sa.Connection) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    command.downgrade(config, "0012")


async def test_existing_accounts_keep_xml_postbacks(db_url: str) -> None:
    """An account and a template written before 0013 read back after it with the XML
    postback format and no client-reference."""
    db = Database(settings_mod.normalize_database_url(db_url))
    try:
        await db.migrate()
        async with db.writer.begin() as conn:
            await conn.run_sync(downgrade_to_0012)
            await conn.execute(
                sa.text(
                    "INSERT INTO accounts (name, key_hash, key_hint, postback_secret, mode,"
                    " senders, service_ids, allowed_ips, api_enabled, created_at) VALUES"
                    " ('old', 'h', 'k', 's', 'optimized', '[]', '[]', '[]', true, :now)"
                ),
                {"now": NOW},
            )
            account_id = await conn.scalar(sa.text("SELECT id FROM accounts"))
            await conn.execute(
                sa.text(
                    "INSERT INTO templates (account_id, kind, name, state, slides, slide_count,"
                    " total_size, created_at) VALUES (:a, 'saved', 't', 'ready', '[]', 0, 0,"
                    " :now)"
                ),
                {"a": account_id, "now": NOW},
            )
        assert await db.migrate()  # 0013, and whatever follows it
        found = await accounts.by_name(db, "old")
        assert found is not None
        assert found.postback_format is models.PostbackFormat.XML
        target = await accounts.postback_target(db, found.id)
        assert target == models.PostbackTarget(None, "s", models.PostbackFormat.XML)
        async with db.read() as conn:
            assert await conn.scalar(sa.text("SELECT client_reference FROM templates")) is None
    finally:
        await db.close()
