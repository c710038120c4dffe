"""Mobile-originated MMS: stored with its N401 postback in one transaction, and found again
by the token in its content URLs."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import TypedDict

import sqlalchemy as sa

from mmsgate import models
from mmsgate.store.db import Database
from mmsgate.store.deliveries import postback_job
from mmsgate.store.rows import Row
from mmsgate.store.schema import jobs, mo_messages

# The longest sender address an MO message can be stored with: mo_messages.sender is a
# String(32) (schema.py), and PostgreSQL refuses a longer value.
MAX_ADDRESS = 32


class MoPart(TypedDict):
    """A part of an MO message, its bytes in the blob store under `blob_key`."""

    content_type: str
    blob_key: str
    size: int


@dataclasses.dataclass(frozen=True, slots=True)
class MoMessage:
    """An MMS received from a handset, for the account that owns the number it was sent to."""

    tracking_id: str
    account_id: int
    sender: str
    recipient: str
    subject: str | None
    token: str  # makes the content URLs unguessable
    parts: list[MoPart]  # in the order the handset sent them, the layout (SMIL) left out
    received_at: dt.datetime


def mo_message_of(row: Row) -> MoMessage:
    """A row of the mo_messages table as a MoMessage."""
    return MoMessage(**{field.name: getattr(row, field.name) for field in _FIELDS})


_FIELDS = dataclasses.fields(MoMessage)


async def store(
    db: Database, message: MoMessage, postback: models.PostbackEvent, now: dt.datetime
) -> None:
    values = {field.name: getattr(message, field.name) for field in _FIELDS}
    async with db.write() as conn:
        await conn.execute(mo_messages.insert().values(values))
        await conn.execute(jobs.insert().values(postback_job(postback, now)))


async def by_token(db: Database, token: str) -> MoMessage | None:
    async with db.read() as conn:
        query = sa.select(mo_messages).where(mo_messages.c.token == token)
        row = (await conn.execute(query)).first()
    return None if row is None else mo_message_of(row)
