"""GET /v1/messages/{tracking-id} and GET /v1/messages: the state and history of the
recipients of the caller's sends, one by its tracking-id or a page of them.

Both answer the same item, `MessageItem`, made here only (`render`); its type is the one
the OpenAPI document describes.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, TypedDict

from msgspec import Meta
from starlette.requests import Request
from starlette.responses import JSONResponse

from mmsgate import codes, errors
from mmsgate.api import listing
from mmsgate.api.actions import Services
from mmsgate.store import listing as store_listing
from mmsgate.store import queries
from mmsgate.store.fallbacks import Fallback
from mmsgate.store.queries import RecipientStatus

Instant = Annotated[str, Meta(description="ISO 8601 date-time, UTC, to the millisecond")]
State = Annotated[
    str, Meta(description="queued, submitted, delivered, rejected, expired, failed, fallback, …")
]


class HistoryEvent(TypedDict):
    state: Annotated[str, Meta(description="the state reached")]
    code: Annotated[str | None, Meta(description="the postback code, e.g. N102")]
    detail: Annotated[str | None, Meta(description="why, in words")]
    at: Instant


class FallbackInfo(TypedDict):
    reason: Annotated[str, Meta(description="why the MMS could not go")]
    link: Annotated[str | None, Meta(description="the hosted page; null when disabled")]
    link_expires_at: Instant
    sms_text: Annotated[str, Meta(description="the SMS as sent, link included")]
    sms_coding: Annotated[str, Meta(description="gsm7 or ucs2")]
    sms_parts: Annotated[int, Meta(description="parts of the SMS")]
    sms_route: Annotated[str | None, Meta(description="the SMS route taken")]
    opened_at: Annotated[str | None, Meta(description="when the page was first opened")]
    opens: Annotated[int, Meta(description="how many times the page was opened")]


MessageItem = TypedDict(
    "MessageItem",
    {
        "tracking-id": Annotated[str, Meta(description="this recipient of this send")],
        "mms-id": Annotated[str, Meta(description="the template sent")],
        "action": Annotated[str, Meta(description="the request that sent it")],
        "to": Annotated[str, Meta(description="the recipient, international digits")],
        "from": Annotated[str, Meta(description="the sender")],
        "from-mask": Annotated[
            str | None, Meta(description="the alphanumeric sender shown instead, if any")
        ],
        "to-displayonly": Annotated[
            list[str],
            Meta(description="group members shown on the handset, never delivered to"),
        ],
        "operator-id": Annotated[int | None, Meta(description="as the request gave it")],
        "client-reference": Annotated[str | None, Meta(description="as the request gave it")],
        "state": State,
        "sent-as": Annotated[str | None, Meta(description="MMS, SMS, or null while queued")],
        "route": Annotated[str | None, Meta(description="the carrier route taken")],
        "created-at": Instant,
        "updated-at": Instant,
        "expires-at": Instant,
        "history": Annotated[list[HistoryEvent], Meta(description="every state, oldest first")],
        "fallback": Annotated[
            FallbackInfo | None, Meta(description="the SMS-with-link fallback, when taken")
        ],
    },
)

MessageList = TypedDict(
    "MessageList",
    {
        "messages": Annotated[list[MessageItem], Meta(description="newest first")],
        "next-cursor": Annotated[
            str | None, Meta(description="pass as `cursor` for the next page; null: no more")
        ],
    },
)


def _iso(value: dt.datetime) -> str:
    return value.isoformat(timespec="milliseconds")


def _iso_or_none(value: dt.datetime | None) -> str | None:
    return None if value is None else _iso(value)


async def message_status(svc: Services, request: Request) -> JSONResponse:
    """Answer JSON for the caller's own tracking-id; another account's is a 404 like a miss."""
    account = await svc.guard.authenticate(request.headers.get("x-api-key"))
    tracking_id = request.path_params["tracking_id"]
    known = listing.is_tracking_id(tracking_id)  # else no query: PostgreSQL refuses a NUL
    found = await queries.recipient_status(svc.db, account.id, tracking_id) if known else None
    if found is None:
        raise errors.NotFound(
            codes.ErrorCode.UNKNOWN_TRACKING_ID, f"no message with tracking-id {tracking_id}"
        )
    answer: MessageItem = render(found, svc.settings.public_url)
    return JSONResponse(answer)


async def list_messages(svc: Services, request: Request) -> JSONResponse:
    """A page of the caller's recipients, newest first, with the cursor of the next."""
    account = await svc.guard.authenticate(request.headers.get("x-api-key"))
    asked = listing.read_query(request.query_params.multi_items(), account.id)
    page = await store_listing.find(svc.db, account.id, asked.where, asked.limit, asked.after)
    last = page.last
    answer: MessageList = {
        "messages": [render(item, svc.settings.public_url) for item in page.items],
        "next-cursor": None if last is None else listing.cursor(last, account.id),
    }
    return JSONResponse(answer)


def render(found: RecipientStatus, public_url: str) -> MessageItem:
    """One recipient as both routes answer it."""
    return {
        "tracking-id": found.tracking_id,
        "mms-id": str(found.template_id),
        "action": found.action,
        "to": found.msisdn,
        "from": found.sender,
        "from-mask": found.sender_mask,
        "to-displayonly": list(found.to_displayonly),
        "operator-id": found.operator_id,
        "client-reference": found.client_reference,
        "state": found.state.value,
        "sent-as": found.sent_as,
        "route": found.route,
        "created-at": _iso(found.created_at),
        "updated-at": _iso(found.updated_at),
        "expires-at": _iso(found.expires_at),
        "history": [
            {"state": e.state.value, "code": e.code, "detail": e.detail, "at": _iso(e.at)}
            for e in found.events
        ],
        "fallback": _fallback(found.fallback, public_url),
    }


def _fallback(f: Fallback | None, public_url: str) -> FallbackInfo | None:
    """The SMS-with-link fallback, when this recipient took that path."""
    if f is None:
        return None
    return {
        "reason": f.reason,
        "link": f"{public_url}/m/{f.token}" if f.token else None,
        "link_expires_at": _iso(f.link_expires_at),
        "sms_text": f.sms_text,
        "sms_coding": f.sms_coding,
        "sms_parts": f.sms_parts,
        "sms_route": f.sms_route,
        "opened_at": _iso_or_none(f.opened_at),
        "opens": f.opens,
    }
