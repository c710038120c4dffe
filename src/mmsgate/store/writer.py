"""Every accepted request's rows, written by the Database's group commit.

Each API request hands its rows to the writer and waits. The requests that queued up while
the previous transaction was committing are written together, in one transaction of
`Database.batched` (up to MAX_BATCH in one call), so one fsync covers many requests. A
request is answered only after the commit that holds its rows; a request whose rows cannot
be written is rolled back alone (the batch is retried one request at a time) and nothing of
it remains.

A request that carries an Idempotency-Key has its key written in the same transaction
(store/idempotency.py); one whose key another request took meanwhile fails alone, with
`errors.KeyTaken`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from collections.abc import Callable, Mapping, Sequence

import sqlalchemy as sa
import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from mmsgate import codes, errors, models
from mmsgate.store import idempotency
from mmsgate.store.db import Database
from mmsgate.store.jobs import new_job
from mmsgate.store.schema import jobs, messages, recipient_events, recipients, templates

log = structlog.get_logger(__name__)

MAX_BATCH = 256


@dataclasses.dataclass(frozen=True, slots=True)
class NewTemplate:
    """A template to store: saved by saveMMS, or created inline by sendMMS."""

    account_id: int
    kind: str
    name: str
    subject: str | None
    state: models.TemplateState
    slides: Sequence[Mapping[str, object]]
    total_size: int
    fallback_sms_text: str | None = None
    disable_fallback: bool | None = None
    disable_fallback_link: bool | None = None
    link_expires_at: dt.datetime | None = None
    client_reference: str | None = None  # saveMMS's, echoed in its N003/E00x postback
    key: idempotency.NewKey | None = None  # a saveMMS's Idempotency-Key


@dataclasses.dataclass(frozen=True, slots=True)
class NewSend:
    """One accepted send: the message, its recipients (tracking-id, number) and their jobs."""

    message_id: str
    account_id: int
    action: str
    sender: str
    recipients: tuple[tuple[str, str], ...]
    expires_at: dt.datetime
    link_expires_at: dt.datetime
    template_id: int | None = None
    template: NewTemplate | None = None
    service_id: str | None = None
    operator_id: int | None = None
    campaign_ref: str | None = None
    client_reference: str | None = None
    subject: str | None = None
    custom_texts: dict[str, str] | None = None
    merge_data: dict[str, str] | None = None
    fallback_sms_text: str | None = None
    disable_fallback: bool = False
    disable_fallback_link: bool = False
    to_displayonly: tuple[str, ...] = ()
    sender_mask: str | None = None
    key: idempotency.NewKey | None = None


class Writer:
    """Hands each request's writes to the Database's group commit (`Database.batched`)."""

    def __init__(self, db: Database, clock: Callable[[], dt.datetime] | None = None) -> None:
        self._db = db
        self._clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self._started = False
        self._closing = False
        self._writing = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def start(self) -> None:
        self._started = True

    async def close(self) -> None:
        """Wait for everything already handed in to be written; refuse anything more."""
        self._closing = True
        await self._idle.wait()

    async def save_template(self, template: NewTemplate) -> int:
        """Store a template (and its encode job when it is encoding); returns its mms-id."""
        return await self._submit(template)

    async def accept(self, send: NewSend) -> int:
        """Store a send with its recipients and delivery jobs; returns the mms-id it uses.

        Raises ApiError E241 when the template is gone and E626 while it is encoding: the
        template's state is checked inside the transaction that writes the send. Raises
        KeyTaken when the send's Idempotency-Key was stored meanwhile by another request.
        """
        return await self._submit(send)

    async def _submit(self, item: NewTemplate | NewSend) -> int:
        if self._closing or not self._started:
            raise errors.ApiError(codes.ErrorCode.INTERNAL, "The server is shutting down")
        self._writing += 1
        self._idle.clear()
        try:
            result = await self._db.batched(self._write, key=_ACCEPTED, item=item, most=MAX_BATCH)
        except sa.exc.IntegrityError as exc:
            if item.key is None:
                log.error("store.write_failed", error=repr(exc))
                raise errors.ApiError(codes.ErrorCode.INTERNAL) from exc
            # Run alone (Database.batched), a keyed accept conflicts on its key: another
            # request with it committed first. The caller looks the key up to be sure.
            log.info("store.key_taken", account_id=item.account_id)
            raise errors.KeyTaken(item.key.key) from exc
        except Exception as exc:
            log.error("store.write_failed", error=repr(exc))
            raise errors.ApiError(codes.ErrorCode.INTERNAL) from exc
        finally:
            self._writing -= 1
            if not self._writing:
                self._idle.set()
        if isinstance(result, errors.ApiError):
            raise result
        return result

    async def _write(
        self, conn: AsyncConnection, items: list[NewTemplate | NewSend]
    ) -> list[int | errors.ApiError]:
        # One hop into synchronous SQLAlchemy for the whole batch: far cheaper than
        # switching back and forth for every statement.
        return await conn.run_sync(_write_items, items, self._clock())


_ACCEPTED = "accepted-requests"  # the group of `Database.batched` every request's rows join


def _write_items(
    conn: sa.Connection, items: Sequence[NewTemplate | NewSend], now: dt.datetime
) -> list[int | errors.ApiError]:
    results: list[int | errors.ApiError] = [0] * len(items)
    for i, item in enumerate(items):
        if isinstance(item, NewTemplate):
            results[i] = _insert_template(conn, item, now)
    sends = [(i, s) for i, s in enumerate(items) if isinstance(s, NewSend)]
    for i, send in sends:
        if send.template is not None:
            results[i] = _insert_template(conn, send.template, now)
    checked = _check_templates(conn, [s for _, s in sends if s.template is None])
    ready: list[tuple[NewSend, int]] = []
    for i, send in sends:
        if send.template is None:
            assert send.template_id is not None
            problem = checked.get((send.account_id, send.template_id))
            results[i] = problem or send.template_id
        result = results[i]
        if not isinstance(result, errors.ApiError):
            ready.append((send, result))
    _insert_sends(conn, ready, now)
    idempotency.write(conn, _keys(items, results), now)
    return results


def _keys(
    items: Sequence[NewTemplate | NewSend], results: Sequence[int | errors.ApiError]
) -> list[tuple[int, idempotency.NewKey, int]]:
    """(account, key, mms-id) of each item written that carries a key; a refused one
    stores none, so its retry is a request of its own."""
    return [
        (item.account_id, item.key, result)
        for item, result in zip(items, results, strict=True)
        if item.key is not None and isinstance(result, int)
    ]


def _insert_template(conn: sa.Connection, t: NewTemplate, now: dt.datetime) -> int:
    result = conn.execute(
        templates.insert()
        .values(
            account_id=t.account_id,
            kind=t.kind,
            name=t.name,
            subject=t.subject,
            state=t.state.value,
            slides=t.slides,
            slide_count=len(t.slides),
            total_size=t.total_size,
            fallback_sms_text=t.fallback_sms_text,
            disable_fallback=t.disable_fallback,
            disable_fallback_link=t.disable_fallback_link,
            link_expires_at=t.link_expires_at,
            client_reference=t.client_reference,
            created_at=now,
        )
        .returning(templates.c.id)
    )
    template_id = int(result.scalar_one())
    if t.kind == "saved":
        # Every saved template is prepared ahead, ending in N003 or E002/E003/E004. One with
        # audio or video is locked (ENCODING) until then; images alone are usable at once,
        # having been decoded at accept time, and delivery reuses the cached transcodes.
        conn.execute(
            jobs.insert().values(
                new_job(models.JobKind.ENCODE_TEMPLATE, now, template_id=template_id)
            )
        )
    return template_id


_TEMPLATE_STATE = sa.select(templates.c.account_id, templates.c.state).where(
    templates.c.id == sa.bindparam("template_id"), templates.c.deleted_at.is_(None)
)


def _check_templates(
    conn: sa.Connection, sends: list[NewSend]
) -> dict[tuple[int, int], errors.ApiError]:
    """Problems with the templates these sends name, keyed by (account, mms-id)."""
    wanted = {(s.account_id, s.template_id) for s in sends if s.template_id is not None}
    states: dict[int, tuple[int, models.TemplateState] | None] = {}
    for _, template_id in wanted:
        if template_id not in states:
            row = conn.execute(_TEMPLATE_STATE, {"template_id": template_id}).first()
            states[template_id] = (
                None if row is None else (row.account_id, models.TemplateState(row.state))
            )
    problems: dict[tuple[int, int], errors.ApiError] = {}
    for account_id, template_id in wanted:
        found = states[template_id]
        state = found[1] if found is not None and found[0] == account_id else None
        if state is None or state is models.TemplateState.FAILED:
            problems[(account_id, template_id)] = errors.ApiError(
                codes.ErrorCode.BAD_MMS_ID, f"Invalid mms-id {template_id} / MMS don't exist"
            )
        elif state is models.TemplateState.ENCODING:
            problems[(account_id, template_id)] = errors.ApiError(
                codes.ErrorCode.TEMPLATE_ENCODING,
                f"MMS {template_id} is not available: encoding in progress, retry later",
            )
    return problems


def _insert_sends(conn: sa.Connection, sends: list[tuple[NewSend, int]], now: dt.datetime) -> None:
    if not sends:
        return
    message_rows, recipient_rows, event_rows, job_rows = [], [], [], []
    for send, template_id in sends:
        message_rows.append(_message_row(send, template_id, now))
        for tracking_id, msisdn in send.recipients:
            recipient_rows.append(
                {
                    "tracking_id": tracking_id,
                    "message_id": send.message_id,
                    "account_id": send.account_id,
                    "msisdn": msisdn,
                    "state": models.RecipientState.QUEUED.value,
                    "sent_as": None,
                    "route": None,
                    "created_at": now,
                    "updated_at": now,
                }
            )
            event_rows.append(
                {
                    "tracking_id": tracking_id,
                    "state": models.RecipientState.QUEUED.value,
                    "code": None,
                    "detail": "accepted",
                    "at": now,
                }
            )
            job_rows.append(new_job(models.JobKind.DELIVER, now, tracking_id=tracking_id))
    conn.execute(messages.insert(), message_rows)
    conn.execute(recipients.insert(), recipient_rows)
    conn.execute(recipient_events.insert(), event_rows)
    conn.execute(jobs.insert(), job_rows)


def _message_row(send: NewSend, template_id: int, now: dt.datetime) -> dict[str, object]:
    return {
        "id": send.message_id,
        "account_id": send.account_id,
        "template_id": template_id,
        "action": send.action,
        "sender": send.sender,
        "service_id": send.service_id,
        "operator_id": send.operator_id,
        "campaign_ref": send.campaign_ref,
        "client_reference": send.client_reference,
        "subject": send.subject,
        "custom_texts": send.custom_texts,
        "merge_data": send.merge_data,
        "fallback_sms_text": send.fallback_sms_text,
        "disable_fallback": send.disable_fallback,
        "disable_fallback_link": send.disable_fallback_link,
        "link_expires_at": send.link_expires_at,
        "expires_at": send.expires_at,
        "created_at": now,
        "to_displayonly": list(send.to_displayonly) or None,
        "sender_mask": send.sender_mask,
    }
