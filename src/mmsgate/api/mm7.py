"""POST /mm7: requests from carriers' MMSCs. DeliveryReportReq moves the recipient it names
(by MessageID) and is answered with DeliveryReportRsp; DeliverReq (MO) is stored and posted
as N401 with content URLs under /media/; ReadReplyReq is acknowledged.

Every request must authenticate as a route (api/inbound.py), else 401 and nothing changes.
A report moves only a message submitted over a route it authenticated as; an MO reaches
only an account whose number such a route serves.

Faults answer in the request's namespace and version. One that a resend may cure (a
MessageID not known yet) goes with HTTP 500, which MMSCs retry; one that no resend can cure
(malformed, unsupported, address error) is an env:Client fault with HTTP 400, final for an
HTTP client (RFC 9110 §15.5; the SOAP 1.2 HTTP binding, §7.5.1.2, maps Sender faults to 400).

A report for a MessageID not known yet is answered with a transient fault (3000), so the
MMSC sends it again: the SubmitRsp that carries the id and the report can cross on the wire.
Before that answer the report waits a moment (UNKNOWN_WAITS) for the id to be recorded: a
fast MMSC's report often overtakes the worker's commit of the SubmitRsp by milliseconds,
and a second look then is far cheaper than the MMSC's round of retries.
"""

from __future__ import annotations

import asyncio
import secrets
import string
from collections.abc import Sequence

import structlog
from starlette.requests import Request
from starlette.responses import Response

from mmsgate import errors, http_server, metrics, models
from mmsgate import mm7_codec as mm7
from mmsgate.api import inbound, request_log
from mmsgate.api.actions import Services
from mmsgate.settings import Route
from mmsgate.store import accounts, deliveries, mo
from mmsgate.store.deliveries import Move

log = structlog.get_logger(__name__)
S = models.RecipientState
MAX_BODY = 8 * 1024 * 1024
XML = "text/xml; charset=utf-8"
UNKNOWN_WAITS = (0.05, 0.1, 0.2)  # seconds between looks for a MessageID not yet recorded

M = mm7.MMStatus
# A report's status (TS 23.140 §8.4.2) → the recipient's state, Sinch code and status text.
# Deferred, Indeterminate and the like say nothing final: the recipient stays submitted.
REPORTED: dict[mm7.MMStatus, tuple[models.RecipientState, str, str]] = {
    M.RETRIEVED: (S.DELIVERED, "N102", "Message Sent/Delivered"),
    M.FORWARDED: (S.DELIVERED, "N102", "Message Sent/Delivered"),
    M.EXPIRED: (S.EXPIRED, "N103", "Message Sent/Expired"),
    M.REJECTED: (S.REJECTED, "E102", "Message Sent/Rejected"),
    M.UNRECOGNISED: (S.FAILED, "E102", "Message Sent/Failed"),
    M.NOT_SUPPORTED: (S.FAILED, "E102", "Message Sent/Not Supported"),
}


async def receive(svc: Services, request: Request) -> Response:
    client = request.client.host if request.client else None
    pair = inbound.basic_pair(request.headers.get("authorization"))
    routes = inbound.authenticated(inbound.inbound_routes(svc.settings), pair, client)
    if not routes:
        log.warning("mm7.unauthenticated", client=client, user=pair[0] if pair else None)
        body = mm7.encode_fault(None, 4001, "Improper identification")
        request_log.note(code="4001", info="no route's credentials")
        headers = {"WWW-Authenticate": 'Basic realm="mmsgate mm7", charset="UTF-8"'}
        return Response(body, status_code=401, headers=headers, media_type=XML)
    try:
        body = await http_server.read_body(request, MAX_BODY)
    except errors.BodyTooLarge:
        return _fault(None, 2008, f"Element not supported: body larger than {MAX_BODY} bytes")
    try:
        incoming = mm7.decode_request(request.headers.get("content-type", "text/xml"), body)
    except mm7.Mm7FormatError as exc:
        return _fault(None, 2007, f"Message format corrupt: {exc}")
    request_log.note(action=incoming.kind)
    operation = incoming.operation
    if operation is mm7.Operation.DELIVERY_REPORT:
        return await _report(svc, incoming, routes)
    if operation is mm7.Operation.READ_REPLY:
        return _answer(incoming)
    if operation is mm7.Operation.DELIVER:
        return await _mobile_originated(svc, incoming, routes)
    return _fault(incoming, 4003, f"Unsupported operation {incoming.kind}")


async def _report(svc: Services, incoming: mm7.Incoming, routes: tuple[Route, ...]) -> Response:
    report = incoming.report
    message_id, status = report.message_id, report.status_name
    if not message_id or not status:
        return _fault(incoming, 4004, "MessageID and MMStatus are required")
    row = await _submitted_over(svc, message_id, routes)
    for wait in UNKNOWN_WAITS:
        if row is not None:
            break
        await asyncio.sleep(wait)
        row = await _submitted_over(svc, message_id, routes)
    if row is None:
        metrics.RECEIPTS.labels(status, "unmatched").inc()
        log.info("mm7.report_unmatched", message_id=message_id, status=status)
        return _fault(incoming, 3000, f"MessageID {message_id} not known yet", retry=True)
    request_log.note(tracking_ids=(row.tracking_id,))
    outcome = REPORTED.get(report.status) if report.status is not None else None
    if outcome is not None:
        state, code, text = outcome
        detail = report.status_text or f"MMSC reported {status}"
        handset = report.handset
        move = Move(state, code, detail, handset=handset if code == "N102" else None, status=text)
        http_server.committing()
        moved = await deliveries.advance(svc.db, row, move, now=svc.clock())
        metrics.RECEIPTS.labels(status, str(moved).lower()).inc()
        log.info("mm7.report", tracking_id=row.tracking_id, status=status, applied=moved)
    return _answer(incoming)


async def _submitted_over(
    svc: Services, message_id: str, routes: tuple[Route, ...]
) -> deliveries.Reported | None:
    """The recipient the MMSC took under this MessageID, if it went over one of `routes`:
    one route's MMSC cannot move what another route's took."""
    names = [r.name for r in routes]
    row = await deliveries.by_carrier_message_id(svc.db, message_id)
    if row is None or row.route in names:
        return row
    return await deliveries.by_carrier_message_id_on(svc.db, message_id, names)


async def _mobile_originated(
    svc: Services, incoming: mm7.Incoming, routes: tuple[Route, ...]
) -> Response:
    """Store an MO message's parts and queue its N401 postback to the account that owns
    the number it was sent to, when a route the MMSC authenticated as serves that number."""
    deliver = incoming.deliver
    sender = deliver.sender
    if len(sender) > mo.MAX_ADDRESS:
        return _fault(incoming, 2002, f"Address Error: Sender over {mo.MAX_ADDRESS} characters")
    everyone = svc.settings.routes
    addressed = deliver.recipients or (deliver.recipient,)
    served = [n for n in addressed if any(inbound.serves(everyone, r, n) for r in routes)]
    if not served:
        names = ", ".join(r.name for r in routes)
        recipient = deliver.recipient
        return _fault(incoming, 2002, f"Address Error: route {names} does not serve {recipient}")
    everyone_of = await accounts.list_all(svc.db)
    owned = ((n, a) for n in served for a in everyone_of if n in _digits(a.senders))
    recipient, owner = next(owned, (served[0], None))
    if not sender or owner is None:
        return _fault(incoming, 2002, f"Address Error: no account has {recipient!r}")
    # A group MO names the whole thread: the other members are shown to the account.
    copy_to = tuple(n for n in addressed if n not in (recipient, sender))
    http_server.committing()  # the parts' blobs, then the MO and its postback
    parts: list[mo.MoPart] = []
    for content_type, data in incoming.parts:
        if content_type.split(";", 1)[0] == "application/smil":
            continue  # the layout, not content the customer asked for
        key = await svc.blobs.put(data)
        parts.append({"content_type": content_type, "blob_key": key, "size": len(data)})
    now = svc.clock()
    tracking_id = "MMS_MO_" + secrets.token_urlsafe(15)
    token = secrets.token_urlsafe(24)  # 192 random bits
    base = svc.settings.public_url
    files = [f"{base}/media/{token}/{n}" for n in range(1, len(parts) + 1)]
    subject = deliver.subject
    postback = models.PostbackEvent(
        models.PostbackKind.MO,
        owner.id,
        "N401",
        at=now,
        tracking_id=tracking_id,
        sender=sender,
        to=recipient,
        subject=subject,
        files=tuple(files),
        keyword=keyword(subject, incoming.parts),
        copy_to=copy_to,
    )
    message = mo.MoMessage(
        tracking_id=tracking_id,
        account_id=owner.id,
        sender=sender,
        recipient=recipient,
        subject=subject,
        token=token,
        parts=parts,
        received_at=now,
    )
    await mo.store(svc.db, message, postback, now)
    log.info("mm7.mo_received", tracking_id=tracking_id, parts=len(parts))
    request_log.note(account=owner.name, tracking_ids=(tracking_id,))
    return _answer(incoming)


MAX_KEYWORD = 32  # characters: a longer first word is no keyword anyone set up


def keyword(subject: str | None, parts: Sequence[tuple[str, bytes]]) -> str | None:
    """The MO's keyword (API reference §8.4): the first word of its subject, or else of its
    first text part, without punctuation around it and in capitals (`photo!` is `PHOTO`).
    Sinch names it only when it matches a keyword campaign; mmsgate has none, so it names
    every first word and the account matches it against its own; None without one."""
    texts = [subject or ""]
    texts += [data.decode("utf-8", "replace") for kind, data in parts if _is_text(kind)][:1]
    for text in texts:
        words = text.split(maxsplit=1)
        word = words[0].strip(string.punctuation) if words else ""
        if word:
            return word.upper() if len(word) <= MAX_KEYWORD else None
    return None


def _is_text(content_type: str) -> bool:
    return content_type.split(";", 1)[0].strip().lower() == "text/plain"


def _answer(incoming: mm7.Incoming) -> Response:
    return Response(mm7.encode_answer(incoming), media_type=XML)


def _digits(numbers: tuple[str, ...]) -> set[str]:
    return {number.removeprefix("+") for number in numbers}


def _fault(incoming: mm7.Incoming | None, code: int, text: str, *, retry: bool = False) -> Response:
    """A fault in the request's namespace and version: HTTP 500 when a resend may succeed,
    400 when none can (module docstring)."""
    body = mm7.encode_fault_to(incoming, code, text)
    request_log.note(code=str(code), info=text)  # the MM7 status code (TS 23.140 §8.4.2)
    return Response(body, status_code=500 if retry else 400, media_type=XML)
