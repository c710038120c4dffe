"""Route health in the database: what the workers last found of each MM7 route, read by
every process (a `serve` answering `/readyz` is not the worker that saw the fault).

No row means healthy: a route that never failed costs nothing. Writers call `change` only
when what they saw differs from what they last read, so a route that stays healthy is
never written.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from mmsgate.store.db import Database, PerDialect
from mmsgate.store.rows import Row
from mmsgate.store.schema import route_health


@dataclasses.dataclass(frozen=True, slots=True)
class RouteHealth:
    """One route's health: unhealthy with the reason in words, since its last change."""

    route: str
    healthy: bool
    reason: str | None
    since: dt.datetime | None  # None: never unhealthy


class Change(enum.Enum):
    """What a `change` call did to the stored health."""

    NONE = "none"  # it was already so (another worker wrote it first)
    HEALTH = "health"  # healthy became unhealthy, or the other way
    REASON = "reason"  # still unhealthy, for another reason


def _row(row: Row) -> RouteHealth:
    return RouteHealth(row.route, bool(row.healthy), row.reason, row.since)


async def get(db: Database, route: str) -> RouteHealth:
    """The route's stored health (healthy when it has no row)."""
    async with db.read() as conn:
        row = (
            await conn.execute(sa.select(route_health).where(route_health.c.route == route))
        ).first()
    return _row(row) if row is not None else RouteHealth(route, True, None, None)


async def unhealthy(db: Database) -> list[RouteHealth]:
    """The routes unhealthy now, by name."""
    return [h for h in await known(db) if not h.healthy]


async def known(db: Database) -> list[RouteHealth]:
    """Every route that was ever unhealthy, as it is now, by name (a table of a few rows)."""
    async with db.read() as conn:
        rows = await conn.execute(sa.select(route_health).order_by(route_health.c.route))
        return [_row(row) for row in rows]


def _insert(insert: Callable[[sa.Table], sqlite.Insert | postgresql.Insert]) -> sa.Executable:
    return (
        insert(route_health)
        .values(route=sa.bindparam("route"), healthy=False, reason=sa.bindparam("reason"),
                since=sa.bindparam("now"))
        .on_conflict_do_nothing(index_elements=[route_health.c.route])
        .returning(route_health.c.route)
    )  # fmt: skip


_INSERT = PerDialect(sqlite=_insert(sqlite.insert), postgresql=_insert(postgresql.insert))


async def change(
    db: Database, route: str, *, healthy: bool, reason: str | None, now: dt.datetime
) -> Change:
    """Store the route's health when it differs from what is stored; say what changed.

    Conditional statements rather than read-then-write: of several workers seeing the same
    fault at once, exactly one finds it changed (and logs it)."""
    reason = None if healthy else reason
    where = route_health.c.route == route
    async with db.write() as conn:
        flipped = await conn.execute(
            route_health.update()
            .where(where, route_health.c.healthy.is_not(healthy))
            .values(healthy=healthy, reason=reason, since=now)
        )
        if flipped.rowcount:
            return Change.HEALTH
        if healthy:
            return Change.NONE
        params = {"route": route, "reason": reason, "now": now}
        inserted = await conn.execute(db.pick(_INSERT), params)
        if inserted.first() is not None:
            return Change.HEALTH
        other = await conn.execute(
            route_health.update()
            .where(where, route_health.c.reason.is_distinct_from(reason))
            .values(reason=reason)
        )
        return Change.REASON if other.rowcount else Change.NONE
