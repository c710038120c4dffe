"""Per-route throughput limits shared by all workers: each submit takes the route's next
free slot from the database, so N workers on one PostgreSQL (or processes on one SQLite
file) together send no faster than the route's `max_mps`.

A slot is taken with one upsert (INSERT … ON CONFLICT DO UPDATE … RETURNING) that moves the
route's `next_slot` on by one interval from max(next_slot, now): no lock is held while
waiting for the slot, and slots taken in the same instant are handed out one interval apart.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from mmsgate.store.db import Database, PerDialect
from mmsgate.store.schema import route_pacing

_NOW = sa.bindparam("now", type_=sa.Float())
_GAP = sa.bindparam("gap", type_=sa.Float())


def _upsert(insert: Callable[[sa.Table], sqlite.Insert | postgresql.Insert]) -> sa.Executable:
    """Built once per dialect: building it per submit cost more than running it."""
    statement = insert(route_pacing).values(route=sa.bindparam("route"), next_slot=_NOW + _GAP)
    later = sa.case((route_pacing.c.next_slot > _NOW, route_pacing.c.next_slot), else_=_NOW)
    return statement.on_conflict_do_update(
        index_elements=[route_pacing.c.route], set_={"next_slot": later + _GAP}
    ).returning(route_pacing.c.next_slot)


_TAKE = PerDialect(sqlite=_upsert(sqlite.insert), postgresql=_upsert(postgresql.insert))


async def take_slot(db: Database, route: str, max_mps: float, clock: Callable[[], float]) -> float:
    """The Unix time at which this submit may go (now, or later when the route is busy).

    `clock` is read inside the transaction, not before it: the write can wait its turn
    (other processes' commits), and a `now` read before that wait would hand out slots
    already past, which the submits would then find late."""
    gap = 1.0 / max_mps
    statement = db.pick(_TAKE)

    async def work(conn: AsyncConnection) -> float:
        params = {"route": route, "now": clock(), "gap": gap}
        return float((await conn.execute(statement, params)).scalar_one()) - gap

    return await db.batched(work)
