"""A send's client-reference reaches every postback of it: each read the delivery steps make
carries it (the hot lookups too, one at a time and gathered), and every event `advance`
queues names it, on both databases."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from mmsgate import models
from mmsgate.store import accounts, deliveries, fallbacks, jobs
from mmsgate.store.db import Database
from mmsgate.store.deliveries import Move
from mmsgate.store.schema import messages, recipients, templates

pytestmark = pytest.mark.anyio
S = models.RecipientState
NOW = dt.datetime(2026, 3, 4, 5, 6, 7, 891011, tzinfo=dt.UTC)
LATER = NOW + dt.timedelta(hours=72)


async def sends(db: Database, references: list[str | None]) -> list[str]:
    """One recipient per send of one template, each send with its client-reference and,
    with one, the campaign-ref `c:` + that reference."""
    made = await accounts.create(db, "acme", senders=["12345"])
    assert made is not None
    account_id = made.account.id
    async with db.write() as conn:
        template = await conn.execute(
            templates.insert().values(
                account_id=account_id, kind="saved", name="t", state="ready",
                slides=[{"text": "hi", "parts": [], "duration": None}], slide_count=1,
                total_size=2, created_at=NOW,
            )
        )  # fmt: skip
        template_id = template.inserted_primary_key[0]
        for n, reference in enumerate(references):
            await conn.execute(
                messages.insert().values(
                    id=f"m-{n}", account_id=account_id, template_id=template_id,
                    action="sendSavedMMS", sender="12345", client_reference=reference,
                    campaign_ref=None if reference is None else f"c:{reference}",
                    disable_fallback=False, disable_fallback_link=False,
                    link_expires_at=LATER, expires_at=LATER, created_at=NOW,
                )
            )  # fmt: skip
            await conn.execute(
                recipients.insert().values(
                    tracking_id=f"t-{n}", message_id=f"m-{n}", account_id=account_id,
                    msisdn=f"1555123000{n}", state="queued", created_at=NOW, updated_at=NOW,
                )
            )  # fmt: skip
    return [f"t-{n}" for n in range(len(references))]


async def queued_events(db: Database) -> list[models.PostbackEvent]:
    """The postback events queued so far, oldest first."""
    found = await jobs.postbacks(db, None, failed_only=False, since=None, limit=100)
    events = [models.PostbackEvent.from_data(p.payload["event"]) for p in found if p.payload]
    return events[::-1]


async def delivery(db: Database, tracking_id: str) -> deliveries.Delivery:
    found = await deliveries.for_delivery(db, tracking_id)
    assert found is not None
    return found


async def test_lookups_made_together_each_get_their_own_reference(db: Database) -> None:
    """Deliveries looked up at once (on PostgreSQL one gathered query) each carry their own
    send's client-reference, and None where the send gave none."""
    references = ["order-1", None, "order-3", "ré-4"]
    tracking = await sends(db, references)
    found = await asyncio.gather(*(deliveries.for_delivery(db, t) for t in tracking))
    assert [f.client_reference if f else "missing" for f in found] == references


async def test_mms_postbacks_name_the_reference(db: Database) -> None:
    """N101 and N102 of a send (read for delivery, then by the MMSC's MessageID, on either
    lookup) and an E101 of another name their send's client-reference and campaign-ref."""
    sent, failed = await sends(db, ["order-42", "order-43"])
    submit = Move(S.SUBMITTED, "N101", "ok", carrier_message_id="mmsc-1", route="r1")
    assert await deliveries.advance(db, await delivery(db, sent), submit, now=NOW)
    reported = await deliveries.by_carrier_message_id(db, "mmsc-1")
    on_route = await deliveries.by_carrier_message_id_on(db, "mmsc-1", ["r1"])
    assert reported is not None
    assert on_route == reported
    assert reported.client_reference == "order-42"
    delivered = Move(S.DELIVERED, "N102", "Retrieved", handset="h1")
    assert await deliveries.advance(db, reported, delivered, now=NOW)
    no_route = Move(S.FAILED, "E101", "no route")
    assert await deliveries.advance(db, await delivery(db, failed), no_route, now=NOW)
    events = await queued_events(db)
    assert [(e.code, e.tracking_id, e.client_reference) for e in events] == [
        ("N101", sent, "order-42"),
        ("N102", sent, "order-42"),
        ("E101", failed, "order-43"),
    ]
    assert [e.campaign_ref for e in events] == ["c:order-42", "c:order-42", "c:order-43"]


async def test_fallback_sms_postbacks_name_the_reference(db: Database) -> None:
    """The fallback leg's N101 (sent-as SMS), N202 and E202 name the send's reference and
    campaign-ref."""
    good, bad = await sends(db, ["sms-1", "sms-2"])
    content = {
        "token": None,
        "link_expires_at": LATER,
        "subject": None,
        "sms_text": "hi",
        "sms_coding": "gsm7",
        "sms_parts": 1,
    }
    for n, tracking_id in enumerate((good, bad)):
        row = await delivery(db, tracking_id)
        assert await fallbacks.begin(db, row, content, slides=(), reason="no MMS", now=NOW)
        sms = await fallbacks.for_sms(db, tracking_id)
        assert sms is not None
        assert sms.client_reference == f"sms-{n + 1}"
        assert await fallbacks.submitted(db, sms, "smsc", (f"id-{n}",), now=NOW)
    assert await fallbacks.apply_receipt(db, "smsc", "id-0", "DELIVRD", None, now=NOW)
    assert await fallbacks.apply_receipt(db, "smsc", "id-1", "UNDELIV", "1", now=NOW)
    events = await queued_events(db)
    assert [(e.code, e.sent_as, e.client_reference) for e in events] == [
        ("N101", "SMS", "sms-1"),
        ("N101", "SMS", "sms-2"),
        ("N202", "SMS", "sms-1"),
        ("E202", "SMS", "sms-2"),
    ]
    assert [e.campaign_ref for e in events] == ["c:sms-1", "c:sms-2", "c:sms-1", "c:sms-2"]
