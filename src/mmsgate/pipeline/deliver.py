"""Step for one recipient of an accepted send: prepare the message for the route's carrier
profile, submit it over MM7, and record what the MMSC said with its postback.

Accepted: SUBMITTED with the MMSC's MessageID (which delivery reports are matched by), N101.
Refused for good: FAILED with E101 (address or request errors). MMS impossible (too big after
transcoding, content or route the destination cannot take, content or MMS refused for this
number): the SMS-with-link fallback when the send allows it (this step's follow-up, the
fallback step, with the reason), else E102. Busy, down or unreachable:
retried with backoff until the message expires, then EXPIRED with N103. A message that
expired while it waited in the queue is never sent.

A fault of the route itself (the MMSC unreachable, or refusing our credentials) is not the
message's: it is retried like a busy MMSC, and the route is marked unhealthy (logged once,
by `pipeline.health`) until a submit gets an MM7 answer again. Other failures are logged at
warning level, one line per submit.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable

import structlog

from mmsgate import metrics, models, routing
from mmsgate.carriers.base import Carrier, SubmitResult
from mmsgate.media import prepare
from mmsgate.media.compose import Composed
from mmsgate.mm7_codec import Submit
from mmsgate.pipeline.deps import Deps
from mmsgate.pipeline.recipient import may_fall_back, slides_of
from mmsgate.pipeline.transcodes import StoreCache
from mmsgate.pipeline.worker import Outcome, keep_trying
from mmsgate.profiles import CarrierProfile
from mmsgate.settings import Route
from mmsgate.store import deliveries, pacing
from mmsgate.store.deliveries import Delivery, Move
from mmsgate.store.jobs import FollowUp, Job

log = structlog.get_logger(__name__)
S = models.RecipientState
# MM7 status codes (TS 23.140 §8.7.4) that mean the content, or MMS itself, was refused for
# this recipient: E102, and a case for the SMS fallback. Other final refusals are E101.
CONTENT_REFUSED = frozenset({2004, 3001, 3002, 3003, 3004, 3005, 3006})
LATE_SLOT = 0.05  # seconds a submit may go after its rate-limit slot (see _wait_for_slot)
LATE_TRIES = 3


async def deliver(job: Job, deps: Deps) -> Outcome:
    """Submit one recipient's MMS, or end it; idempotent once the recipient has moved on."""
    assert job.tracking_id is not None
    row = await deliveries.for_delivery(deps.db, job.tracking_id)
    if row is None or row.state != S.QUEUED:
        return Outcome()  # already submitted or ended (a retried or duplicated job)
    now = deps.clock()
    route = routing.route_for(deps.routes, row.operator_id, row.msisdn)
    if now >= row.expires_at:
        await finish(deps, row, _expired(deps, route))
        return Outcome()
    carrier = deps.carriers.get(route.name) if route is not None else None
    if route is None or carrier is None:
        await finish(deps, row, Move(S.FAILED, "E101", "no route serves this number"))
        return Outcome()
    profile = deps.profile(route.profile)
    if not profile.mms_capable:
        why = f"route {route.name} cannot deliver MMS"
        return await cannot_mms(deps, row, why, Move(S.FAILED, "E102", why, route=route.name))
    try:
        prepared = await prepared_for(deps, row, profile)
    except prepare.PartFailed as failed:
        await finish(deps, row, Move(S.FAILED, "E102", f"content could not be encoded: {failed}"))
        return Outcome()
    if prepared.composed is None or not prepared.fits:
        why = f"cannot go as MMS on {profile.name}: {prepared.fallback or 'too big'}"
        return await cannot_mms(deps, row, why, Move(S.FAILED, "E102", why))
    return await _submit(deps, row, route, carrier, _submit_req(job, row, route, prepared.composed))


def _expired(deps: Deps, route: Route | None) -> Move:
    """EXPIRED before any submit went through, naming the route's fault if it had one."""
    fault = deps.health.fault(route.name) if route is not None else None
    where = f": {route.name}: {fault}" if route is not None and fault else ""
    return Move(S.EXPIRED, "N103", f"expired before it could be sent{where}")


def _submit_req(job: Job, row: Delivery, route: Route, composed: Composed) -> Submit:
    return Submit(
        transaction_id=f"{row.tracking_id}.{job.attempts}",
        recipients=[row.msisdn],
        content_type=composed.content_type,
        content=composed.body,
        # The mask only where the route carries one (checked at accept; a route changed
        # since then gets the number, which every MMSC takes).
        sender=row.sender_mask if row.sender_mask and route.sender_mask else row.sender,
        vasp_id=route.vasp_id,
        vas_id=route.vas_id,
        service_code=route.service_code,
        subject=row.subject or row.template_subject,
        expiry=row.expires_at,
        version=route.mm7_version,
        namespace=route.mm7_namespace,
        e164_numbers=route.number_format == "e164",
        display_only=row.to_displayonly,
    )


async def _submit(
    deps: Deps, row: Delivery, route: Route, carrier: Carrier, submit: Submit
) -> Outcome:
    """Submit within the route's limits; record what the MMSC said, then what it told of
    the route (after the record: a failure there must not resubmit an accepted message)."""
    async with deps.route_gate(route.name):
        if route.max_mps:
            await _wait_for_slot(deps, route)
        started, sent = time.perf_counter(), time.monotonic()
        result = await carrier.submit(submit)
    metrics.SUBMIT_SECONDS.labels(route.name).observe(time.perf_counter() - started)
    kind = "accepted" if result.accepted else "retry" if result.transient else "refused"
    metrics.SUBMITS.labels(route.name, kind).inc()
    outcome = await _record(deps, row, route.name, result)
    await deps.health.observe(
        deps.db,
        route.name,
        result.route_working,
        result.status_text,
        sent=sent,
        now=deps.clock(),
    )
    return outcome


async def _wait_for_slot(deps: Deps, route: Route) -> None:
    """Hold the submit until the route's shared rate limit gives it a slot.

    A submit that wakes more than LATE_SLOT after its slot (the worker was held up: a slow
    commit, a pause) takes a new one rather than going at once: after a stall every late
    submit would otherwise go together, a burst over the carrier's limit. So at most
    LATE_SLOT × max_mps submits (5 % of a second's worth) ever bunch up. A submit that has
    been late LATE_TRIES times goes anyway: it is not held back for ever."""
    assert route.max_mps

    def now() -> float:
        return deps.clock().timestamp()

    for _ in range(LATE_TRIES):
        slot = await pacing.take_slot(deps.db, route.name, route.max_mps, now)
        if (wait := slot - now()) > 0:
            await asyncio.sleep(wait)
        if now() - slot <= LATE_SLOT:
            return
        metrics.LATE_SLOTS.labels(route.name).inc()


async def _record(deps: Deps, row: Delivery, route: str, result: SubmitResult) -> Outcome:
    said = result.status_text
    if result.accepted:
        move = Move(
            S.SUBMITTED,
            "N101",
            f"accepted by {route}",
            carrier_message_id=result.message_id,
            route=route,
            sent_as="MMS",
        )
        # The MMSC has the message: a failure to record that must not submit it again.
        bound = log.bind(tracking_id=row.tracking_id)
        await keep_trying(lambda: finish(deps, row, move), bound, what="submitted")
        return Outcome()
    if result.route_working is False:  # the route's fault: logged once per change, not here
        log.info("carrier.submit_retry", tracking_id=row.tracking_id, route=route, said=said)
        return Outcome.retry(f"{route}: {said}")
    log.warning(
        "carrier.submit_failed",
        tracking_id=row.tracking_id,
        route=route,
        said=said,
        retry=result.transient,
    )
    if result.transient:
        return Outcome.retry(f"{route}: {said}")
    if result.status_code in CONTENT_REFUSED:
        status = "Message Sent/Rejected" if result.status_code == 2004 else None
        status = status or "Message Sent/Not Supported"
        move = Move(S.REJECTED, "E102", f"{route}: {said}", route=route, status=status)
        return await cannot_mms(deps, row, f"MMS refused by {route}: {said}", move)
    else:
        move = Move(S.FAILED, "E101", f"{route}: {said}", route=route)
    await finish(deps, row, move)
    return Outcome()


async def cannot_mms(deps: Deps, row: Delivery, reason: str, otherwise: Move) -> Outcome:
    """MMS is impossible for this recipient: the SMS-with-link fallback when the send allows
    it (the follow-up job, told why), else `otherwise` (E101/E102, as Sinch ends a send
    without fallback)."""
    if not may_fall_back(row):
        await finish(deps, row, otherwise)
        return Outcome()
    return Outcome.then(fallback_job(row.tracking_id, reason))


def fallback_job(tracking_id: str, reason: str) -> FollowUp:
    """The fallback step's job for a recipient that cannot get the MMS, and why."""
    return FollowUp(
        models.JobKind.FALLBACK_SMS, tracking_id=tracking_id, payload={"reason": reason}
    )


async def finish(deps: Deps, row: Delivery, move: Move) -> bool:
    """Apply `move` with its postback; False when the recipient had already moved past it."""
    moved = await deliveries.advance(deps.db, row, move, now=deps.clock())
    if moved:  # a failure (E101, E102) is the operator's to see, at warning
        level = log.warning if (move.code or "").startswith("E") else log.info
        level("mms.state", tracking_id=row.tracking_id, state=move.state.value, code=move.code)
    return moved


async def prepared_for(deps: Deps, row: Delivery, profile: CarrierProfile) -> prepare.Prepared:
    """The message prepared for `profile`, from this worker's cache (`media.prepared`) when
    the same template with the same personalisation was prepared before, or is being
    prepared."""
    slides = slides_of(row)
    key = (row.template_id, profile, json.dumps(slides, sort_keys=True, default=str))

    def make() -> Awaitable[prepare.Prepared]:  # only when no preparation is kept
        return prepare.prepare(slides, profile, deps.blobs.get, StoreCache(deps.db, deps.blobs))

    return await deps.prepared.get(key, make)
