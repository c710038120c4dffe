"""GET|POST /kannel/dlr: delivery receipts for fallback SMS sent through Kannel.

Kannel fetches the dlr-url mmsgate gave with each part (`route`, `id` = our part id, `type` =
the DLR type, `reply` = the SMSC's receipt text). The type is a set of bits: 1 delivered to
the phone, 2 not delivered, 16 not delivered to the SMSC (Kannel's own report of a refused
submit_sm, reply `NACK/0x0000000b/Invalid Destination Address`); 4 and 8 (queued, delivered to
the SMSC) are not final and change nothing. Bits come combined: Kannel 1.4.5 reports an
EXPIRED receipt (message_state 3) as 34 = 2 + 32. The SMSC's own `stat:` in the reply, when
present, names the failure more precisely (EXPIRED, REJECTD, ...).

Anyone who can reach the port could post a receipt, so one is applied only with the `token`
of its route (`SmsRoute.receipt_token`, carried in every dlr-url mmsgate hands Kannel),
compared in constant time: none is 401, a wrong one (or another route's) 403, and neither
changes anything. A part is looked up under the authenticated route only, so a receipt for a
part of another route finds nothing (404).
"""

from __future__ import annotations

import hmac
import re
import urllib.parse

import structlog
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from mmsgate import errors, http_server, numbers
from mmsgate.api.actions import Services
from mmsgate.store import fallbacks

log = structlog.get_logger(__name__)
MAX_BODY = 64 * 1024  # a receipt is a few hundred bytes of form fields

# Kannel's DLR type bits (gw/dlr.h) → the stat they mean, in the order they are tested.
DLR_STAT = ((1, "DELIVRD"), (2, "UNDELIV"), (16, "REJECTD"))
TYPE_DIGITS = 10  # the bits Kannel defines fit in two digits; a longer type is not Kannel's
_STAT = re.compile(r"\bstat:([A-Za-z]+)", re.IGNORECASE)
_ERR = re.compile(r"\berr:([0-9A-Fa-fx]+)|^NACK/(0x[0-9A-Fa-f]+)/", re.IGNORECASE)


async def dlr(svc: Services, request: Request) -> Response:
    params = dict(request.query_params)
    if request.method == "POST":
        # A urlencoded form, read here: Starlette's form parser needs python-multipart.
        try:
            body = await http_server.read_body(request, MAX_BODY)
        except errors.BodyTooLarge as exc:
            return PlainTextResponse(f"{exc}\n", 413)
        params.update(urllib.parse.parse_qsl(body.decode("utf-8", "replace")))
    if (refused := _unauthenticated(svc, params)) is not None:
        return refused
    route, part_id, kind = params.get("route"), params.get("id"), params.get("type", "")
    bits = numbers.decimal(kind, TYPE_DIGITS)
    if not route or not part_id or bits is None:
        return PlainTextResponse("route, id and a numeric type are required\n", 400)
    stat = next((stat for bit, stat in DLR_STAT if bits & bit), None)
    if stat is None:
        return PlainTextResponse("noted (not final)\n")
    reply = params.get("reply", "")
    said = _STAT.search(reply)
    if stat != "DELIVRD" and said and said.group(1).upper()[:7] in fallbacks.FAILED_STATS:
        stat = said.group(1).upper()[:7]  # names the failure; never turns one into a delivery
    found = _ERR.search(reply)
    error = (found.group(1) or found.group(2)) if found else None
    http_server.committing()
    try:
        moved = await fallbacks.apply_receipt(svc.db, route, part_id, stat, error, now=svc.clock())
    except fallbacks.UnknownPart:
        log.warning("kannel.dlr_unknown", route=route, id=part_id, type=kind)
        return PlainTextResponse("unknown message\n", 404)
    log.info("kannel.dlr", route=route, id=part_id, stat=stat, moved=moved)
    return PlainTextResponse("ok\n")


def _unauthenticated(svc: Services, params: dict[str, str]) -> Response | None:
    """401 without a token, 403 unless it is the token of the kannel route named; else None."""
    token = params.get("token", "")
    if not token:
        log.warning("kannel.dlr_unauthenticated", route=params.get("route"))
        return PlainTextResponse("a token is required\n", 401)
    name = params.get("route")
    routes = (r for r in svc.settings.sms_routes if r.kind == "kannel" and r.name == name)
    route = next(routes, None)
    # compare_digest on bytes: its str form refuses non-ASCII, which anyone can send.
    if route is None or not hmac.compare_digest(token.encode(), route.receipt_token().encode()):
        log.warning("kannel.dlr_bad_token", route=name)
        return PlainTextResponse("wrong token for this route\n", 403)
    return None
