"""Idempotency keys: which request of an account first used a key, and what it was answered.

A key is written by the writer (store/writer.py) in the transaction that accepts its
request, so the key and what it accepted are committed together or not at all: a retry
after a kill -9 finds either both or neither. The primary key (account, key) settles a race:
of two requests that both found the key free, the second one's transaction fails on it,
alone, and that request is then answered from the row the first one wrote.

The answer is kept as data (the API's result values, `api/results.py` `to_data`), never
in a wire format: a replay renders it again in the format of the API that asked. The
mms-id is a column of its own, as the accept assigns it inside the transaction.

A key binds for WINDOW. After that it is free again: the write that reuses it deletes the
old row in its own transaction, and the worker's housekeeping (`prune`) deletes the rest.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence

import sqlalchemy as sa

from mmsgate import models
from mmsgate.store.db import Database
from mmsgate.store.hot import Hot
from mmsgate.store.schema import idempotency_keys

WINDOW = dt.timedelta(hours=24)


@dataclasses.dataclass(frozen=True, slots=True)
class NewKey:
    """A key to store with the accept of its request: the request's fingerprint and its
    answer as data, the mms-id left out (the accept assigns it)."""

    key: str
    fingerprint: str
    result: Mapping[str, models.JSONValue]


@dataclasses.dataclass(frozen=True, slots=True)
class StoredKey:
    """A key in use: the request that first used it, what it was answered, and when."""

    fingerprint: str
    mms_id: int
    result: Mapping[str, models.JSONValue]
    created_at: dt.datetime


_FIND = Hot(
    sa.select(
        idempotency_keys.c.fingerprint,
        idempotency_keys.c.mms_id,
        idempotency_keys.c.result,
        idempotency_keys.c.created_at,
    ).where(
        idempotency_keys.c.account_id == sa.bindparam("account_id"),
        idempotency_keys.c.key == sa.bindparam("key"),
        idempotency_keys.c.created_at > sa.bindparam("since"),
    )
)


async def find(db: Database, account_id: int, key: str, now: dt.datetime) -> StoredKey | None:
    """The account's key as the request that first used it left it, if that was within
    WINDOW of `now`."""
    params = {"account_id": account_id, "key": key, "since": now - WINDOW}
    row = (await db.run(_FIND, params)).first()
    if row is None:
        return None
    return StoredKey(row.fingerprint, int(row.mms_id), row.result, row.created_at)


_EXPIRED = idempotency_keys.delete().where(
    idempotency_keys.c.account_id == sa.bindparam("account_id"),
    idempotency_keys.c.key == sa.bindparam("key"),
    idempotency_keys.c.created_at <= sa.bindparam("since"),
)


def write(conn: sa.Connection, keys: Sequence[tuple[int, NewKey, int]], now: dt.datetime) -> None:
    """In the accept's transaction: store each (account, key, mms-id), after deleting an
    expired row of the same key. A key still in use makes the INSERT fail (its primary
    key), and with it the transaction."""
    if not keys:
        return
    since = now - WINDOW
    conn.execute(_EXPIRED, [{"account_id": a, "key": k.key, "since": since} for a, k, _ in keys])
    conn.execute(
        idempotency_keys.insert(),
        [
            {
                "account_id": account_id,
                "key": new.key,
                "fingerprint": new.fingerprint,
                "mms_id": mms_id,
                "result": dict(new.result),
                "created_at": now,
            }
            for account_id, new, mms_id in keys
        ],
    )


async def prune(db: Database, *, now: dt.datetime, batch: int = 1000) -> int:
    """Delete the keys older than WINDOW, `batch` rows per transaction; how many."""
    pick = (
        sa.select(idempotency_keys.c.account_id, idempotency_keys.c.key)
        .where(idempotency_keys.c.created_at <= now - WINDOW)
        .limit(batch)
    )
    deleted = 0
    while True:
        async with db.write() as conn:
            count = (
                await conn.execute(
                    idempotency_keys.delete().where(
                        sa.tuple_(idempotency_keys.c.account_id, idempotency_keys.c.key).in_(pick)
                    )
                )
            ).rowcount
        deleted += count
        if count < batch:
            return deleted
