"""Delivery state: what the deliver step reads, and the one transaction that moves a recipient
on, with its history event and its postback.

Moves are monotonic. States rank QUEUED < SUBMITTED < every final state, and a move applies
only if it ranks above the state in the database, checked by the UPDATE itself (`WHERE state
IN (lower ranks)`), so two workers or two copies of one delivery report cannot both win:
a duplicate or late report changes nothing and queues no postback.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from mmsgate import metrics, models, postback_xml
from mmsgate.store.db import Database
from mmsgate.store.jobs import new_job
from mmsgate.store.schema import jobs, messages, recipient_events, recipients, templates

S = models.RecipientState
RANK = {S.QUEUED: 0, S.SUBMITTED: 1, S.DELIVERED: 2, S.REJECTED: 2, S.EXPIRED: 2, S.FAILED: 2}


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
    messages.c.template_id,
    templates.c.slides,
    templates.c.subject.label("template_subject"),
).select_from(
    recipients.join(messages, messages.c.id == recipients.c.message_id).join(
        templates, templates.c.id == messages.c.template_id
    )
)


async def for_delivery(db: Database, tracking_id: str) -> Any:
    """The recipient with its message and template, or None."""
    async with db.read() as conn:
        query = _DELIVERY.where(recipients.c.tracking_id == tracking_id)
        return (await conn.execute(query)).first()


async def by_carrier_message_id(db: Database, carrier_message_id: str) -> Any:
    """The recipient an MMSC's MessageID belongs to (with its message), or None."""
    async with db.read() as conn:
        query = _DELIVERY.where(recipients.c.carrier_message_id == carrier_message_id)
        return (await conn.execute(query)).first()


async def move(
    db: Database,
    tracking_id: str,
    to: Move,
    *,
    postback: tuple[int, bytes] | None,
    now: dt.datetime,
) -> bool:
    """Move the recipient to `to` if that goes forward: state, event and the postback
    (account id, body) in one transaction. False, and nothing written, otherwise."""
    lower = [state.value for state, rank in RANK.items() if rank < RANK[to.state]]
    values: dict[str, Any] = {"state": to.state.value, "updated_at": now}
    for column in ("carrier_message_id", "route", "handset", "sent_as"):
        if getattr(to, column) is not None:
            values[column] = getattr(to, column)
    statement = (
        recipients.update()
        .where(recipients.c.tracking_id == tracking_id, recipients.c.state.in_(lower))
        .values(values)
    )
    event = recipient_events.insert().values(
        tracking_id=tracking_id, state=to.state.value, code=to.code, detail=to.detail, at=now
    )

    async def work(conn: AsyncConnection) -> bool:
        if (await conn.execute(statement)).rowcount != 1:
            return False
        await conn.execute(event)
        if postback is not None:
            await conn.execute(jobs.insert().values(postback_job(*postback, now)))
        return True

    # Moves from concurrent deliveries and reports share one commit.
    moved = await db.batched(work)
    if moved:
        metrics.STATES.labels(to.state.value).inc()
    return moved


async def advance(db: Database, row: Any, to: Move, *, now: dt.datetime) -> bool:
    """Move a recipient read by `for_delivery`/`by_carrier_message_id` and queue the
    Sinch postback for the new state; False when it had already moved past it."""
    body = postback_xml.delivery_postback(
        postback_xml.Delivery(
            code=to.code or "",
            tracking_id=row.tracking_id,
            mms_id=row.template_id,
            sender=row.sender,
            to=row.msisdn,
            at=now,
            sent_as=to.sent_as or "MMS",
            status=to.status,
            operator_id=row.operator_id,
            handset=to.handset,
            details=to.detail,
        )
    )
    return await move(db, row.tracking_id, to, postback=(row.account_id, body), now=now)


def postback_job(account_id: int, body: bytes, now: dt.datetime) -> dict[str, Any]:
    """A postback job row, inserted in the same transaction as the change it reports."""
    payload = {
        "account_id": account_id,
        "body": body.decode("utf-8"),
        "content_type": "application/xml",
    }
    return new_job(models.JobKind.POSTBACK, now, payload=payload)
