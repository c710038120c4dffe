"""Mobile-originated MMS: stored with its N401 postback in one transaction, and found again
by the token in its content URLs."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa

from mmsgate import models
from mmsgate.store.db import Database
from mmsgate.store.deliveries import postback_job
from mmsgate.store.schema import jobs, mo_messages

# The longest sender address an MO message can be stored with: mo_messages.sender is a
# String(32) (schema.py), and PostgreSQL refuses a longer value.
MAX_ADDRESS = 32


async def store(
    db: Database, row: dict[str, Any], postback: models.PostbackEvent, now: dt.datetime
) -> None:
    async with db.write() as conn:
        await conn.execute(mo_messages.insert().values(row))
        await conn.execute(jobs.insert().values(postback_job(postback, now)))


async def by_token(db: Database, token: str) -> Any:
    async with db.read() as conn:
        query = sa.select(mo_messages).where(mo_messages.c.token == token)
        return (await conn.execute(query)).first()
