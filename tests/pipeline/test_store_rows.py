"""The store reads back what it wrote as the vocabulary's dataclasses, on both databases:
datetimes aware, states and modes as enums, slides as StoredSlide, NULLs as None."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt

import pytest

from mmsgate import models
from mmsgate.store import accounts, deliveries, fallbacks, jobs, mo, queries, templates
from mmsgate.store.db import Database
from mmsgate.store.deliveries import Move
from mmsgate.store.schema import messages, recipients
from mmsgate.store.schema import templates as template_rows

pytestmark = pytest.mark.anyio
S = models.RecipientState
NOW = dt.datetime(2026, 3, 4, 5, 6, 7, 891011, tzinfo=dt.UTC)
LATER = NOW + dt.timedelta(hours=72)
PART = models.StoredPart(
    kind=models.MediaKind.IMAGE,
    url="https://media.example/a.jpg",
    blob_key="ab" * 32,
    content_type="image/jpeg",
    size=1234,
    width=640,
    height=480,
)
SLIDES = (
    models.StoredSlide("Hello {$name|you}", (PART,), 5),
    models.StoredSlide(None, (), None),
)


async def _send(db: Database, *, mode: models.AccountMode, **message: object) -> str:
    """One recipient of one send of a two-slide template; `message` sets its columns."""
    sender = "12345" if mode is models.AccountMode.OPTIMIZED else "12346"
    made = await accounts.create(db, f"acme-{mode.value}", senders=[sender], mode=mode)
    assert made is not None
    account_id = made.account.id
    async with db.write() as conn:
        template = await conn.execute(
            template_rows.insert().values(
                account_id=account_id,
                kind="saved",
                name="spring",
                subject="Spring sale",
                state=models.TemplateState.READY.value,
                slides=[slide.to_data() for slide in SLIDES],
                slide_count=2,
                total_size=1234,
                created_at=NOW,
            )
        )
        template_id = template.inserted_primary_key[0]
        await conn.execute(
            messages.insert().values(
                {
                    "id": f"m-{mode.value}",
                    "account_id": account_id,
                    "template_id": template_id,
                    "action": "sendSavedMMS",
                    "sender": sender,
                    "disable_fallback": False,
                    "disable_fallback_link": False,
                    "link_expires_at": LATER,
                    "expires_at": LATER,
                    "created_at": NOW,
                    **message,
                }
            )
        )
        tracking_id = f"t-{mode.value}"
        await conn.execute(
            recipients.insert().values(
                tracking_id=tracking_id,
                message_id=f"m-{mode.value}",
                account_id=account_id,
                msisdn="15551230001",
                state=S.QUEUED.value,
                created_at=NOW,
                updated_at=NOW,
            )
        )
    return tracking_id


async def test_a_delivery_reads_back_typed(db: Database) -> None:
    """`for_delivery` gives a Delivery: the state and the account's mode as enums, the
    template's slides as the StoredSlides written, aware datetimes, unset columns None."""
    tracking_id = await _send(
        db,
        mode=models.AccountMode.STANDARD,
        operator_id=31,
        custom_texts={"2": "Second"},
        merge_data={"name": "Ann"},
    )
    found = await deliveries.for_delivery(db, tracking_id)
    assert isinstance(found, deliveries.Delivery)
    assert found.state is S.QUEUED
    assert found.account_mode is models.AccountMode.STANDARD
    assert found.slides == SLIDES
    assert found.expires_at == LATER
    assert found.expires_at.tzinfo is not None
    assert found.link_expires_at == LATER
    assert (found.operator_id, found.custom_texts, found.merge_data) == (
        31,
        {"2": "Second"},
        {"name": "Ann"},
    )
    assert found.carrier_message_id is None
    assert found.service_id is None
    assert found.subject is None
    assert found.fallback_sms_text is None
    assert found.template_subject == "Spring sale"
    assert found.template_fallback_text is None
    assert found.template_link_disabled is None
    assert await deliveries.for_delivery(db, "no-such-recipient") is None


async def test_a_reported_recipient_reads_back_typed(db: Database) -> None:
    """After a submit, `by_carrier_message_id` (and its per-route form) give a Reported
    recipient with its state as an enum and the route it went over; unknown ids give None."""
    tracking_id = await _send(db, mode=models.AccountMode.OPTIMIZED)
    delivery = await deliveries.for_delivery(db, tracking_id)
    assert delivery is not None
    move = Move(S.SUBMITTED, "N101", "ok", carrier_message_id="mmsc-1", route="r1", sent_as="MMS")
    assert await deliveries.advance(db, delivery, move, now=NOW)

    found = await deliveries.by_carrier_message_id(db, "mmsc-1")
    expected = deliveries.Reported(
        tracking_id=tracking_id,
        msisdn="15551230001",
        state=S.SUBMITTED,
        account_id=delivery.account_id,
        carrier_message_id="mmsc-1",
        sender="12345",
        operator_id=None,
        template_id=delivery.template_id,
        route="r1",
    )
    assert found == expected
    assert await deliveries.by_carrier_message_id_on(db, "mmsc-1", ["r1"]) == expected
    assert await deliveries.by_carrier_message_id_on(db, "mmsc-1", ["r2"]) is None
    assert await deliveries.by_carrier_message_id(db, "mmsc-2") is None


async def test_a_fallback_reads_back_typed(db: Database) -> None:
    """A recipient put on the fallback path reads back as an SmsFallback (for its SMS) and
    a Fallback (for the status API): states as enums, aware datetimes, NULLs as None."""
    tracking_id = await _send(db, mode=models.AccountMode.OPTIMIZED)
    delivery = await deliveries.for_delivery(db, tracking_id)
    assert delivery is not None
    page = (models.WebSlide("Hello", None, ()),)
    content = {
        "token": None,
        "link_expires_at": LATER,
        "subject": None,
        "sms_text": "Spring sale",
        "sms_coding": "gsm7",
        "sms_parts": 1,
    }
    assert await fallbacks.begin(db, delivery, content, slides=page, reason="too big", now=NOW)

    sms = await fallbacks.for_sms(db, tracking_id)
    assert isinstance(sms, fallbacks.SmsFallback)
    assert sms.state is S.FALLBACK
    assert (sms.reason, sms.token, sms.sms_text, sms.sms_parts, sms.parts_sent) == (
        "too big",
        None,
        "Spring sale",
        1,
        0,
    )
    assert sms.expires_at == LATER
    assert sms.expires_at.tzinfo is not None

    shown = await fallbacks.status(db, tracking_id)
    assert shown is not None
    assert dataclasses.asdict(shown) == {
        "tracking_id": tracking_id,
        "reason": "too big",
        "token": None,
        "link_expires_at": LATER,
        "subject": None,
        "slides": ({"text": "Hello", "duration": None, "parts": ()},),
        "sms_text": "Spring sale",
        "sms_coding": "gsm7",
        "sms_parts": 1,
        "parts_sent": 0,
        "sms_route": None,
        "opened_at": None,
        "opens": 0,
        "created_at": NOW,
    }
    assert await fallbacks.for_sms(db, "no-such-recipient") is None
    assert await fallbacks.status(db, "no-such-recipient") is None


async def test_queued_postbacks_read_back_typed(db: Database) -> None:
    """A move's postback lists as a QueuedPostback: its state as an enum, its account, an
    aware creation time, no error yet; the account filter keeps only that account's."""
    tracking_id = await _send(db, mode=models.AccountMode.OPTIMIZED)
    delivery = await deliveries.for_delivery(db, tracking_id)
    assert delivery is not None
    assert await deliveries.advance(db, delivery, Move(S.FAILED, "E101", "no route"), now=NOW)

    (queued,) = await jobs.postbacks(db, None, failed_only=False, since=None, limit=10)
    assert isinstance(queued, jobs.QueuedPostback)
    assert queued.state is models.JobState.PENDING
    assert queued.account_id == delivery.account_id
    assert (queued.attempts, queued.last_error) == (0, None)
    assert queued.created_at == NOW
    assert queued.created_at.tzinfo is not None
    mine = await jobs.postbacks(db, delivery.account_id, failed_only=False, since=None, limit=10)
    assert mine == [queued]
    assert (
        await jobs.postbacks(db, delivery.account_id + 1, failed_only=False, since=None, limit=10)
        == []
    )


async def test_a_template_reads_back_typed(db: Database) -> None:
    """`for_encoding` gives the Template with its state as an enum and its slides as the
    StoredSlides written; `report` gives the state as an enum and no reports (NULL) as None."""
    tracking_id = await _send(db, mode=models.AccountMode.OPTIMIZED)
    delivery = await deliveries.for_delivery(db, tracking_id)
    assert delivery is not None
    found = await templates.for_encoding(db, delivery.template_id)
    assert found == templates.Template(
        id=delivery.template_id,
        account_id=delivery.account_id,
        kind="saved",
        name="spring",
        subject="Spring sale",
        state=models.TemplateState.READY,
        slides=SLIDES,
    )
    shown = await templates.report(db, delivery.account_id, delivery.template_id)
    assert shown == templates.Report(models.TemplateState.READY, None, "saved")
    assert await templates.report(db, delivery.account_id + 1, delivery.template_id) is None
    assert await templates.for_encoding(db, delivery.template_id + 1) is None


async def test_cached_media_and_transcodes_read_back_typed(db: Database) -> None:
    """What a URL served and a transcoded part read back as written, NULL validators as None
    and times aware; unknown keys give None."""
    url = "https://media.example/a.jpg"
    await queries.remember_media(
        db, url, etag=None, last_modified=None, content_type="image/jpeg", blob_key="k1", size=9
    )
    media = await queries.cached_media(db, url)
    assert isinstance(media, queries.CachedMedia)
    assert (media.url, media.etag, media.last_modified, media.content_type) == (
        url,
        None,
        None,
        "image/jpeg",
    )
    assert (media.blob_key, media.size, media.fetched_at.tzinfo) == ("k1", 9, dt.UTC)
    assert await queries.cached_media(db, url + "?other") is None

    report = {"width": 320, "dropped": ["too big"]}
    await templates.remember_transcode(db, "t1", "k2", "image/jpeg", report)
    kept = await templates.cached_transcode(db, "t1")
    assert isinstance(kept, templates.Transcode)
    assert (kept.key, kept.output_key, kept.content_type, kept.report) == (
        "t1",
        "k2",
        "image/jpeg",
        report,
    )
    assert kept.created_at.tzinfo is dt.UTC
    assert await templates.cached_transcode(db, "t2") is None


async def test_an_mo_message_reads_back_as_written(db: Database) -> None:
    """An MO message stored with its postback reads back by its token equal to what was
    stored, its subject None when it had none."""
    made = await accounts.create(db, "acme", senders=["12345"])
    assert made is not None
    message = mo.MoMessage(
        tracking_id="MMS_MO_1",
        account_id=made.account.id,
        sender="15551230001",
        recipient="12345",
        subject=None,
        token="tok",
        parts=[{"content_type": "image/jpeg", "blob_key": "k1", "size": 9}],
        received_at=NOW,
    )
    event = models.PostbackEvent(models.PostbackKind.MO, made.account.id, "N401", at=NOW)
    await mo.store(db, message, event, NOW)
    assert await mo.by_token(db, "tok") == message
    assert await mo.by_token(db, "other") is None


async def test_a_recipient_status_reads_back_typed(db: Database) -> None:
    """The status read gives the recipient with its state and each event's as enums, aware
    times, no fallback as None; another account's recipient is None."""
    tracking_id = await _send(db, mode=models.AccountMode.OPTIMIZED, client_reference="ref-1")
    delivery = await deliveries.for_delivery(db, tracking_id)
    assert delivery is not None
    move = Move(S.SUBMITTED, "N101", "ok", carrier_message_id="mmsc-1", route="r1", sent_as="MMS")
    assert await deliveries.advance(db, delivery, move, now=NOW)

    found = await queries.recipient_status(db, delivery.account_id, tracking_id)
    assert found is not None
    assert found.state is S.SUBMITTED
    assert (found.action, found.client_reference, found.operator_id) == (
        "sendSavedMMS",
        "ref-1",
        None,
    )
    assert (found.sent_as, found.route, found.fallback) == ("MMS", "r1", None)
    assert found.updated_at == NOW
    assert found.events == (queries.Event(S.SUBMITTED, "N101", "ok", NOW),)
    assert await queries.recipient_status(db, delivery.account_id + 1, tracking_id) is None


async def test_lookups_made_together_read_the_same_dataclasses(db: Database) -> None:
    """Deliveries and reported recipients looked up at once (one query for all on
    PostgreSQL) equal those looked up one by one."""
    first = await _send(db, mode=models.AccountMode.OPTIMIZED)
    second = await _send(db, mode=models.AccountMode.STANDARD)
    alone = [await deliveries.for_delivery(db, t) for t in (first, second, "none")]
    together = await asyncio.gather(
        *(deliveries.for_delivery(db, t) for t in (first, second, "none"))
    )
    assert together == alone
    for n, found in enumerate(alone[:2]):
        assert found is not None
        move = Move(S.SUBMITTED, "N101", "ok", carrier_message_id=f"id-{n}", route="r1")
        assert await deliveries.advance(db, found, move, now=NOW)
    ids = ("id-0", "id-1", "id-2")
    one_by_one = [await deliveries.by_carrier_message_id(db, i) for i in ids]
    at_once = await asyncio.gather(*(deliveries.by_carrier_message_id(db, i) for i in ids))
    assert at_once == one_by_one
    assert [r.tracking_id if r else None for r in one_by_one] == [first, second, None]
