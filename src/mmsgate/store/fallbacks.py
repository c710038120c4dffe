"""The SMS-with-link fallback: the hosted page's content and token, the SMS parts, and the
receipts that end it.

A recipient enters the fallback path in one transaction (state `fallback`, the page, the job
that sends the SMS); the SMS's acceptance records its parts with the SMSC's ids and the N101
(sent-as SMS) together; each receipt updates its part, and the last one needed moves the
recipient to `sms_delivered` (N202) or `sms_failed` (E202), again in one transaction. Parts
are found by (route, SMSC message id) from the database, so receipts that arrive after a
reconnect or a restart still find their message.

SMSC message ids are not unique over time: an SMSC that restarts its counter, or wraps it,
gives a new SMS the id of an old one. So a receipt goes to the newest part with its id that
still waits for one (no final stat, its SMS not ended), and never moves a part that is
final. When no part waits, the receipt is either one the SMSC sends again (it missed our
answer), acknowledged and changing nothing, or the receipt of a part whose submit was just
answered and is not recorded yet, refused so that the SMSC offers it again: it is taken for
the latter while any SMS job is running with parts not yet recorded.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from mmsgate import errors, models
from mmsgate.models import JSONValue, WebPart, WebSlide
from mmsgate.store.db import Database
from mmsgate.store.deliveries import Delivery, Move, Recipient, advance, recipient_fields
from mmsgate.store.rows import Row
from mmsgate.store.schema import UtcDateTime, fallbacks, jobs, messages, recipients, sms_parts

S = models.RecipientState


@dataclasses.dataclass(frozen=True, slots=True)
class Page:
    """What the hosted page shows, and until when."""

    tracking_id: str
    subject: str | None
    slides: tuple[WebSlide, ...]
    link_expires_at: dt.datetime
    opened_at: dt.datetime | None

    def expired(self, now: dt.datetime) -> bool:
        return now >= self.link_expires_at

    def part(self, n: int) -> WebPart | None:
        """Media part n (from 1) counted over all slides in order, as the page links them."""
        flat = [p for slide in self.slides for p in slide.parts]
        return flat[n - 1] if 1 <= n <= len(flat) else None


async def begin(
    db: Database,
    row: Delivery,
    fallback: Mapping[str, object],
    *,
    slides: Sequence[WebSlide],
    reason: str,
    now: dt.datetime,
) -> bool:
    """Put a queued recipient on the fallback path: its page, with the move. (The job that
    sends the SMS is the one beginning it: it was queued when the MMS was given up.)

    `fallback` holds the rest of the fallbacks row's content (token, sms_text, ...)."""

    async def also(conn: AsyncConnection) -> None:
        values = {
            "tracking_id": row.tracking_id,
            "slides": [slide.to_data() for slide in slides],
            "reason": reason,
            "opens": 0,
            "created_at": now,
        }
        await conn.execute(fallbacks.insert().values({**fallback, **values}))

    return await advance(db, row, Move(S.FALLBACK, None, reason), now=now, also=also)


@dataclasses.dataclass(frozen=True, slots=True)
class SmsFallback(Recipient):
    """A recipient on the fallback path, with what sending its SMS needs."""

    reason: str
    token: str | None  # None when the link is disabled
    sms_text: str
    sms_coding: str
    sms_parts: int
    parts_sent: int  # parts the SMSC has taken so far: a retried submit starts after them
    expires_at: dt.datetime


def sms_fallback_of(row: Row) -> SmsFallback:
    """A row of `_SMS` as an SmsFallback."""
    return SmsFallback(
        **recipient_fields(row),
        reason=row.reason,
        token=row.token,
        sms_text=row.sms_text,
        sms_coding=row.sms_coding,
        sms_parts=row.sms_parts,
        parts_sent=row.parts_sent,
        expires_at=row.expires_at,
    )


_SMS = sa.select(
    fallbacks.c.tracking_id,
    fallbacks.c.reason,
    fallbacks.c.token,
    fallbacks.c.sms_text,
    fallbacks.c.sms_coding,
    fallbacks.c.sms_parts,
    fallbacks.c.parts_sent,
    recipients.c.state,
    recipients.c.msisdn,
    recipients.c.account_id,
    recipients.c.carrier_message_id,
    messages.c.sender,
    messages.c.operator_id,
    messages.c.template_id,
    messages.c.client_reference,
    messages.c.campaign_ref,
    messages.c.expires_at,
).select_from(
    fallbacks.join(recipients, recipients.c.tracking_id == fallbacks.c.tracking_id).join(
        messages, messages.c.id == recipients.c.message_id
    )
)


async def for_sms(db: Database, tracking_id: str) -> SmsFallback | None:
    """The fallback with what sending its SMS needs, or None."""
    async with db.read() as conn:
        query = _SMS.where(fallbacks.c.tracking_id == tracking_id)
        row = (await conn.execute(query)).first()
    return None if row is None else sms_fallback_of(row)


async def expect_parts(
    db: Database, tracking_id: str, route: str, message_ids: tuple[str, ...], *, now: dt.datetime
) -> None:
    """Record parts before they are submitted, for connectors whose ids are ours (Kannel):
    a receipt can then never arrive before its part is known."""
    async with db.write() as conn:
        await _insert_parts(conn, tracking_id, route, message_ids, now)


async def _insert_parts(
    conn: AsyncConnection,
    tracking_id: str,
    route: str,
    message_ids: tuple[str, ...],
    now: dt.datetime,
    first: int = 1,
) -> None:
    """Insert the parts not recorded yet (a retried submit records nothing twice); the
    ids are those of parts `first`, `first + 1`, ..."""
    query = sa.select(sms_parts.c.seq).where(sms_parts.c.tracking_id == tracking_id)
    known = {r.seq for r in await conn.execute(query)}
    rows = [
        {
            "tracking_id": tracking_id,
            "seq": seq,
            "route": route,
            "smsc_message_id": message_id,
            "updated_at": now,
        }
        for seq, message_id in enumerate(message_ids, start=first)
        if seq not in known
    ]
    if rows:
        await conn.execute(sms_parts.insert(), rows)


async def submitted(
    db: Database,
    row: SmsFallback,
    route: str,
    message_ids: tuple[str, ...],
    *,
    now: dt.datetime,
    first: int = 1,
) -> bool:
    """The SMSC took every part (those from `first` in this submit): record the parts by
    their ids, and N101 (sent-as SMS)."""

    async def also(conn: AsyncConnection) -> None:
        await _taken(conn, row.tracking_id, route, message_ids, now, first, sms_route=route)

    move = Move(S.SMS_SUBMITTED, "N101", row.reason, route=route, sent_as="SMS")
    return await advance(db, row, move, now=now, also=also)


async def partly_sent(
    db: Database,
    tracking_id: str,
    route: str,
    message_ids: tuple[str, ...],
    *,
    now: dt.datetime,
    first: int,
) -> None:
    """The SMSC took parts `first`.. of a submit, then refused or failed on the next: record
    them, so their receipts are matched and a retry starts after them (a handset shows a
    part sent twice as a duplicate, or garbles the message)."""
    async with db.write() as conn:
        await _taken(conn, tracking_id, route, message_ids, now, first)


async def _taken(
    conn: AsyncConnection,
    tracking_id: str,
    route: str,
    message_ids: tuple[str, ...],
    now: dt.datetime,
    first: int,
    **values: str,
) -> None:
    """Record parts `first`.. as taken by the SMSC, and how many are taken in all."""
    await _insert_parts(conn, tracking_id, route, message_ids, now, first)
    await conn.execute(
        fallbacks.update()
        .where(fallbacks.c.tracking_id == tracking_id)
        .values(parts_sent=first - 1 + len(message_ids), **values)
    )


async def failed(db: Database, row: Recipient, detail: str, *, now: dt.datetime) -> bool:
    """The SMS could not be sent, or not delivered: E202."""
    move = Move(S.SMS_FAILED, "E202", detail, sent_as="SMS")
    return await advance(db, row, move, now=now)


class UnknownPart(errors.MmsgateError, LookupError):
    """A receipt names no SMS part we sent (yet): the SMSC should send it again later."""


# What a receipt's final `stat` does to the part: delivered, or why it was not.
FAILED_STATS = {
    "EXPIRED": "expired",
    "DELETED": "deleted",
    "UNDELIV": "undeliverable",
    "UNKNOWN": "unknown",
    "REJECTD": "rejected",
}


async def apply_receipt(
    db: Database,
    route: str,
    message_id: str,
    stat: str,
    error: str | None,
    *,
    now: dt.datetime,
) -> bool:
    """Apply a final receipt for one part; True when it moved the recipient on (N202 once
    every part is delivered, E202 when any part is not). Raises UnknownPart."""
    part = await _receipt_part(db, route, message_id)
    if not part.waiting:  # a repeat: it changes nothing, save finishing what the first began
        return await conclude(db, part.tracking_id, now=now)
    async with db.write() as conn:
        await conn.execute(
            sms_parts.update()
            .where(sms_parts.c.id == part.id, sms_parts.c.stat.is_(None))
            .values(stat=stat, error=error, updated_at=now)
        )
    row = await for_sms(db, part.tracking_id)
    assert row is not None  # a part's fallback is never deleted
    if row.state == S.FALLBACK:
        # The receipt beat the record of the submit (or came while the rest of a long SMS
        # waits for a retry). Once every part is known taken, by the SMSC's answer or by a
        # receipt of its own, the SMS is sent: the customer hears N101 first, as always.
        taken = {seq for seq, stat, _ in await _stats(db, row.tracking_id) if stat is not None}
        taken.update(range(1, row.parts_sent + 1))
        if not taken.issuperset(range(1, row.sms_parts + 1)):
            return False
        await submitted(db, row, route, (), now=now, first=row.sms_parts + 1)
    return await conclude(db, part.tracking_id, now=now)


async def conclude(db: Database, tracking_id: str, *, now: dt.datetime) -> bool:
    """N202 once every part of a sent SMS is delivered, E202 once any part is not; True
    when that moved the recipient on. Receipts can all be in before the submit is recorded,
    so this runs after the record as well as after each receipt."""
    row = await for_sms(db, tracking_id)
    if row is None or row.state != S.SMS_SUBMITTED:
        return False
    parts = await _stats(db, tracking_id)
    stats = [stat for _, stat, _ in parts]
    bad = next(((s, e) for _, s, e in parts if s is not None and s != "DELIVRD"), None)
    if bad is not None:
        stat, error = bad
        detail = f"SMS {FAILED_STATS.get(stat, stat.lower())}" + (
            f" (err {error})" if error else ""
        )
        return await failed(db, row, detail, now=now)
    if len(stats) == row.sms_parts and all(s == "DELIVRD" for s in stats):
        move = Move(S.SMS_DELIVERED, "N202", "delivered as SMS", sent_as="SMS")
        return await advance(db, row, move, now=now)
    return False


# The states in which an SMS still waits for receipts.
_WAITING = (S.FALLBACK.value, S.SMS_SUBMITTED.value)


@dataclasses.dataclass(frozen=True, slots=True)
class _Part:
    """The part a receipt is for, and whether it still waits for one (else the receipt is
    a repeat)."""

    id: int
    tracking_id: str
    waiting: bool


async def _receipt_part(db: Database, route: str, message_id: str) -> _Part:
    """The newest part with this id still waiting for its receipt; else, for a repeat, the
    newest part with it. Raises UnknownPart when the receipt may be for a part not yet
    recorded."""
    waiting = await _newest(db, route, message_id, waiting=True)
    if waiting is not None:
        return waiting
    # Nothing waited when we looked, but a submit may have been recorded since: so first
    # whether any SMS has parts still unrecorded, and only then the newest part, as it is
    # now. A part recorded after the first look is then seen waiting, not taken for one
    # that has its receipt; and a receipt that finds only final parts while no SMS has
    # parts unrecorded cannot be for a part recorded after it came.
    submitting = await _unrecorded_parts(db)
    newest = await _newest(db, route, message_id, waiting=False)
    if newest is None or (submitting and not newest.waiting):
        raise UnknownPart(f"{route}: no SMS part waiting for a receipt with id {message_id}")
    return newest


async def _newest(db: Database, route: str, message_id: str, *, waiting: bool) -> _Part | None:
    """The newest part with this id (only those still waiting, if `waiting`), or None."""
    query = (
        sa.select(sms_parts.c.id, sms_parts.c.tracking_id, sms_parts.c.stat, recipients.c.state)
        .join(recipients, recipients.c.tracking_id == sms_parts.c.tracking_id)
        .where(sms_parts.c.route == route, sms_parts.c.smsc_message_id == message_id)
        .order_by(sms_parts.c.id.desc())
        .limit(1)
    )
    if waiting:
        query = query.where(sms_parts.c.stat.is_(None), recipients.c.state.in_(_WAITING))
    async with db.read() as conn:
        row = (await conn.execute(query)).first()
    if row is None:
        return None
    return _Part(row.id, row.tracking_id, row.stat is None and row.state in _WAITING)


async def _unrecorded_parts(db: Database) -> bool:
    """Whether an SMS job is running with parts the SMSC may have taken, not recorded yet."""
    recorded = (
        sa.select(sa.func.count())
        .select_from(sms_parts)
        .where(sms_parts.c.tracking_id == jobs.c.tracking_id)
        .scalar_subquery()
    )
    query = (
        sa.select(jobs.c.id)
        .join(fallbacks, fallbacks.c.tracking_id == jobs.c.tracking_id)
        .where(
            jobs.c.kind == models.JobKind.FALLBACK_SMS.value,
            jobs.c.state == models.JobState.RUNNING.value,
            recorded < fallbacks.c.sms_parts,
        )
        .limit(1)
    )
    async with db.read() as conn:
        return (await conn.execute(query)).first() is not None


async def _stats(db: Database, tracking_id: str) -> list[tuple[int, str | None, str | None]]:
    """(seq, final stat or None, error) of each recorded part, in order."""
    async with db.read() as conn:
        query = (
            sa.select(sms_parts.c.seq, sms_parts.c.stat, sms_parts.c.error)
            .where(sms_parts.c.tracking_id == tracking_id)
            .order_by(sms_parts.c.seq)
        )
        return [(r.seq, r.stat, r.error) for r in await conn.execute(query)]


async def page(db: Database, token: str) -> Page | None:
    """The hosted page behind `token`, or None."""
    async with db.read() as conn:
        query = sa.select(
            fallbacks.c.tracking_id,
            fallbacks.c.subject,
            fallbacks.c.slides,
            fallbacks.c.link_expires_at,
            fallbacks.c.opened_at,
        ).where(fallbacks.c.token == token)
        row = (await conn.execute(query)).first()
    if row is None:
        return None
    return Page(
        row.tracking_id, row.subject, slides_of(row.slides), row.link_expires_at, row.opened_at
    )


async def opened(db: Database, token: str, now: dt.datetime) -> None:
    """Count a page open; the first one's time is kept (the status API's `opened_at`).

    Opens arriving together share one transaction, one UPDATE per page: a page shared in a
    group chat is opened by many phones at once, and a commit each would queue every view
    behind every other's fsync."""
    await db.batched(_count_opens, key="page-opens", item=(token, now))


async def _count_opens(conn: AsyncConnection, items: list[tuple[str, dt.datetime]]) -> list[None]:
    per_page: dict[str, tuple[int, dt.datetime]] = {}
    for token, at in items:
        count, first = per_page.get(token, (0, at))
        per_page[token] = (count + 1, min(first, at))
    statement = (
        fallbacks.update()
        .where(fallbacks.c.token == sa.bindparam("page"))
        .values(
            opens=fallbacks.c.opens + sa.bindparam("count"),
            opened_at=sa.func.coalesce(
                fallbacks.c.opened_at, sa.bindparam("first", type_=UtcDateTime())
            ),
        )
    )
    rows = [{"page": t, "count": n, "first": first} for t, (n, first) in per_page.items()]
    await conn.execute(statement, rows)
    return [None] * len(items)


@dataclasses.dataclass(frozen=True, slots=True)
class Fallback:
    """A recipient's fallback as stored: why, its page, its SMS and the page's opens."""

    tracking_id: str
    reason: str
    token: str | None
    link_expires_at: dt.datetime
    subject: str | None
    slides: tuple[WebSlide, ...]
    sms_text: str
    sms_coding: str
    sms_parts: int
    parts_sent: int
    sms_route: str | None
    opened_at: dt.datetime | None
    opens: int
    created_at: dt.datetime


def fallback_of(row: Row) -> Fallback:
    """A row of the fallbacks table as a Fallback."""
    values = {field.name: getattr(row, field.name) for field in _FALLBACK_FIELDS}
    return Fallback(**{**values, "slides": slides_of(row.slides)})


def slides_of(column: JSONValue) -> tuple[WebSlide, ...]:
    """The fallbacks row's `slides` column (a JSON list of slides) as WebSlides."""
    found = column if isinstance(column, list) else []
    return tuple(WebSlide.from_data(slide) for slide in found if isinstance(slide, dict))


_FALLBACK_FIELDS = dataclasses.fields(Fallback)


async def status(db: Database, tracking_id: str) -> Fallback | None:
    """The fallback as the status API shows it, or None."""
    async with db.read() as conn:
        query = sa.select(fallbacks).where(fallbacks.c.tracking_id == tracking_id)
        row = (await conn.execute(query)).first()
    return None if row is None else fallback_of(row)
