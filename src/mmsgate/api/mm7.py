"""POST /mm7: requests from carriers' MMSCs. DeliveryReportReq moves the recipient it names
(by MessageID) and is answered with DeliveryReportRsp; ReadReplyReq is acknowledged.

A report for a MessageID not known yet is answered with a transient fault (3000), so the
MMSC sends it again: the SubmitRsp that carries the id and the report can cross on the wire.
"""

from __future__ import annotations

import structlog
from starlette.requests import Request
from starlette.responses import Response

from mmsgate import metrics, models
from mmsgate import mm7_codec as mm7
from mmsgate.api.actions import Services
from mmsgate.store import deliveries
from mmsgate.store.deliveries import Move

log = structlog.get_logger(__name__)
S = models.RecipientState
MAX_BODY = 8 * 1024 * 1024
XML = "text/xml; charset=utf-8"

# MMStatus values (TS 23.140 §8.4.2) → the recipient's state, Sinch code and status text.
# Deferred, Indeterminate and the like say nothing final: the recipient stays submitted.
REPORTED: dict[str, tuple[models.RecipientState, str, str]] = {
    "retrieved": (S.DELIVERED, "N102", "Message Sent/Delivered"),
    "forwarded": (S.DELIVERED, "N102", "Message Sent/Delivered"),
    "expired": (S.EXPIRED, "N103", "Message Sent/Expired"),
    "rejected": (S.REJECTED, "E102", "Message Sent/Rejected"),
    "unrecognised": (S.FAILED, "E102", "Message Sent/Failed"),
    "notsupported": (S.FAILED, "E102", "Message Sent/Not Supported"),
}


async def receive(svc: Services, request: Request) -> Response:
    body = await request.body()
    if len(body) > MAX_BODY:
        return _fault(None, 2008, "Element not supported: body too large")
    try:
        incoming = mm7.decode_request(request.headers.get("content-type", "text/xml"), body)
    except mm7.Mm7FormatError as exc:
        return _fault(None, 2007, f"Message format corrupt: {exc}")
    if incoming.kind == "DeliveryReportReq":
        return await _report(svc, incoming)
    if incoming.kind == "ReadReplyReq":
        return _answer("ReadReplyRsp", incoming)
    return _fault(incoming.transaction_id, 4003, f"Unsupported operation {incoming.kind}")


async def _report(svc: Services, incoming: mm7.Incoming) -> Response:
    message_id = incoming.fields.get("MessageID")
    status = incoming.fields.get("MMStatus", "")
    if not message_id or not status:
        return _fault(incoming.transaction_id, 4004, "MessageID and MMStatus are required")
    row = await deliveries.by_carrier_message_id(svc.db, message_id)
    if row is None:
        log.info("mm7.report_unmatched", message_id=message_id, status=status)
        return _fault(incoming.transaction_id, 3000, f"MessageID {message_id} not known yet")
    outcome = REPORTED.get(status.replace(" ", "").lower())
    if outcome is not None:
        state, code, text = outcome
        detail = incoming.fields.get("StatusText") or f"MMSC reported {status}"
        handset = incoming.fields.get("UACapabilities") or None
        move = Move(state, code, detail, handset=handset if code == "N102" else None, status=text)
        moved = await deliveries.advance(svc.db, row, move, now=svc.clock())
        metrics.RECEIPTS.labels(status, str(moved).lower()).inc()
        log.info("mm7.report", tracking_id=row.tracking_id, status=status, applied=moved)
    return _answer("DeliveryReportRsp", incoming)


def _answer(kind: str, incoming: mm7.Incoming) -> Response:
    body = mm7.encode_response(
        kind,
        incoming.transaction_id,
        version=incoming.version or mm7.DEFAULT_VERSION,
        namespace=incoming.namespace.lstrip("{") if incoming.namespace else mm7.DEFAULT_NAMESPACE,
    )
    return Response(body, media_type=XML)


def _fault(transaction_id: str | None, code: int, text: str) -> Response:
    return Response(mm7.encode_fault(transaction_id, code, text), status_code=500, media_type=XML)
