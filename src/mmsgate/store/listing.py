"""An account's recipients, newest first, a page at a time.

The order is total and stable: `created_at`, then `tracking_id`, both descending (the
recipients of one send share a `created_at`). A page starts after a `Position`, the last
item of the page before it (keyset paging), so rows written while a client pages through
never shift what it has not seen yet, and no page costs more than its own rows: the index
`ix_recipients_account_created` (account_id, created_at, tracking_id) serves the filter on
the account and the order. A page takes three queries, whatever its size: its recipients,
their events, their fallbacks.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import defaultdict
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from mmsgate import models
from mmsgate.store.db import Database
from mmsgate.store.fallbacks import Fallback, fallback_of
from mmsgate.store.queries import RecipientStatus, recipient_status_of, status_query
from mmsgate.store.rows import Row
from mmsgate.store.schema import fallbacks, messages, recipient_events, recipients


@dataclasses.dataclass(frozen=True, slots=True)
class Position:
    """Where a page ended: its last item's place in the newest-first order."""

    created_at: dt.datetime
    tracking_id: str


@dataclasses.dataclass(frozen=True, slots=True)
class MessageFilter:
    """Which recipients to list; every field given must match (None: any)."""

    msisdn: str | None = None
    states: frozenset[models.RecipientState] = frozenset()
    since: dt.datetime | None = None  # created at or after
    until: dt.datetime | None = None  # created before
    client_reference: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Page:
    """One page of recipients, newest first, and whether more follow it."""

    items: tuple[RecipientStatus, ...]
    more: bool

    @property
    def last(self) -> Position | None:
        """Where the next page starts, when there is one."""
        if not self.more or not self.items:
            return None
        return Position(self.items[-1].created_at, self.items[-1].tracking_id)


async def find(
    db: Database, account_id: int, where: MessageFilter, limit: int, after: Position | None
) -> Page:
    """Up to `limit` of the account's recipients matching `where`, newest first, after
    `after` when given."""
    query = page_query(account_id, where, limit, after)
    async with db.read() as conn:
        rows = (await conn.execute(query)).all()
        more = len(rows) > limit
        rows = rows[:limit]
        ids = [row.tracking_id for row in rows]
        events = await _events(conn, ids)
        found = await _fallbacks(conn, ids)
    items = tuple(
        recipient_status_of(row, events.get(row.tracking_id, ()), found.get(row.tracking_id))
        for row in rows
    )
    return Page(items, more)


def page_query(
    account_id: int, where: MessageFilter, limit: int, after: Position | None
) -> sa.Select[tuple[object, ...]]:
    """The statement of one page: `limit` + 1 rows, the last telling whether more follow."""
    return (
        status_query()
        .where(recipients.c.account_id == account_id, *_conditions(where, after))
        .order_by(recipients.c.created_at.desc(), recipients.c.tracking_id.desc())
        .limit(limit + 1)
    )


def _conditions(where: MessageFilter, after: Position | None) -> list[sa.ColumnElement[bool]]:
    conditions: list[sa.ColumnElement[bool]] = []
    if where.msisdn is not None:
        conditions.append(recipients.c.msisdn == where.msisdn)
    if where.states:
        conditions.append(recipients.c.state.in_(sorted(s.value for s in where.states)))
    if where.since is not None:
        conditions.append(recipients.c.created_at >= where.since)
    if where.until is not None:
        conditions.append(recipients.c.created_at < where.until)
    if where.client_reference is not None:
        conditions.append(messages.c.client_reference == where.client_reference)
    if after is not None:
        conditions.append(
            sa.tuple_(recipients.c.created_at, recipients.c.tracking_id)
            < sa.tuple_(
                sa.literal(after.created_at, recipients.c.created_at.type),
                sa.literal(after.tracking_id, recipients.c.tracking_id.type),
            )
        )
    return conditions


async def _events(conn: AsyncConnection, ids: Sequence[str]) -> dict[str, list[Row]]:
    """Each recipient's events, oldest first."""
    by_recipient: dict[str, list[Row]] = defaultdict(list)
    if ids:
        query = (
            sa.select(recipient_events)
            .where(recipient_events.c.tracking_id.in_(ids))
            .order_by(recipient_events.c.id)
        )
        for event in (await conn.execute(query)).all():
            by_recipient[event.tracking_id].append(event)
    return by_recipient


async def _fallbacks(conn: AsyncConnection, ids: Sequence[str]) -> dict[str, Fallback]:
    """The fallback of each recipient that took that path."""
    if not ids:
        return {}
    query = sa.select(fallbacks).where(fallbacks.c.tracking_id.in_(ids))
    return {row.tracking_id: fallback_of(row) for row in (await conn.execute(query)).all()}
