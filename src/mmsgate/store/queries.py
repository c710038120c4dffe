"""Reads and small writes on templates, messages and the media cache, scoped to an account."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
from collections.abc import Iterable

import sqlalchemy as sa

from mmsgate import models
from mmsgate.store.db import Database
from mmsgate.store.fallbacks import Fallback, fallback_of
from mmsgate.store.rows import Row
from mmsgate.store.schema import (
    fallbacks,
    media_cache,
    messages,
    recipient_events,
    recipients,
    templates,
)


def _template_info(row: Row) -> models.TemplateInfo:
    return models.TemplateInfo(
        id=row.id,
        account_id=row.account_id,
        name=row.name,
        subject=row.subject,
        state=models.TemplateState(row.state),
        slide_count=row.slide_count,
        total_size=row.total_size,
        created_at=row.created_at,
        fallback_sms_text=row.fallback_sms_text,
        disable_fallback=row.disable_fallback,
    )


_INFO_COLUMNS = (
    templates.c.id,
    templates.c.account_id,
    templates.c.name,
    templates.c.subject,
    templates.c.state,
    templates.c.slide_count,
    templates.c.total_size,
    templates.c.created_at,
    templates.c.fallback_sms_text,
    templates.c.disable_fallback,
)


async def template_info(db: Database, account_id: int, mms_id: int) -> models.TemplateInfo | None:
    """A live (not deleted) template of this account, or None."""
    query = sa.select(*_INFO_COLUMNS).where(
        templates.c.id == mms_id,
        templates.c.account_id == account_id,
        templates.c.deleted_at.is_(None),
    )
    async with db.read() as conn:
        row = (await conn.execute(query)).first()
    return None if row is None else _template_info(row)


async def list_templates(
    db: Database, account_id: int, since: dt.datetime | None, page: int, per_page: int
) -> tuple[int, list[models.TemplateInfo]]:
    """Saved templates of the account, newest first: (total count, one page)."""
    where = [
        templates.c.account_id == account_id,
        templates.c.kind == "saved",
        templates.c.deleted_at.is_(None),
    ]
    if since is not None:
        where.append(templates.c.created_at > since)
    async with db.read() as conn:
        total = await conn.scalar(sa.select(sa.func.count()).select_from(templates).where(*where))
        rows = (
            await conn.execute(
                sa.select(*_INFO_COLUMNS)
                .where(*where)
                .order_by(templates.c.created_at.desc(), templates.c.id.desc())
                .limit(per_page)
                .offset((page - 1) * per_page)
            )
        ).all()
    return int(total or 0), [_template_info(r) for r in rows]


async def delete_template(db: Database, account_id: int, mms_id: int) -> bool:
    """Mark a saved template deleted; False when it is not this account's or already gone."""
    async with db.write() as conn:
        result = await conn.execute(
            templates.update()
            .where(
                templates.c.id == mms_id,
                templates.c.account_id == account_id,
                templates.c.kind == "saved",
                templates.c.deleted_at.is_(None),
            )
            .values(deleted_at=dt.datetime.now(dt.UTC))
        )
    return result.rowcount == 1


@dataclasses.dataclass(frozen=True, slots=True)
class Event:
    """One move of a recipient: the state it reached, its code and why, and when."""

    state: models.RecipientState
    code: str | None
    detail: str | None
    at: dt.datetime


@dataclasses.dataclass(frozen=True, slots=True)
class RecipientStatus:
    """Everything the status API shows about one recipient of one send."""

    tracking_id: str
    template_id: int
    action: str  # the request that sent it (sendMMS, sendSavedMMS)
    msisdn: str
    sender: str
    operator_id: int | None
    client_reference: str | None
    state: models.RecipientState
    sent_as: str | None
    route: str | None
    created_at: dt.datetime
    updated_at: dt.datetime
    expires_at: dt.datetime
    events: tuple[Event, ...]  # oldest first
    fallback: Fallback | None
    to_displayonly: tuple[str, ...] = ()  # the send's display-only group members
    sender_mask: str | None = None  # the send's alphanumeric sender, when it had one


def recipient_status_of(
    row: Row, events: Iterable[Row], fallback: Fallback | None
) -> RecipientStatus:
    """A row of `recipient_status`'s query, with the recipient's events and fallback."""
    return RecipientStatus(
        tracking_id=row.tracking_id,
        template_id=row.template_id,
        action=row.action,
        msisdn=row.msisdn,
        sender=row.sender,
        operator_id=row.operator_id,
        client_reference=row.client_reference,
        state=models.RecipientState(row.state),
        sent_as=row.sent_as,
        route=row.route,
        created_at=row.created_at,
        updated_at=row.updated_at,
        expires_at=row.expires_at,
        events=tuple(Event(models.RecipientState(e.state), e.code, e.detail, e.at) for e in events),
        fallback=fallback,
        to_displayonly=tuple(row.to_displayonly or ()),
        sender_mask=row.sender_mask,
    )


def status_query() -> sa.Select[tuple[object, ...]]:
    """The recipients joined to their messages, with every column a RecipientStatus needs."""
    return sa.select(
        recipients,
        messages.c.template_id,
        messages.c.sender,
        messages.c.action,
        messages.c.operator_id,
        messages.c.client_reference,
        messages.c.expires_at,
        messages.c.link_expires_at,
        messages.c.to_displayonly,
        messages.c.sender_mask,
    ).join(messages, messages.c.id == recipients.c.message_id)


async def recipient_status(
    db: Database, account_id: int, tracking_id: str
) -> RecipientStatus | None:
    """Everything the status API shows about one recipient of one send, or None."""
    query = status_query().where(
        recipients.c.tracking_id == tracking_id, recipients.c.account_id == account_id
    )
    async with db.read() as conn:
        row = (await conn.execute(query)).first()
        if row is None:
            return None
        events = (
            await conn.execute(
                sa.select(recipient_events)
                .where(recipient_events.c.tracking_id == tracking_id)
                .order_by(recipient_events.c.id)
            )
        ).all()
        fallback = (
            await conn.execute(sa.select(fallbacks).where(fallbacks.c.tracking_id == tracking_id))
        ).first()
    return recipient_status_of(row, events, None if fallback is None else fallback_of(fallback))


def url_hash(url: str) -> str:
    return hashlib.sha256(url.encode("utf-8")).hexdigest()


@dataclasses.dataclass(frozen=True, slots=True)
class CachedMedia:
    """What a media URL served when last fetched: its validators, and where its bytes are."""

    url: str
    etag: str | None
    last_modified: str | None
    content_type: str
    blob_key: str
    size: int
    fetched_at: dt.datetime


def cached_media_of(row: Row) -> CachedMedia:
    """A row of the media_cache table as CachedMedia."""
    return CachedMedia(**{field.name: getattr(row, field.name) for field in _MEDIA_FIELDS})


_MEDIA_FIELDS = dataclasses.fields(CachedMedia)


async def cached_media(db: Database, url: str) -> CachedMedia | None:
    """What a media URL served when last fetched, or None."""
    async with db.read() as conn:
        row = (
            await conn.execute(
                sa.select(media_cache).where(media_cache.c.url_hash == url_hash(url))
            )
        ).first()
    return None if row is None else cached_media_of(row)


async def remember_media(
    db: Database,
    url: str,
    *,
    etag: str | None,
    last_modified: str | None,
    content_type: str,
    blob_key: str,
    size: int,
) -> None:
    """Record what a URL served so that the next fetch can revalidate instead of download."""
    values = {
        "url": url,
        "etag": etag,
        "last_modified": last_modified,
        "content_type": content_type,
        "blob_key": blob_key,
        "size": size,
        "fetched_at": dt.datetime.now(dt.UTC),
    }
    key = url_hash(url)
    async with db.write() as conn:
        updated = await conn.execute(
            media_cache.update().where(media_cache.c.url_hash == key).values(**values)
        )
        if updated.rowcount == 0:
            await conn.execute(media_cache.insert().values(url_hash=key, **values))
