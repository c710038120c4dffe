"""Accounts: creation, key and secret rotation, lookup by API key, deletion with all that is
theirs. Keys are stored only as SHA-256.

API keys are 192-bit random strings, so a fast hash is enough (no password stretching is
needed); the lookup is by hash and the final comparison is constant-time.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import hmac
import secrets
from typing import TypedDict, Unpack

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from mmsgate import http_client, models
from mmsgate.errors import AccountError
from mmsgate.store.db import Database
from mmsgate.store.rows import Row
from mmsgate.store.schema import (
    accounts,
    fallbacks,
    idempotency_keys,
    jobs,
    messages,
    mo_messages,
    recipient_events,
    recipients,
    sms_parts,
    templates,
)

S = models.RecipientState
# A recipient in one of these states still has work ahead: a submit, a receipt, an SMS.
IN_FLIGHT = (S.QUEUED, S.SUBMITTED, S.FALLBACK, S.SMS_SUBMITTED)


@dataclasses.dataclass(frozen=True, slots=True)
class NewAccount:
    """An account just created, with the secrets shown to its owner once."""

    account: models.Account
    api_key: str
    postback_secret: str


class AccountChanges(TypedDict, total=False):
    """The settings `update` may change (the accounts table's columns of those names)."""

    senders: list[str]
    service_ids: list[str]
    postback_url: str | None
    mode: str  # an AccountMode's value
    allowed_ips: list[str]
    allowed_actions: list[str] | None  # None: every action
    max_rps: float | None
    daily_limit: int | None
    mms_expiry_hours: int | None
    api_enabled: bool
    postback_format: str  # a PostbackFormat's value


def hash_key(api_key: str) -> str:
    return hashlib.sha256(api_key.encode("utf-8")).hexdigest()


def new_api_key() -> str:
    return secrets.token_urlsafe(24)


def _row_to_account(row: Row) -> models.Account:
    return models.Account(
        id=row.id,
        name=row.name,
        senders=tuple(row.senders),
        service_ids=tuple(row.service_ids),
        mode=models.AccountMode(row.mode),
        postback_url=row.postback_url,
        allowed_ips=tuple(row.allowed_ips),
        allowed_actions=tuple(row.allowed_actions) if row.allowed_actions is not None else None,
        max_rps=row.max_rps,
        daily_limit=row.daily_limit,
        api_enabled=row.api_enabled,
        created_at=row.created_at,
        mms_expiry_hours=row.mms_expiry_hours,
        postback_format=models.PostbackFormat(row.postback_format),
    )


async def create(
    db: Database,
    name: str,
    *,
    senders: list[str],
    service_ids: list[str] | None = None,
    mode: models.AccountMode = models.AccountMode.OPTIMIZED,
    postback_url: str | None = None,
    allowed_ips: list[str] | None = None,
    allowed_actions: list[str] | None = None,
    max_rps: float | None = None,
    daily_limit: int | None = None,
    mms_expiry_hours: int | None = None,
    postback_format: models.PostbackFormat = models.PostbackFormat.XML,
) -> NewAccount | None:
    """Create an account; None when the name is taken. AccountError when another account
    has one of the senders already (a sender must name one account), or the postback URL is
    not one a postback can be sent to."""
    _check_postback_url(postback_url)
    api_key, secret = new_api_key(), secrets.token_hex(32)
    values = {
        "name": name,
        "key_hash": hash_key(api_key),
        "key_hint": api_key[:6],
        "postback_secret": secret,
        "postback_url": postback_url,
        "mode": mode.value,
        "senders": senders,
        "service_ids": service_ids or [],
        "allowed_ips": allowed_ips or [],
        "allowed_actions": allowed_actions,
        "max_rps": max_rps,
        "daily_limit": daily_limit,
        "mms_expiry_hours": mms_expiry_hours,
        "postback_format": postback_format.value,
        "api_enabled": True,
        "created_at": dt.datetime.now(dt.UTC),
    }
    async with db.write() as conn:
        taken = await conn.scalar(sa.select(accounts.c.id).where(accounts.c.name == name))
        if taken is not None:
            return None
        await _refuse_owned_senders(conn, senders, None)
        await conn.execute(accounts.insert().values(**values))
        row = (await conn.execute(sa.select(accounts).where(accounts.c.name == name))).one()
    return NewAccount(_row_to_account(row), api_key, secret)


async def by_key(db: Database, api_key: str) -> models.Account | None:
    """The account whose key this is, or None."""
    digest = hash_key(api_key)
    async with db.read() as conn:
        row = (await conn.execute(sa.select(accounts).where(accounts.c.key_hash == digest))).first()
    if row is None or not hmac.compare_digest(row.key_hash, digest):
        return None
    return _row_to_account(row)


async def by_name(db: Database, name: str) -> models.Account | None:
    async with db.read() as conn:
        row = (await conn.execute(sa.select(accounts).where(accounts.c.name == name))).first()
    return None if row is None else _row_to_account(row)


async def postback_target(db: Database, account_id: int) -> models.PostbackTarget | None:
    """Where an account's postbacks go, signed with what, in which format; None when there
    is no such account."""
    columns = (accounts.c.postback_url, accounts.c.postback_secret, accounts.c.postback_format)
    async with db.read() as conn:
        row = (await conn.execute(sa.select(*columns).where(accounts.c.id == account_id))).first()
    if row is None:
        return None
    return models.PostbackTarget(
        row.postback_url, row.postback_secret, models.PostbackFormat(row.postback_format)
    )


async def list_all(db: Database) -> list[models.Account]:
    async with db.read() as conn:
        rows = (await conn.execute(sa.select(accounts).order_by(accounts.c.id))).all()
    return [_row_to_account(r) for r in rows]


async def rotate_key(db: Database, name: str) -> str | None:
    """Give the account a new API key (the old one stops working); None if no such account."""
    api_key = new_api_key()
    async with db.write() as conn:
        result = await conn.execute(
            accounts.update()
            .where(accounts.c.name == name)
            .values(key_hash=hash_key(api_key), key_hint=api_key[:6])
        )
    return api_key if result.rowcount == 1 else None


async def update(
    db: Database, name: str, **changes: Unpack[AccountChanges]
) -> models.Account | None:
    """Change account settings (columns of the accounts table); None if no such account.
    AccountError when new senders include one another account has, or the new postback URL
    is not one a postback can be sent to."""
    unknown = set(changes) - {c.name for c in accounts.columns}
    if unknown or {"id", "key_hash", "name"} & set(changes):
        raise ValueError(f"cannot update account fields: {sorted(unknown or changes)}")
    _check_postback_url(changes.get("postback_url"))
    async with db.write() as conn:
        row = (await conn.execute(sa.select(accounts).where(accounts.c.name == name))).first()
        if row is None:
            return None
        if "senders" in changes:
            await _refuse_owned_senders(conn, changes["senders"], row.id)
        if changes:
            await conn.execute(accounts.update().where(accounts.c.id == row.id).values(**changes))
        row = (await conn.execute(sa.select(accounts).where(accounts.c.id == row.id))).one()
    return _row_to_account(row)


def _check_postback_url(url: str | None) -> None:
    """AccountError for a postback URL no postback could reach (`file://`, no host…); an
    empty one means no postbacks."""
    problem = http_client.url_problem(url) if url else None
    if problem is not None:
        raise AccountError(f"postback URL {url!r} {problem}: give an http:// or https:// URL")


async def _refuse_owned_senders(
    conn: AsyncConnection, senders: list[str], own_id: int | None
) -> None:
    """AccountError if another account than `own_id` has one of `senders`: a message's
    sender must say which account it is (MO, receipts, the E111 check)."""
    rows = (await conn.execute(sa.select(accounts.c.name, accounts.c.id, accounts.c.senders))).all()
    for row in rows:
        shared = sorted(set(senders) & set(row.senders))
        if row.id != own_id and shared:
            raise AccountError(f"sender {', '.join(shared)} belongs to account {row.name!r}")


async def postback_secret(db: Database, name: str) -> str | None:
    """The secret an account's postbacks are signed with, or None if no such account."""
    async with db.read() as conn:
        return await conn.scalar(
            sa.select(accounts.c.postback_secret).where(accounts.c.name == name)
        )


async def rotate_secret(db: Database, name: str) -> str | None:
    """A new postback signing secret (postbacks sent from now on use it); None if no such
    account."""
    secret = secrets.token_hex(32)
    async with db.write() as conn:
        result = await conn.execute(
            accounts.update().where(accounts.c.name == name).values(postback_secret=secret)
        )
    return secret if result.rowcount == 1 else None


@dataclasses.dataclass(frozen=True, slots=True)
class Deleted:
    """What `delete` did: `in_flight` recipients were still under way; `deleted` is False
    when that refused the deletion (or there is no such account: `found` False)."""

    found: bool
    deleted: bool
    in_flight: int


async def delete(db: Database, name: str, *, force: bool = False) -> Deleted:
    """Delete an account with everything that is its own: templates, messages and their
    recipients (history, fallbacks, SMS parts), received MO, its Idempotency-Keys, and
    every job for them (its deliveries and postbacks not yet sent are dropped). Refused
    while recipients are in flight, unless `force`. One transaction: all of it goes, or
    nothing."""
    async with db.write() as conn:
        account_id = await conn.scalar(sa.select(accounts.c.id).where(accounts.c.name == name))
        if account_id is None:
            return Deleted(found=False, deleted=False, in_flight=0)
        in_flight = await conn.scalar(
            sa.select(sa.func.count())
            .select_from(recipients)
            .where(recipients.c.account_id == account_id)
            .where(recipients.c.state.in_([s.value for s in IN_FLIGHT]))
        )
        if in_flight and not force:
            return Deleted(found=True, deleted=False, in_flight=in_flight)
        await _delete_owned(conn, account_id)
    return Deleted(found=True, deleted=True, in_flight=in_flight or 0)


async def _delete_owned(conn: AsyncConnection, account_id: int) -> None:
    """Delete the account's rows, those referring to others first (foreign keys)."""
    tracking = sa.select(recipients.c.tracking_id).where(recipients.c.account_id == account_id)
    owned_templates = sa.select(templates.c.id).where(templates.c.account_id == account_id)
    postback_rows = await conn.execute(
        sa.select(jobs.c.id, jobs.c.payload).where(jobs.c.kind == models.JobKind.POSTBACK.value)
    )
    postback_ids = [
        r.id for r in postback_rows if (r.payload or {}).get("account_id") == account_id
    ]
    await conn.execute(
        jobs.delete().where(
            jobs.c.tracking_id.in_(tracking)
            | jobs.c.template_id.in_(owned_templates)
            | jobs.c.id.in_(postback_ids)
        )
    )
    for table in (sms_parts, fallbacks, recipient_events):
        await conn.execute(table.delete().where(table.c.tracking_id.in_(tracking)))
    for table in (recipients, messages, templates, mo_messages, idempotency_keys):
        await conn.execute(table.delete().where(table.c.account_id == account_id))
    await conn.execute(accounts.delete().where(accounts.c.id == account_id))
