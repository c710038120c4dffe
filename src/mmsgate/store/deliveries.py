"""Delivery state: what the deliver step reads, and the one transaction that moves a recipient
on, with its history event and its postback.

Moves are monotonic. Each state may be reached only from the states before it on its path
(`FROM`), checked by the UPDATE itself (`WHERE state IN (those states)`), so two workers
or two copies of one delivery report cannot both win:
a duplicate or late report changes nothing and queues no postback.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TypedDict

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from mmsgate import metrics, models
from mmsgate.store.db import Database, PerDialect
from mmsgate.store.hot import Hot, Lookup
from mmsgate.store.jobs import new_job
from mmsgate.store.rows import Row
from mmsgate.store.schema import (
    accounts,
    jobs,
    messages,
    recipient_events,
    recipients,
    templates,
)

S = models.RecipientState
_MMS_FINAL = (S.DELIVERED, S.REJECTED, S.EXPIRED, S.FAILED)
_SMS_FINAL = (S.SMS_DELIVERED, S.SMS_FAILED)
# The states each state may be reached from. Two paths: the MMS one (queued, submitted, a
# final state) and the fallback one (queued, fallback, sms_submitted, a final SMS state).
# A move from anywhere else (a duplicate, a late report, a second worker) changes nothing.
FROM: dict[models.RecipientState, tuple[models.RecipientState, ...]] = {
    S.QUEUED: (),
    S.SUBMITTED: (S.QUEUED,),
    **dict.fromkeys(_MMS_FINAL, (S.QUEUED, S.SUBMITTED)),
    S.FALLBACK: (S.QUEUED,),
    S.SMS_SUBMITTED: (S.FALLBACK,),
    **dict.fromkeys(_SMS_FINAL, (S.FALLBACK, S.SMS_SUBMITTED)),
}


@dataclasses.dataclass(frozen=True, slots=True)
class Move:
    """A recipient's next state, why, and what else the carrier told us."""

    state: models.RecipientState
    code: str | None = None
    detail: str | None = None
    carrier_message_id: str | None = None
    route: str | None = None
    handset: str | None = None
    sent_as: str | None = None
    status: str | None = None  # the postback's status text, when not the code's usual one


@dataclasses.dataclass(frozen=True, slots=True)
class Recipient:
    """One recipient of a send, with what its moves and postbacks name (`advance`)."""

    tracking_id: str
    msisdn: str
    state: models.RecipientState
    account_id: int
    carrier_message_id: str | None
    sender: str
    operator_id: int | None
    template_id: int
    # The send's client-reference and campaign-ref, echoed in each of its postbacks (after
    # the subclasses' fields: they are given by name).
    client_reference: str | None = dataclasses.field(default=None, kw_only=True)
    campaign_ref: str | None = dataclasses.field(default=None, kw_only=True)


@dataclasses.dataclass(frozen=True, slots=True)
class Reported(Recipient):
    """The recipient a delivery report is for, and the route it was submitted over."""

    route: str | None


@dataclasses.dataclass(frozen=True, slots=True)
class Delivery(Recipient):
    """A recipient with its message and template: what delivering it needs."""

    message_id: str
    service_id: str | None
    subject: str | None
    custom_texts: dict[str, str] | None  # slide number (from 1) -> that slide's text
    merge_data: dict[str, str] | None
    expires_at: dt.datetime
    disable_fallback: bool
    disable_fallback_link: bool
    fallback_sms_text: str | None
    link_expires_at: dt.datetime
    slides: tuple[models.StoredSlide, ...]
    template_subject: str | None
    template_fallback_text: str | None
    template_link_disabled: bool | None
    account_mode: models.AccountMode
    to_displayonly: tuple[str, ...] = ()  # shown as group members, never delivered to
    sender_mask: str | None = None  # the alphanumeric sender shown instead of `sender`


class RecipientFields(TypedDict):
    """What every Recipient is built from (`recipient_fields`)."""

    tracking_id: str
    msisdn: str
    state: models.RecipientState
    account_id: int
    carrier_message_id: str | None
    sender: str
    operator_id: int | None
    template_id: int
    client_reference: str | None
    campaign_ref: str | None


def recipient_fields(row: Row) -> RecipientFields:
    """The Recipient fields of a row that selects them (`_DELIVERY`, `_REPORT_ROW`, and the
    fallback rows of store/fallbacks.py), for a Recipient subclass to add its own to."""
    return RecipientFields(
        tracking_id=row.tracking_id,
        msisdn=row.msisdn,
        state=models.RecipientState(row.state),
        account_id=row.account_id,
        carrier_message_id=row.carrier_message_id,
        sender=row.sender,
        operator_id=row.operator_id,
        template_id=row.template_id,
        client_reference=row.client_reference,
        campaign_ref=row.campaign_ref,
    )


def delivery_of(row: Row) -> Delivery:
    """A row of `_DELIVERY` as a Delivery."""
    return Delivery(
        **recipient_fields(row),
        message_id=row.message_id,
        service_id=row.service_id,
        subject=row.subject,
        custom_texts=row.custom_texts,
        merge_data=row.merge_data,
        expires_at=row.expires_at,
        disable_fallback=row.disable_fallback,
        disable_fallback_link=row.disable_fallback_link,
        fallback_sms_text=row.fallback_sms_text,
        link_expires_at=row.link_expires_at,
        slides=tuple(models.StoredSlide.from_data(slide) for slide in row.slides),
        template_subject=row.template_subject,
        template_fallback_text=row.template_fallback_text,
        template_link_disabled=row.template_link_disabled,
        account_mode=models.AccountMode(row.account_mode),
        to_displayonly=tuple(row.to_displayonly or ()),
        sender_mask=row.sender_mask,
    )


def reported_of(row: Row) -> Reported:
    """A row of `_REPORT_ROW` as a Reported recipient."""
    return Reported(
        **recipient_fields(row),
        route=row.route,
    )


_DELIVERY = sa.select(
    recipients.c.tracking_id,
    recipients.c.msisdn,
    recipients.c.state,
    recipients.c.account_id,
    recipients.c.carrier_message_id,
    messages.c.id.label("message_id"),
    messages.c.sender,
    messages.c.service_id,
    messages.c.operator_id,
    messages.c.subject,
    messages.c.custom_texts,
    messages.c.merge_data,
    messages.c.expires_at,
    messages.c.disable_fallback,
    messages.c.disable_fallback_link,
    messages.c.fallback_sms_text,
    messages.c.link_expires_at,
    messages.c.template_id,
    messages.c.client_reference,
    messages.c.campaign_ref,
    messages.c.to_displayonly,
    messages.c.sender_mask,
    templates.c.slides,
    templates.c.subject.label("template_subject"),
    templates.c.fallback_sms_text.label("template_fallback_text"),
    templates.c.disable_fallback_link.label("template_link_disabled"),
    accounts.c.mode.label("account_mode"),
).select_from(
    recipients.join(messages, messages.c.id == recipients.c.message_id)
    .join(templates, templates.c.id == messages.c.template_id)
    .join(accounts, accounts.c.id == recipients.c.account_id)
)


# The hot statements are built once, with bound parameters: building one per call cost
# SQLAlchemy more than running it (bench/deliver/README.md).
_KEYS = sa.bindparam("keys", type_=sa.ARRAY(sa.String))  # PostgreSQL: many lookups at once
_BY_TRACKING_ID = Lookup(
    Hot(_DELIVERY.where(recipients.c.tracking_id == sa.bindparam("key"))),
    Hot(_DELIVERY.where(recipients.c.tracking_id == sa.any_(_KEYS))),
    "tracking_id",
)
# What a delivery report needs to move the recipient and write its postback: none of the
# template's slides (JSON, decoded per row) that a delivery needs.
_REPORT_ROW = sa.select(
    recipients.c.tracking_id,
    recipients.c.msisdn,
    recipients.c.state,
    recipients.c.account_id,
    recipients.c.carrier_message_id,
    recipients.c.route,
    messages.c.sender,
    messages.c.operator_id,
    messages.c.template_id,
    messages.c.client_reference,
    messages.c.campaign_ref,
).select_from(recipients.join(messages, messages.c.id == recipients.c.message_id))
# Newest first: an MMSC that reuses a MessageID (after a reset) reports on the recipient it
# took last, never on an older one long final.
_NEWEST = recipients.c.created_at.desc()
_BY_CARRIER_MESSAGE_ID = Lookup(
    Hot(
        _REPORT_ROW.where(recipients.c.carrier_message_id == sa.bindparam("key")).order_by(_NEWEST)
    ),
    Hot(_REPORT_ROW.where(recipients.c.carrier_message_id == sa.any_(_KEYS)).order_by(_NEWEST)),
    "carrier_message_id",
)
_ON_ROUTES = (
    _REPORT_ROW.where(
        recipients.c.carrier_message_id == sa.bindparam("key"),
        recipients.c.route.in_(sa.bindparam("routes", expanding=True)),
    )
    .order_by(_NEWEST)
    .limit(1)
)
_OPTIONAL = ("carrier_message_id", "route", "handset", "sent_as")  # kept when the move has None


def _update(to: models.RecipientState) -> sa.Update:
    """The UPDATE that moves a recipient to `to` from the states before it (`FROM`), and
    keeps each of `_OPTIONAL` when the move brings none."""
    before: list[sa.ColumnElement[str]] = [
        sa.literal_column(f"'{state.value}'") for state in FROM[to]
    ]
    return (
        recipients.update()
        .where(
            recipients.c.tracking_id == sa.bindparam("key"),
            recipients.c.state.in_(before) if before else sa.false(),
        )
        .values(
            state=to.value,
            updated_at=sa.bindparam("now", type_=recipients.c.updated_at.type),
            **{
                column: sa.func.coalesce(
                    sa.bindparam(f"new_{column}", type_=recipients.c[column].type),
                    recipients.c[column],
                )
                for column in _OPTIONAL
            },
        )
    )


def _move_at_once(to: models.RecipientState, *, with_job: bool) -> Hot:
    """On PostgreSQL, the move with its event (and its postback job) as one statement of
    data-modifying CTEs: one round trip where three would be. The event and the job are
    written only if the UPDATE moved the recipient; the statement gives how many it moved."""
    moved = _update(to).returning(recipients.c.tracking_id).cte("moved")
    event = (
        recipient_events.insert()
        .from_select(
            list(_EVENT_KEYS),
            sa.select(
                moved.c.tracking_id,
                sa.literal(to.value, recipient_events.c.state.type),
                sa.bindparam("code", type_=recipient_events.c.code.type),
                sa.bindparam("detail", type_=recipient_events.c.detail.type),
                sa.bindparam("at", type_=recipient_events.c.at.type),
            ).select_from(moved),
        )
        .cte("event")
    )
    written = [event]
    if with_job:
        columns = list(_JOB_KEYS)
        values = [sa.bindparam(f"job_{c}", type_=jobs.c[c].type) for c in columns]
        job = jobs.insert().from_select(columns, sa.select(*values).select_from(moved))
        written.append(job.cte("job"))
    return Hot(sa.select(sa.func.count().label("moved")).select_from(moved).add_cte(*written))


_MOVES = {state: Hot(_update(state)) for state in FROM}
_EVENT_KEYS = ("tracking_id", "state", "code", "detail", "at")
_JOB_KEYS = tuple(new_job(models.JobKind.POSTBACK, dt.datetime.now(dt.UTC)))
_MOVES_AT_ONCE = {
    (state, with_job): _move_at_once(state, with_job=with_job)
    for state in FROM
    for with_job in (False, True)
}
_EVENT = Hot(recipient_events.insert(), keys=_EVENT_KEYS)
_JOB = Hot(jobs.insert(), keys=_JOB_KEYS)


async def for_delivery(db: Database, tracking_id: str) -> Delivery | None:
    """The recipient with its message and template, or None."""
    row = (await db.run(_BY_TRACKING_ID, {"key": tracking_id})).first()
    return None if row is None else delivery_of(row)


async def by_carrier_message_id(db: Database, carrier_message_id: str) -> Reported | None:
    """The recipient an MMSC's MessageID belongs to (with what `advance` needs of its
    message, and the route it was submitted over), or None."""
    row = (await db.run(_BY_CARRIER_MESSAGE_ID, {"key": carrier_message_id})).first()
    return None if row is None else reported_of(row)


async def by_carrier_message_id_on(
    db: Database, carrier_message_id: str, route_names: Sequence[str]
) -> Reported | None:
    """As `by_carrier_message_id`, but only among recipients submitted over `route_names`,
    the newest first: two MMSCs may hand out the same MessageID, and each one's report
    must find its own recipient. The indexed lookup above answers nearly every report; this
    one runs only when the row it found went over another route."""
    async with db.read() as conn:
        found = await conn.execute(
            _ON_ROUTES, {"key": carrier_message_id, "routes": list(route_names)}
        )
        row = found.first()
    return None if row is None else reported_of(row)


Also = Callable[[AsyncConnection], Awaitable[None]]


async def move(
    db: Database,
    tracking_id: str,
    to: Move,
    *,
    postback: models.PostbackEvent | None,
    now: dt.datetime,
    also: Also | None = None,
) -> bool:
    """Move the recipient to `to` if that goes forward: state, event, the postback
    and `also`'s writes in one transaction. False, and nothing written,
    otherwise."""
    values: dict[str, object] = {
        "key": tracking_id,
        "now": now,
        **{f"new_{column}": getattr(to, column) for column in _OPTIONAL},
    }
    event = {
        "tracking_id": tracking_id,
        "state": to.state.value,
        "code": to.code,
        "detail": to.detail,
        "at": now,
    }

    job = postback_job(postback, now) if postback is not None else None

    write = db.pick(_WRITE)

    async def work(conn: AsyncConnection) -> bool:
        if not await write(db, conn, to.state, values, event, job):
            return False
        if also is not None:
            await also(conn)
        return True

    # Moves from concurrent deliveries and reports share one commit.
    moved = await db.batched(work)
    if moved:
        metrics.STATES.labels(to.state.value).inc()
    return moved


_Values = Mapping[str, object]


async def _write_apart(
    db: Database,
    conn: AsyncConnection,
    state: models.RecipientState,
    values: _Values,
    event: _Values,
    job: _Values | None,
) -> bool:
    if (await db.run(_MOVES[state], values, conn)).rowcount != 1:
        return False
    await db.run(_EVENT, event, conn)
    if job is not None:
        await db.run(_JOB, job, conn)
    return True


async def _write_at_once(
    db: Database,
    conn: AsyncConnection,
    state: models.RecipientState,
    values: _Values,
    event: _Values,
    job: _Values | None,
) -> bool:
    statement = _MOVES_AT_ONCE[state, job is not None]
    params = {**values, **event, **{f"job_{k}": v for k, v in (job or {}).items()}}
    (counted,) = (await db.run(statement, params, conn)).rows  # count(*): always one row
    return bool(counted.moved == 1)


# On PostgreSQL the move, its event and its job are one statement (`_move_at_once`).
_WRITE = PerDialect(sqlite=_write_apart, postgresql=_write_at_once)


async def advance(
    db: Database, row: Recipient, to: Move, *, now: dt.datetime, also: Also | None = None
) -> bool:
    """Move a recipient read by `for_delivery`/`by_carrier_message_id` and queue the
    Sinch postback for the new state (none for `fallback`, which the customer is told of
    when the SMS goes); False when it had already moved past it."""
    if to.code is None:
        return await move(db, row.tracking_id, to, postback=None, now=now, also=also)
    event = models.PostbackEvent(
        models.PostbackKind.DELIVERY,
        row.account_id,
        to.code,
        at=now,
        tracking_id=row.tracking_id,
        mms_id=row.template_id,
        sender=row.sender,
        to=row.msisdn,
        sent_as=to.sent_as or "MMS",
        status=to.status,
        operator_id=row.operator_id,
        handset=to.handset,
        details=to.detail,
        client_reference=row.client_reference,
        campaign_ref=row.campaign_ref,
    )
    return await move(db, row.tracking_id, to, postback=event, now=now, also=also)


def postback_job(event: models.PostbackEvent, now: dt.datetime) -> dict[str, object]:
    """A postback job row, inserted in the same transaction as the change it reports. It
    holds the event as data; the sender renders it in the account's format. (Jobs queued
    by earlier versions hold a rendered `body` and `content_type` instead.)"""
    payload = {"account_id": event.account_id, "event": event.to_data()}
    return new_job(models.JobKind.POSTBACK, now, payload=payload)
