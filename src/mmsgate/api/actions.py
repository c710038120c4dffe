"""The five Sinch API actions: validate, fetch media, store in one commit, answer.

Each action returns its result as a value (api/results.py) and raises a refusal as
errors.ApiError with its Sinch code; the endpoint renders either (api/sinch_xml.py).
A send is answered `Success` only after the commit that holds it.

A client that closes its connection before the answer stops its request (cancelled, nothing
stored) until the action calls `http_server.committing()`, just before it hands its rows to
the writer: from then on the request runs to its end, and a send is delivered even though
its client never hears the `Success`.

The accepts (saveMMS, sendMMS, sendSavedMMS) take the request's Idempotency-Key claim
(api/idempotency.py, which runs them): they build their answer before the write, so the
writer stores it with the key in the same transaction.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import secrets
import uuid
from collections.abc import Callable

from mmsgate import codes, errors, http_server, metrics, models, numbers, profiles, routing
from mmsgate.api import content as content_store
from mmsgate.api import results, rules
from mmsgate.api.guard import Guard
from mmsgate.api.idempotency import Claim
from mmsgate.settings import Route, Settings
from mmsgate.store import queries
from mmsgate.store.blobs import BlobStore
from mmsgate.store.db import Database
from mmsgate.store.writer import NewSend, NewTemplate, Writer

E = codes.ErrorCode
LINK_LIFETIME = dt.timedelta(days=365)
MMS_LIFETIME = dt.timedelta(days=3)
MAX_SERVICE_ID = 64  # characters: messages.service_id (store/schema.py)
OPERATOR_DIGITS = 9  # Sinch's operator ids have five (31002); a longer one names none


@dataclasses.dataclass(frozen=True, slots=True)
class Services:
    """What the actions need, built once at start."""

    settings: Settings
    db: Database
    writer: Writer
    guard: Guard
    content: content_store.ContentStore
    blobs: BlobStore
    clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)


@dataclasses.dataclass(frozen=True, slots=True)
class Recipient:
    """One number of a send's `to`, as given and as understood."""

    raw: str
    msisdn: str | None
    error: errors.ApiError | None = None


async def save_mms(
    services: Services, account: models.Account, req: rules.SaveMms, claim: Claim | None = None
) -> results.Saved:
    now = services.clock()
    link_expires = (
        link_expiration(req.fallback.link_expiration, now) if req.fallback.link_expiration else None
    )
    stored = await services.content.store(
        req.content, account.id, use_cache=req.cache_content is not False
    )
    state = models.TemplateState.ENCODING if stored.has_av else models.TemplateState.READY
    http_server.committing()  # from here on the request runs to its end (module docstring)
    mms_id = await services.writer.save_template(
        NewTemplate(
            account_id=account.id,
            kind="saved",
            name=req.content.name,
            subject=req.content.subject,
            state=state,
            slides=stored.slides,
            total_size=stored.total_size,
            fallback_sms_text=req.fallback.text,
            disable_fallback=req.fallback.disabled,
            disable_fallback_link=req.fallback.link_disabled,
            link_expires_at=link_expires,
            client_reference=req.client_reference,
            key=claim.new_key(results.Saved(0)) if claim else None,
        )
    )
    return results.Saved(mms_id)


async def send_mms(
    services: Services, account: models.Account, req: rules.SendMms, claim: Claim | None = None
) -> results.Sent:
    now = services.clock()
    plan = check_delivery(services.settings, account, req.delivery)
    check_fallback_text(account, req.fallback, None)
    expires_at, link_expires = expirations(req.delivery, req.fallback, now, account)
    stored = await services.content.store(
        req.content, account.id, use_cache=req.cache_content is not False
    )
    template = NewTemplate(
        account_id=account.id,
        kind="inline",
        name=req.content.name,
        subject=req.content.subject,
        state=models.TemplateState.READY,
        slides=stored.slides,
        total_size=stored.total_size,
    )
    send = new_send(
        account, models.Action.SEND_MMS, req.delivery, req.fallback, plan, expires_at, link_expires
    )
    answer = sent(plan, send, 0, with_from=False)  # its mms-id is the template's, to come
    http_server.committing()
    mms_id = await services.writer.accept(
        dataclasses.replace(
            send,
            template=template,
            subject=req.content.subject,
            key=claim.new_key(answer) if claim else None,
        )
    )
    return counted(dataclasses.replace(answer, mms_id=mms_id), send)


async def send_saved_mms(
    services: Services,
    account: models.Account,
    req: rules.SendSavedMms,
    claim: Claim | None = None,
) -> results.Sent:
    now = services.clock()
    plan = check_delivery(services.settings, account, req.delivery)
    info = await services.content.template(account.id, req.mms_id)
    if info is None or info.state is models.TemplateState.FAILED:
        raise errors.ApiError(E.BAD_MMS_ID, f"Invalid mms-id {req.mms_id} / MMS don't exist")
    if info.state is models.TemplateState.ENCODING:
        raise errors.ApiError(
            E.TEMPLATE_ENCODING,
            f"MMS {req.mms_id} is not available: encoding in progress, retry later",
        )
    for slide in req.custom_texts:
        if slide > info.slide_count:
            raise errors.ApiError(
                E.INVALID_REQUEST,
                f"Invalid custom-text: slide {slide} does not exist "
                f"(the MMS has {info.slide_count})",
            )
    check_fallback_text(account, req.fallback, info)
    expires_at, link_expires = expirations(req.delivery, req.fallback, now, account)
    send = new_send(
        account,
        models.Action.SEND_SAVED_MMS,
        req.delivery,
        req.fallback,
        plan,
        expires_at,
        link_expires,
    )
    send = dataclasses.replace(
        send,
        template_id=req.mms_id,
        subject=req.custom_subject,
        custom_texts={str(k): v for k, v in req.custom_texts.items()} or None,
        merge_data=req.data or None,
        fallback_sms_text=req.fallback.text or info.fallback_sms_text,
        # The send's own flag wins; without one, the template's.
        disable_fallback=bool(
            req.fallback.disabled if req.fallback.disabled is not None else info.disable_fallback
        ),
    )
    answer = sent(plan, send, req.mms_id, with_from=True)
    http_server.committing()
    await services.writer.accept(
        dataclasses.replace(send, key=claim.new_key(answer)) if claim else send
    )
    return counted(answer, send)


async def delete_mms_id(
    services: Services, account: models.Account, req: rules.DeleteMmsId
) -> results.Deleted:
    http_server.committing()
    if not await queries.delete_template(services.db, account.id, req.mms_id):
        raise errors.ApiError(E.BAD_MMS_ID, f"Invalid mms-id {req.mms_id} / MMS don't exist")
    services.content.forget(account.id, req.mms_id)
    return results.Deleted(req.mms_id)


async def get_mms_templates(
    services: Services, account: models.Account, req: rules.GetMmsTemplates
) -> results.Templates:
    total, page = await queries.list_templates(
        services.db, account.id, req.start_date, req.page, req.per_page
    )
    return results.Templates(req.start_date, req.page, req.per_page, total, tuple(page))


@dataclasses.dataclass(frozen=True, slots=True)
class Plan:
    """The checked recipients of a send and the operator it names."""

    recipients: tuple[Recipient, ...]
    operator_id: int | None
    is_list: bool

    @property
    def accepted(self) -> list[Recipient]:
        return [r for r in self.recipients if r.error is None]


def check_delivery(settings: Settings, account: models.Account, d: rules.Delivery) -> Plan:
    """Recipients (E201, E623, E110), sender (E111), service-id (E627), operator (E650/1, E628)."""
    if not d.to:
        raise errors.ApiError(E.TO_REQUIRED)
    if len(d.to) > settings.api.max_recipients:
        raise errors.ApiError(
            E.TOO_MANY_RECIPIENTS,
            f"'to' holds {len(d.to)} numbers, at most {settings.api.max_recipients}",
        )
    if not d.sender or d.sender not in account.senders:
        raise errors.ApiError(
            E.BAD_FROM, f"Invalid shortcode: '{d.sender or ''}' is not a sender of this account"
        )
    check_service_id(account, d.service_id)
    operator_id = check_operator(settings, d.operator_id)
    recipients = tuple(check_number(settings, raw, operator_id, d.sender_mask) for raw in d.to)
    plan = Plan(recipients, operator_id, d.to_is_list)
    if not plan.accepted:
        first = recipients[0].error
        assert first is not None
        raise first
    return plan


def check_service_id(account: models.Account, service_id: str | None) -> None:
    """E627 unless the service-id is one of the account's (when it has any); one longer
    than the stored column (MAX_SERVICE_ID) is no account's, even when none are set."""
    too_long = service_id is not None and len(service_id) > MAX_SERVICE_ID
    if too_long or (account.service_ids and service_id not in account.service_ids):
        raise errors.ApiError(
            E.BAD_SERVICE_ID,
            "service-id is required"
            if service_id is None
            else f"Invalid service-id '{service_id[:MAX_SERVICE_ID]}'",
        )


def check_operator(settings: Settings, raw: str | None) -> int | None:
    if raw is None or raw == "":
        return None
    operator_id = numbers.decimal(raw, OPERATOR_DIGITS)
    if operator_id is None:
        raise errors.ApiError(E.BAD_OPERATOR_ID, f"Invalid operator-id '{raw}'")
    known = set(profiles.OPERATORS) | {op for r in settings.routes for op in r.operators}
    if operator_id not in known:
        raise errors.ApiError(E.UNKNOWN_OPERATOR_ID, f"operator-id {operator_id} not found")
    if routing.route_for(settings.routes, operator_id, None) is None:
        raise errors.ApiError(
            E.OPERATOR_NOT_SUPPORTED, f"Mobile operator {operator_id} is not supported by any route"
        )
    return operator_id


def check_number(
    settings: Settings, raw: str, operator_id: int | None, mask: str | None = None
) -> Recipient:
    msisdn = numbers.normalize_msisdn(raw)
    if msisdn is None:
        return Recipient(
            raw, None, errors.ApiError(E.BAD_TO, f"Invalid 'to' / receiver number '{raw}'")
        )
    route = routing.route_for(settings.routes, operator_id, msisdn)
    if route is None:
        return Recipient(
            raw,
            msisdn,
            errors.ApiError(E.OPERATOR_NOT_SUPPORTED, f"No route serves number {msisdn}"),
        )
    if mask is not None:
        return Recipient(raw, msisdn, mask_refusal(route, msisdn))
    return Recipient(raw, msisdn)


def mask_refusal(route: Route, msisdn: str) -> errors.ApiError | None:
    """E115 when a from-mask cannot reach this number: never in North America (country
    code 1, sinch-mms-api §12: no alphanumeric senders in the US), nor over a route whose
    MMSC shows none (`sender_mask` off). Checked per number, like its route (E628)."""
    if msisdn.startswith("1"):
        return errors.ApiError(
            E.BAD_FROM_MASK,
            f"from-mask is not supported for {msisdn}: no alphanumeric senders in the US or Canada",
        )
    if not route.sender_mask:
        return errors.ApiError(
            E.BAD_FROM_MASK,
            f"from-mask is not supported by route {route.name} (serving {msisdn})",
        )
    return None


def check_fallback_text(
    account: models.Account, fallback: rules.Fallback, template: models.TemplateInfo | None
) -> None:
    """E622 when an optimized account may fall back to SMS but gave no text for it."""
    if account.mode is not models.AccountMode.OPTIMIZED:
        return
    disabled = (
        fallback.disabled
        if fallback.disabled is not None
        else (template and template.disable_fallback)
    )
    if disabled:
        return
    if not fallback.text and not (template and template.fallback_sms_text):
        raise errors.ApiError(E.FALLBACK_TEXT_REQUIRED)


def link_expiration(raw: str, now: dt.datetime) -> dt.datetime:
    value = rules.parse_timestamp(raw)
    if value is None or value <= now or value > now + LINK_LIFETIME + dt.timedelta(days=1):
        raise errors.ApiError(
            E.INVALID_REQUEST,
            f"Invalid fallback-sms-link-expiration '{raw}': an ISO 8601 date within one year",
        )
    return value


def expirations(
    d: rules.Delivery,
    fallback: rules.Fallback,
    now: dt.datetime,
    account: models.Account | None = None,
) -> tuple[dt.datetime, dt.datetime]:
    """(MMS expiry, link expiry): the request's, else the account's default lifetime, else
    3 days (the most allowed); the link's, else 365 days."""
    link = (
        link_expiration(fallback.link_expiration, now)
        if fallback.link_expiration
        else now + LINK_LIFETIME
    )
    if d.expiry is None:
        hours = account.mms_expiry_hours if account is not None else None
        lifetime = min(MMS_LIFETIME, dt.timedelta(hours=hours)) if hours else MMS_LIFETIME
        return now + lifetime, link
    value = rules.parse_timestamp(d.expiry)
    if value is None or value <= now or value > now + MMS_LIFETIME:
        raise errors.ApiError(
            E.INVALID_REQUEST, f"Invalid mms-expiry-timestamp '{d.expiry}': at most 3 days ahead"
        )
    return value, link


def new_send(
    account: models.Account,
    action: models.Action,
    d: rules.Delivery,
    fallback: rules.Fallback,
    plan: Plan,
    expires_at: dt.datetime,
    link_expires: dt.datetime,
) -> NewSend:
    return NewSend(
        message_id=uuid.uuid4().hex,
        account_id=account.id,
        action=action.value,
        sender=d.sender or "",
        recipients=tuple((new_tracking_id(), r.msisdn or "") for r in plan.accepted),
        expires_at=expires_at,
        link_expires_at=link_expires,
        service_id=d.service_id,
        operator_id=plan.operator_id,
        campaign_ref=d.campaign_ref,
        client_reference=d.client_reference,
        fallback_sms_text=fallback.text,
        disable_fallback=bool(fallback.disabled),
        disable_fallback_link=bool(fallback.link_disabled),
        to_displayonly=d.to_displayonly,
        sender_mask=d.sender_mask,
    )


def new_tracking_id() -> str:
    """An opaque, unguessable tracking-id (120 random bits)."""
    return secrets.token_urlsafe(15)


def sent(plan: Plan, send: NewSend, mms_id: int, *, with_from: bool) -> results.Sent:
    """The answer to a send: each number of the request, accepted with its tracking-id or
    refused."""
    tracking = iter(send.recipients)
    numbers: list[results.Accepted | results.Refused] = []
    for r in plan.recipients:
        if r.error is None:
            tracking_id, msisdn = next(tracking)
            numbers.append(results.Accepted(msisdn, tracking_id))
        else:
            numbers.append(results.Refused(r.raw, r.error))
    sender = send.sender if with_from else None
    return results.Sent(mms_id, tuple(numbers), plan.is_list, sender)


def counted(answer: results.Sent, send: NewSend) -> results.Sent:
    """`answer`, once its send is stored: its numbers are counted as accepted."""
    metrics.ACCEPTED.labels(send.action).inc(len(send.recipients))
    return answer
