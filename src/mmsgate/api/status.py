"""GET /v1/messages/{tracking-id}: the state and history of one recipient of one send."""

from __future__ import annotations

import datetime as dt
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mmsgate import codes, errors
from mmsgate.api.actions import Services
from mmsgate.store import queries


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


def render(found: dict[str, Any], public_url: str) -> dict[str, Any]:
    r = found["recipient"]
    return {
        "tracking-id": r["tracking_id"],
        "mms-id": str(r["template_id"]),
        "action": r["action"],
        "to": r["msisdn"],
        "from": r["sender"],
        "operator-id": r["operator_id"],
        "client-reference": r["client_reference"],
        "state": r["state"],
        "sent-as": r["sent_as"],
        "route": r["route"],
        "created-at": _iso(r["created_at"]),
        "updated-at": _iso(r["updated_at"]),
        "expires-at": _iso(r["expires_at"]),
        "history": [
            {"state": e["state"], "code": e["code"], "detail": e["detail"], "at": _iso(e["at"])}
            for e in found["events"]
        ],
        "fallback": _fallback(found["fallback"], public_url),
    }


def _fallback(f: Any, public_url: str) -> dict[str, Any] | None:
    """The SMS-with-link fallback, when this recipient took that path."""
    if f is None:
        return None
    return {
        "reason": f["reason"],
        "link": f"{public_url}/m/{f['token']}" if f["token"] else None,
        "link_expires_at": _iso(f["link_expires_at"]),
        "sms_text": f["sms_text"],
        "sms_coding": f["sms_coding"],
        "sms_parts": f["sms_parts"],
        "sms_route": f["sms_route"],
        "opened_at": _iso(f["opened_at"]),
        "opens": f["opens"],
    }
