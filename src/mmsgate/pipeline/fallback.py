"""The SMS-with-link fallback: when a recipient cannot get the MMS, an SMS carrying the
fallback text and a link to a hosted page of the message goes instead.

`send_sms` is the step. The deliver step names it as its follow-up, with the reason (nothing
fits the carrier's budget, content the destination cannot take, a route or handset without
MMS, a permanent refusal of the content), when the send and its account allow a fallback.
Finding the recipient still queued, the step begins the fallback (`begin`): it prepares the
page's media for a phone's browser, writes the SMS text, and moves the recipient to
`fallback`, in one transaction; then, as on every later try, it submits the SMS.
`receipt_sink` takes the SMSC's receipts and ends the recipient in `sms_delivered` (N202) or
`sms_failed` (E202).
"""

from __future__ import annotations

import datetime as dt
import secrets
import zlib
from collections.abc import Callable, Sequence

import structlog

from mmsgate import models, sms_text
from mmsgate.carriers.base import ReceiptSink, SmsReceipt, SmsResult, SmsSubmit
from mmsgate.media import prepare
from mmsgate.pipeline.deps import Deps
from mmsgate.pipeline.recipient import personalised
from mmsgate.pipeline.transcodes import StoreCache
from mmsgate.pipeline.worker import Outcome, keep_trying
from mmsgate.settings import SmsRoute
from mmsgate.store import deliveries, fallbacks
from mmsgate.store.db import Database
from mmsgate.store.deliveries import Delivery, Move
from mmsgate.store.fallbacks import SmsFallback
from mmsgate.store.jobs import Job

log = structlog.get_logger(__name__)
S = models.RecipientState


def link_disabled(row: Delivery) -> bool:
    return bool(row.disable_fallback_link or row.template_link_disabled)


def compose_text(text: str | None, link: str | None) -> str:
    """The SMS: the fallback text (or the subject in its place), then the link."""
    words = " ".join((text or "").split())  # one line: SMS has no room for layout
    return " ".join(w for w in (words, link) if w)


async def begin(
    deps: Deps, row: Delivery, slides: Sequence[models.StoredSlide], reason: str
) -> bool:
    """Put the queued recipient on the fallback path; False when it had already moved on."""
    token = None if link_disabled(row) else secrets.token_urlsafe(24)  # 192 random bits
    link = f"{deps.public_url}/m/{token}" if token else None
    text = row.fallback_sms_text or row.template_fallback_text or row.subject
    text = text or row.template_subject
    body = compose_text(text, link)
    segmented = sms_text.segment(body, keep_whole=(link,) if link else ())
    cache = StoreCache(deps.db, deps.blobs)
    load, save = deps.blobs.get, deps.blobs.put
    page = () if token is None else await prepare.for_web(slides, load, save, cache)
    values = {
        "token": token,
        "link_expires_at": row.link_expires_at,
        "subject": row.subject or row.template_subject,
        "sms_text": body,
        "sms_coding": segmented.coding,
        "sms_parts": len(segmented.parts),
    }
    begun = await fallbacks.begin(
        deps.db, row, values, slides=page, reason=reason, now=deps.clock()
    )
    if begun:
        log.info("fallback.begun", tracking_id=row.tracking_id, reason=reason)
    return begun


def sms_route_for(deps: Deps) -> SmsRoute | None:
    """The SMS route: the configured default, else the only one, else none."""
    routes = deps.sms_routes
    return next((r for r in routes if r.default), None) or (routes[0] if routes else None)


async def _begin_if_queued(job: Job, deps: Deps) -> None:
    """Begin the fallback the deliver step asked for, unless it has begun (an earlier try)
    or the recipient has moved on; content the page cannot take ends it in E102."""
    assert job.tracking_id is not None
    reason = (job.payload or {}).get("reason")
    if not isinstance(reason, str):  # queued with the fallback already begun
        return
    row = await deliveries.for_delivery(deps.db, job.tracking_id)
    if row is None or row.state != S.QUEUED:
        return
    try:
        await begin(deps, row, personalised(row), reason)
    except prepare.PartFailed as failed:
        why = f"{reason}; and for the page: {failed}"
        move = Move(S.FAILED, "E102", why)
        if await deliveries.advance(deps.db, row, move, now=deps.clock()):
            log.warning(
                "mms.state", tracking_id=row.tracking_id, state=move.state.value, code="E102"
            )


async def send_sms(job: Job, deps: Deps) -> Outcome:
    """Begin the fallback if the deliver step just asked for it, then submit its SMS;
    retried while the SMSC is busy or away, until expiry."""
    assert job.tracking_id is not None
    await _begin_if_queued(job, deps)
    row = await fallbacks.for_sms(deps.db, job.tracking_id)
    if row is None or row.state != S.FALLBACK:
        return Outcome()  # already sent or ended
    now = deps.clock()
    if now >= row.expires_at:
        await fallbacks.failed(deps.db, row, "expired before the SMS could be sent", now=now)
        return Outcome()
    route = sms_route_for(deps)
    connector = deps.sms_connectors.get(route.name) if route is not None else None
    if route is None or connector is None:
        await fallbacks.failed(deps.db, row, "no SMS route is configured", now=now)
        return Outcome()
    segmented = sms_text.segment(row.sms_text, keep_whole=_links(row.sms_text, row.token))
    sms = SmsSubmit(
        reference=row.tracking_id,
        sender=row.sender,
        recipient=row.msisdn,
        coding=segmented.coding,
        parts=segmented.parts,
        concat_ref=zlib.crc32(row.tracking_id.encode()) & 0xFF,
        first=row.parts_sent + 1,
    )
    if (ids := connector.known_ids(sms)) is not None:
        await fallbacks.expect_parts(deps.db, row.tracking_id, route.name, ids, now=now)
    result = await connector.submit(sms)
    await _record_taken(deps, row, route.name, sms, result)
    if result.accepted:
        log.info("fallback.sms_submitted", tracking_id=row.tracking_id, parts=len(sms.parts))
        return Outcome()
    said = f"{route.name}: {result.status} {result.text}".strip()
    log.warning(
        "fallback.sms_failed", tracking_id=row.tracking_id, said=said, retry=result.transient
    )
    if result.transient:
        return Outcome.retry(said)
    await fallbacks.failed(deps.db, row, f"SMS refused: {said}", now=deps.clock())
    return Outcome()


async def _record_taken(
    deps: Deps, row: SmsFallback, route: str, sms: SmsSubmit, result: SmsResult
) -> None:
    """Record the parts the SMSC took (all: the SMS is submitted; some: a retry sends only
    the rest). Each write is retried while our database fails (`keep_trying`): a failure
    to record them would send those parts again."""
    bound = log.bind(tracking_id=row.tracking_id)
    ids, first = result.message_ids, sms.first
    if result.accepted:
        await keep_trying(
            lambda: fallbacks.submitted(deps.db, row, route, ids, now=deps.clock(), first=first),
            bound,
            what="sms_submitted",
        )
        await keep_trying(
            lambda: fallbacks.conclude(deps.db, row.tracking_id, now=deps.clock()),
            bound,
            what="sms_submitted",
        )
    elif ids:
        await keep_trying(
            lambda: fallbacks.partly_sent(
                deps.db, row.tracking_id, route, ids, now=deps.clock(), first=first
            ),
            bound,
            what="sms_submitted",
        )


def _links(text: str, token: str | None) -> tuple[str, ...]:
    """The link in a stored SMS text, to keep whole when it is split again."""
    if token is None:
        return ()
    link = next((w for w in text.split() if w.endswith(f"/m/{token}")), None)
    return (link,) if link else ()


def receipt_sink(db: Database, clock: Callable[[], dt.datetime]) -> ReceiptSink:
    """Where an SMS connector's receipts go: final ones end the part, and maybe the SMS.
    Built before the connectors, and so before the `Deps` that hold them.

    A receipt for a part not recorded yet (it can beat our own commit) raises UnknownPart,
    so the connector refuses it and the SMSC sends it again."""

    async def sink(receipt: SmsReceipt) -> None:
        if not receipt.final:
            return
        moved = await fallbacks.apply_receipt(
            db,
            receipt.route,
            receipt.message_id,
            receipt.stat,
            receipt.error,
            now=clock(),
        )
        log.info("fallback.receipt", message_id=receipt.message_id, stat=receipt.stat, moved=moved)

    return sink
