"""Per-route throughput limits shared by all workers: each submit takes the route's next
free slot from the database, so N workers on one PostgreSQL (or processes on one SQLite
file) together send no faster than the route's `max_mps`.

A slot is taken with one UPDATE … RETURNING that moves the route's `next_slot` on by one
interval from max(next_slot, now): no lock is held while waiting for the slot.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from mmsgate.store.db import Database
from mmsgate.store.schema import route_pacing


async def take_slot(db: Database, route: str, max_mps: float, now: float) -> float:
    """The Unix time at which this submit may go (now, or later when the route is busy)."""
    gap = 1.0 / max_mps
    start = sa.case((route_pacing.c.next_slot > now, route_pacing.c.next_slot), else_=now)
    update = (
        route_pacing.update()
        .where(route_pacing.c.route == route)
        .values(next_slot=start + gap)
        .returning(route_pacing.c.next_slot)
    )
    insert = postgresql.insert if db.url.startswith("postgresql") else sqlite.insert
    first = insert(route_pacing).values(route=route, next_slot=now).on_conflict_do_nothing()

    async def work(conn: AsyncConnection) -> float:
        await conn.execute(first)
        return float((await conn.execute(update)).scalar_one()) - gap

    return await db.batched(work)
