"""GET /v1/messages/{tracking-id}: the state and history of one recipient of one send."""

from __future__ import annotations

import datetime as dt

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mmsgate import codes, errors
from mmsgate.api.actions import Services
from mmsgate.store import queries
from mmsgate.store.fallbacks import Fallback
from mmsgate.store.queries import RecipientStatus


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat(timespec="milliseconds")


async def message_status(svc: Services, request: Request) -> Response:
    """Answer JSON for the caller's own tracking-id; another account's is a 404 like a miss."""
    account = await svc.guard.authenticate(request.headers.get("x-api-key"))
    tracking_id = request.path_params["tracking_id"]
    found = await queries.recipient_status(svc.db, account.id, tracking_id)
    if found is None:
        raise errors.NotFound(
            codes.ErrorCode.UNKNOWN_TRACKING_ID, f"no message with tracking-id {tracking_id}"
        )
    return JSONResponse(render(found, svc.settings.public_url))


def render(found: RecipientStatus, public_url: str) -> dict[str, object]:
    return {
        "tracking-id": found.tracking_id,
        "mms-id": str(found.template_id),
        "action": found.action,
        "to": found.msisdn,
        "from": found.sender,
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


def _fallback(f: Fallback | None, public_url: str) -> dict[str, object] | None:
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
        "opened_at": _iso(f.opened_at),
        "opens": f.opens,
    }
