"""The SMS-with-link fallback in the pipeline, with a fake MMSC and a fake SMS connector:
what triggers it and what stops it, the SMS it writes, and how receipts end it."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from typing import Any

import pytest
import sqlalchemy as sa

from mmsgate import models, routing, sms_text
from mmsgate.carriers.base import SmsReceipt, SmsResult, SmsSubmit, SubmitResult
from mmsgate.carriers.smpp import SmppConnector
from mmsgate.pipeline import deliver, fallback
from mmsgate.pipeline.deps import Deps, utc_now
from mmsgate.pipeline.postback_sender import PostbackSender
from mmsgate.pipeline.postbacks import body_of
from mmsgate.pipeline.worker import Worker
from mmsgate.profiles import PROFILES
from mmsgate.settings import SmsRoute
from mmsgate.sim.smsc import Smsc
from mmsgate.store import fallbacks
from mmsgate.store.schema import fallbacks as fallbacks_table
from mmsgate.store.schema import jobs, recipients, sms_parts
from mmsgate.store.schema import templates as templates_table
from tests import samples
from tests.api.test_send_mms import SEED
from tests.conftest import Gateway, MediaServer
from tests.pipeline.test_deliver import FakeCarrier

pytestmark = pytest.mark.anyio

SMS_ROUTE = SmsRoute(name="smsc", kind="smpp", host="127.0.0.1", port=1, system_id="x")
REFUSED = SubmitResult(False, None, 3001, "HTTP 500, MM7 3001 Not Possible: cannot receive MMS")
ACCEPTED = SubmitResult(True, "mmsc-1", 1000, "HTTP 200, MM7 1000 Success")


class FakeSms:
    """An SMSC connector that answers every submit with ids (or the result it was given)."""

    def __init__(self, result: SmsResult | None = None, own_ids: bool = False) -> None:
        self.result = result
        self.own_ids = own_ids
        self.sent: list[SmsSubmit] = []

    def known_ids(self, sms: SmsSubmit) -> tuple[str, ...] | None:
        if not self.own_ids:
            return None
        return tuple(f"{sms.reference}.{n}" for n in range(1, len(sms.parts) + 1))

    async def submit(self, sms: SmsSubmit) -> SmsResult:
        self.sent.append(sms)
        if self.result is not None:
            return self.result
        ids = self.known_ids(sms) or tuple(
            f"smsc-{len(self.sent)}-{n}" for n in range(len(sms.parts))
        )
        return SmsResult(True, ids, 0, "ok")

    async def close(self) -> None:
        return None


def deps_for(
    gateway: Gateway,
    carrier: FakeCarrier,
    sms: FakeSms,
    *,
    profile: str = "default",
    clock: dt.datetime | None = None,
) -> Deps:
    route = dataclasses.replace(routing.SIMULATOR, profile=profile)
    profiles = [
        PROFILES["default"],
        dataclasses.replace(PROFILES["default"], name="nomms", mms_capable=False),
    ]
    return Deps(
        gateway.services.db,
        gateway.services.blobs,
        PostbackSender(),
        profiles=profiles,
        routes=[route],
        carriers={route.name: carrier},
        sms_routes=[SMS_ROUTE],
        sms_connectors={SMS_ROUTE.name: sms},
        public_url="https://mms.example",
        clock=(lambda: clock) if clock else (lambda: dt.datetime.now(dt.UTC)),
    )


async def run_all(deps: Deps) -> None:
    """Run jobs until none is due (deliver, then the fallback SMS it queues)."""
    steps = {
        models.JobKind.DELIVER: deliver.deliver,
        models.JobKind.FALLBACK_SMS: fallback.send_sms,
    }
    worker = Worker(deps.db, steps, deps)
    try:
        while await worker.run_once():
            pass
    finally:
        await deps.http.aclose()


async def send(gateway: Gateway, media_server: MediaServer, request: str = SEED) -> str:
    media_server.add("/images/1.jpg", "image/jpeg", samples.jpeg())
    media_server.add("/audio/1.mp3", "audio/mpeg", samples.mp3())
    media_server.add("/cal/2.ics", "text/calendar", samples.ICAL)
    response = await gateway.xml(request.format(key=gateway.api_key, base=media_server.base))
    assert "<status>Success</status>" in response.text, response.text
    return response.text.split("<tracking-id>")[1].split("<")[0]


async def state_and_codes(gateway: Gateway, tracking_id: str) -> tuple[str, list[str]]:
    async with gateway.services.db.read() as conn:
        state = await conn.scalar(
            sa.select(recipients.c.state).where(recipients.c.tracking_id == tracking_id)
        )
        bodies = list(
            await conn.scalars(
                sa.select(jobs.c.payload)
                .where(jobs.c.kind == models.JobKind.POSTBACK.value)
                .order_by(jobs.c.id)
            )
        )
    return str(state), [body_of(b)[0].decode().split("<code>")[1].split("<")[0] for b in bodies]


async def postbacks(gateway: Gateway) -> list[str]:
    async with gateway.services.db.read() as conn:
        return [
            body_of(p)[0].decode()
            for p in await conn.scalars(
                sa.select(jobs.c.payload)
                .where(jobs.c.kind == models.JobKind.POSTBACK.value)
                .order_by(jobs.c.id)
            )
        ]


async def the_fallback(gateway: Gateway, tracking_id: str) -> Any:
    return await fallbacks.status(gateway.services.db, tracking_id)


async def test_an_mms_refusal_sends_the_sms_with_a_link(
    gateway: Gateway, media_server: MediaServer
) -> None:
    """MM7 3001 (cannot receive MMS): the SMS goes with the text and the page link, the
    customer hears N101 sent-as SMS with the reason, and the page holds every slide."""
    tracking_id = await send(gateway, media_server)
    sms = FakeSms()
    await run_all(deps_for(gateway, FakeCarrier(REFUSED), sms))
    assert await state_and_codes(gateway, tracking_id) == ("sms_submitted", ["N101"])
    [sent] = sms.sent
    found = await the_fallback(gateway, tracking_id)
    link = f"https://mms.example/m/{found.token}"
    assert "".join(sent.parts) == f"Your MMS is here {link}"
    assert sent.recipient == "12399471613"
    assert sent.sender == "28444"
    assert sent.coding == "gsm7"
    assert found.sms_parts == 1
    assert len(found.token) >= 22  # at least 128 random bits, URL-safe
    assert "3001" in found.reason
    [body] = await postbacks(gateway)
    assert "<sent-as>SMS</sent-as>" in body
    assert "<status-details>" in body
    assert [len(s.parts) for s in found.slides] == [2, 1]
    kinds = [p.kind.value for s in found.slides for p in s.parts]
    assert kinds == ["image", "audio", "ical"]
    image = found.slides[0].parts[0]
    assert image.content_type == "image/jpeg"
    assert await gateway.services.blobs.exists(image.blob_key)


async def test_receipts_end_the_sms_once(gateway: Gateway, media_server: MediaServer) -> None:
    """DELIVRD → N202; a second copy of it and a later failure change nothing."""
    tracking_id = await send(gateway, media_server)
    await run_all(deps_for(gateway, FakeCarrier(REFUSED), FakeSms()))
    db, now = gateway.services.db, dt.datetime.now(dt.UTC)
    assert await fallbacks.apply_receipt(db, "smsc", "smsc-1-0", "DELIVRD", None, now=now)
    assert not await fallbacks.apply_receipt(db, "smsc", "smsc-1-0", "DELIVRD", None, now=now)
    assert not await fallbacks.apply_receipt(db, "smsc", "smsc-1-0", "UNDELIV", "1", now=now)
    assert await state_and_codes(gateway, tracking_id) == ("sms_delivered", ["N101", "N202"])
    last = (await postbacks(gateway))[-1]
    assert "<status>Message Sent/Delivered</status>" in last
    assert "<sent-as>SMS</sent-as>" in last


async def test_a_failed_receipt_is_e202(gateway: Gateway, media_server: MediaServer) -> None:
    """UNDELIV ends the SMS in sms_failed with E202 naming why."""
    tracking_id = await send(gateway, media_server)
    await run_all(deps_for(gateway, FakeCarrier(REFUSED), FakeSms()))
    now = dt.datetime.now(dt.UTC)
    await fallbacks.apply_receipt(
        gateway.services.db, "smsc", "smsc-1-0", "UNDELIV", "001", now=now
    )
    assert await state_and_codes(gateway, tracking_id) == ("sms_failed", ["N101", "E202"])
    assert "undeliverable" in (await postbacks(gateway))[-1]


async def test_an_unknown_receipt_is_refused_for_a_later_retry(gateway: Gateway) -> None:
    """A receipt for no recorded part raises UnknownPart (the SMSC sends it again)."""
    with pytest.raises(fallbacks.UnknownPart):
        await fallbacks.apply_receipt(
            gateway.services.db, "smsc", "nope", "DELIVRD", None, now=dt.datetime.now(dt.UTC)
        )


async def test_a_receipt_before_the_submit_is_recorded_still_gives_n101_first(
    gateway: Gateway, media_server: MediaServer
) -> None:
    """With ids of ours (Kannel), parts are known before the submit; a receipt that beats
    the submit's record moves the recipient through N101 to N202, in that order."""
    tracking_id = await send(gateway, media_server)
    sms = FakeSms(SmsResult(False, (), 503, "busy", transient=True), own_ids=True)
    await run_all(deps_for(gateway, FakeCarrier(REFUSED), sms))
    assert (await state_and_codes(gateway, tracking_id))[0] == "fallback"
    now = dt.datetime.now(dt.UTC)
    await fallbacks.apply_receipt(
        gateway.services.db, "smsc", f"{tracking_id}.1", "DELIVRD", None, now=now
    )
    assert await state_and_codes(gateway, tracking_id) == ("sms_delivered", ["N101", "N202"])


async def test_every_part_must_be_delivered(gateway: Gateway, media_server: MediaServer) -> None:
    """A long UCS-2 text goes in parts; N202 waits for the last part's receipt."""
    text = "Votre MMS est arrivé ✓ " * 8
    request = SEED.replace("Your MMS is here", text)
    tracking_id = await send(gateway, media_server, request)
    sms = FakeSms()
    await run_all(deps_for(gateway, FakeCarrier(REFUSED), sms))
    [sent] = sms.sent
    assert sent.coding == "ucs2"
    assert len(sent.parts) == 4  # 183 characters of text + space + 54 of link, 67 a part
    assert sent.parts[-1].endswith((await the_fallback(gateway, tracking_id)).token)
    now, db = dt.datetime.now(dt.UTC), gateway.services.db
    for n in range(3):
        assert not await fallbacks.apply_receipt(
            db, "smsc", f"smsc-1-{n}", "DELIVRD", None, now=now
        )
    assert await fallbacks.apply_receipt(db, "smsc", "smsc-1-3", "DELIVRD", None, now=now)
    assert await state_and_codes(gateway, tracking_id) == ("sms_delivered", ["N101", "N202"])
    async with db.read() as conn:
        seqs = list(await conn.scalars(sa.select(sms_parts.c.seq).order_by(sms_parts.c.seq)))
    assert seqs == [1, 2, 3, 4]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ("<disable-fallback-sms>true</disable-fallback-sms>", ("rejected", ["E102"])),
        (
            "<disable-fallback-sms-link>true</disable-fallback-sms-link>",
            ("sms_submitted", ["N101"]),
        ),
    ],
)
async def test_the_send_controls_the_fallback(
    gateway: Gateway, media_server: MediaServer, change: str, expected: tuple[str, list[str]]
) -> None:
    """disable-fallback-sms ends the send as Sinch does (E102 here); disable-fallback-sms-link
    sends the text alone, with no page."""
    request = SEED.replace("<name>FuelTheFire</name>", "<name>FuelTheFire</name>" + change)
    tracking_id = await send(gateway, media_server, request)
    sms = FakeSms()
    await run_all(deps_for(gateway, FakeCarrier(REFUSED), sms))
    assert await state_and_codes(gateway, tracking_id) == expected
    if sms.sent:
        assert "".join(sms.sent[0].parts) == "Your MMS is here"
        found = await the_fallback(gateway, tracking_id)
        assert found.token is None
        assert found.slides == ()


async def test_a_standard_account_never_falls_back(
    gateway: Gateway, media_server: MediaServer
) -> None:
    """Standard (not optimized) accounts send MMS only: a refusal is E102."""
    from mmsgate.store.schema import accounts

    async with gateway.services.db.write() as conn:
        await conn.execute(accounts.update().values(mode="standard"))
    tracking_id = await send(gateway, media_server)
    sms = FakeSms()
    await run_all(deps_for(gateway, FakeCarrier(REFUSED), sms))
    assert await state_and_codes(gateway, tracking_id) == ("rejected", ["E102"])
    assert sms.sent == []


async def test_a_route_without_mms_falls_back_before_any_submit(
    gateway: Gateway, media_server: MediaServer
) -> None:
    """A route whose profile says no MMS: no SubmitReq at all, the SMS goes."""
    tracking_id = await send(gateway, media_server)
    carrier = FakeCarrier(ACCEPTED)
    await run_all(deps_for(gateway, carrier, FakeSms(), profile="nomms"))
    assert carrier.submits == []
    assert await state_and_codes(gateway, tracking_id) == ("sms_submitted", ["N101"])
    assert "cannot deliver MMS" in (await the_fallback(gateway, tracking_id)).reason


async def test_a_page_that_cannot_be_made_ends_in_e102_with_both_reasons(
    gateway: Gateway, media_server: MediaServer
) -> None:
    """The fallback step, finding the image it must make the page of unreadable, ends the
    recipient in failed with E102 naming why MMS was impossible and why the page was; no
    SMS goes, and its job ends done (a later try would fail the same way)."""
    tracking_id = await send(gateway, media_server)
    async with gateway.services.db.read() as conn:  # a send's slides are its template's
        stored = await conn.scalar(sa.select(templates_table.c.slides))
    image = stored[0]["parts"][0]
    assert image["kind"] == "image"
    gateway.services.blobs.path(image["blob_key"]).write_bytes(b"\xff\xd8 not a jpeg at all")
    sms = FakeSms()
    await run_all(deps_for(gateway, FakeCarrier(ACCEPTED), sms, profile="nomms"))
    assert await state_and_codes(gateway, tracking_id) == ("failed", ["E102"])
    [body] = await postbacks(gateway)
    assert "cannot deliver MMS; and for the page: image" in body
    assert sms.sent == []
    async with gateway.services.db.read() as conn:
        ran = (await conn.execute(sa.select(jobs.c.kind, jobs.c.state).order_by(jobs.c.id))).all()
    assert [tuple(r) for r in ran] == [
        ("deliver", "done"),
        ("fallback_sms", "done"),
        ("postback", "pending"),
    ]


async def test_content_the_handset_cannot_take_falls_back(
    gateway: Gateway, media_server: MediaServer
) -> None:
    """A PDF (not in the default profile's object types) makes the MMS impossible."""
    media_server.add("/doc.pdf", "application/pdf", samples.PDF)
    request = SEED.replace(
        "<ical><url>{base}/cal/2.ics</url></ical>", "<pdf><url>{base}/doc.pdf</url></pdf>"
    )
    tracking_id = await send(gateway, media_server, request)
    carrier = FakeCarrier(ACCEPTED)
    await run_all(deps_for(gateway, carrier, FakeSms()))
    assert carrier.submits == []
    found = await the_fallback(gateway, tracking_id)
    assert "application/pdf" in found.reason
    pdf = found.slides[1].parts[0]
    assert (pdf.kind.value, pdf.content_type, pdf.name) == ("pdf", "application/pdf", "doc.pdf")


async def test_a_refused_sms_is_e202_and_a_busy_one_is_retried(
    gateway: Gateway, media_server: MediaServer
) -> None:
    """A permanent SMPP error ends in E202 with no N101; a throttled SMSC leaves the SMS
    queued for another try."""
    first = await send(gateway, media_server)
    await run_all(
        deps_for(gateway, FakeCarrier(REFUSED), FakeSms(SmsResult(False, (), 0x0B, "bad dest")))
    )
    assert await state_and_codes(gateway, first) == ("sms_failed", ["E202"])
    async with gateway.services.db.write() as conn:
        await conn.execute(jobs.delete())
    second = await send(gateway, media_server)
    busy = FakeSms(SmsResult(False, (), 0x58, "throttled", transient=True))
    await run_all(deps_for(gateway, FakeCarrier(REFUSED), busy))
    assert (await state_and_codes(gateway, second))[0] == "fallback"
    async with gateway.services.db.read() as conn:
        pending = await conn.scalar(
            sa.select(sa.func.count()).where(
                jobs.c.kind == models.JobKind.FALLBACK_SMS.value, jobs.c.state == "pending"
            )
        )
    assert pending == 1


async def test_a_long_sms_cut_short_is_resumed_not_resent(
    gateway: Gateway, media_server: MediaServer
) -> None:
    """Over SMPP to the simulated SMSC, part 2 of a long SMS is throttled (0011): part 1 is
    recorded with its id, the retry sends part 2 alone, each part reaches the SMSC once,
    and both receipts are matched: N101, then N202."""
    text = "Your MMS is waiting for you at the link below, open it soon. " * 2
    request = SEED.replace("Your MMS is here", text).replace("12399471613", "17745550011")
    tracking_id = await send(gateway, media_server, request)
    smsc = Smsc(report_delay=0.0)
    await smsc.start("127.0.0.1", 0)
    route = dataclasses.replace(SMS_ROUTE, port=smsc.port)
    sink = fallback.receipt_sink(gateway.services.db, utc_now)
    connector = SmppConnector(route, sink, backoff=(0.02, 0.2))
    deps = dataclasses.replace(
        deps_for(gateway, FakeCarrier(REFUSED), FakeSms()),
        sms_routes=[route],
        sms_connectors={route.name: connector},
    )
    try:
        await run_all(deps)
        assert (await state_and_codes(gateway, tracking_id))[0] == "fallback"
        assert (await the_fallback(gateway, tracking_id)).parts_sent == 1
        async with gateway.services.db.write() as conn:  # the retry is due now
            await conn.execute(jobs.update().values(run_at=dt.datetime.now(dt.UTC)))
        await run_all(dataclasses.replace(deps, http=PostbackSender()))
        for _ in range(500):  # the receipts come back on the bind: 10 s at most
            if (await state_and_codes(gateway, tracking_id))[0] == "sms_delivered":
                break
            await asyncio.sleep(0.02)
    finally:
        await connector.close()
        await smsc.stop()
    assert (await state_and_codes(gateway, tracking_id))[1] == ["N101", "N202"]
    taken = [s for s in smsc.submitted if s.message_id is not None]
    assert [s.concat.seq if s.concat else None for s in taken] == [1, 2]
    async with gateway.services.db.read() as conn:
        parts = (
            await conn.execute(
                sa.select(sms_parts.c.seq, sms_parts.c.smsc_message_id, sms_parts.c.stat)
                .where(sms_parts.c.tracking_id == tracking_id)
                .order_by(sms_parts.c.seq)
            )
        ).all()
    assert [(p.seq, p.stat) for p in parts] == [(1, "DELIVRD"), (2, "DELIVRD")]
    assert [p.smsc_message_id for p in parts] == [s.message_id for s in taken]


async def test_an_sms_past_the_message_expiry_is_not_sent(
    gateway: Gateway, media_server: MediaServer
) -> None:
    """A fallback SMS still waiting when the message expires ends in E202, unsent."""
    tracking_id = await send(gateway, media_server)
    busy = FakeSms(SmsResult(False, (), 0x58, "throttled", transient=True))
    await run_all(deps_for(gateway, FakeCarrier(REFUSED), busy))
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=4)
    async with gateway.services.db.write() as conn:
        await conn.execute(jobs.update().values(run_at=dt.datetime.now(dt.UTC)))
    sms = FakeSms()
    await run_all(deps_for(gateway, FakeCarrier(REFUSED), sms, clock=later))
    assert sms.sent == []
    assert await state_and_codes(gateway, tracking_id) == ("sms_failed", ["E202"])


async def test_the_status_api_shows_the_fallback(
    gateway: Gateway, media_server: MediaServer
) -> None:
    """`fallback` has the reason, the link, the parts and (later) the first open."""
    tracking_id = await send(gateway, media_server)
    await run_all(deps_for(gateway, FakeCarrier(REFUSED), FakeSms()))
    response = await gateway.client.get(
        f"/v1/messages/{tracking_id}", headers={"x-api-key": gateway.api_key}
    )
    body = response.json()
    assert body["state"] == "sms_submitted"
    assert body["sent-as"] == "SMS"
    shown = body["fallback"]
    assert shown["sms_parts"] == 1
    assert "3001" in shown["reason"]
    assert shown["link"].endswith("/m/" + (await the_fallback(gateway, tracking_id)).token)
    assert shown["opened_at"] is None


def test_the_sms_text_is_one_line_then_the_link() -> None:
    """Runs of spaces and newlines become single spaces; the link comes last."""
    assert fallback.compose_text(" Hi\n\nthere ", "https://x/m/t") == "Hi there https://x/m/t"
    assert fallback.compose_text(None, "https://x/m/t") == "https://x/m/t"
    assert fallback.compose_text("Hi", None) == "Hi"
    assert sms_text.segment("Hi https://x/m/t", keep_whole=("https://x/m/t",)).coding == "gsm7"


async def test_the_fallback_row_is_written_with_the_move(
    gateway: Gateway, media_server: MediaServer
) -> None:
    """Entering the fallback writes the page and queues exactly one SMS job, once: a second
    begin for the same recipient changes nothing."""
    tracking_id = await send(gateway, media_server)
    await run_all(
        deps_for(gateway, FakeCarrier(REFUSED), FakeSms(SmsResult(False, (), 0x58, "t", True)))
    )
    from mmsgate.store import deliveries

    row = await deliveries.for_delivery(gateway.services.db, tracking_id)
    again = await fallbacks.begin(
        gateway.services.db, row, {}, slides=(), reason="again", now=dt.datetime.now(dt.UTC)
    )
    assert again is False
    async with gateway.services.db.read() as conn:
        count = await conn.scalar(sa.select(sa.func.count()).select_from(fallbacks_table))
    assert count == 1


async def test_a_receipt_that_is_not_final_is_ignored(gateway: Gateway) -> None:
    """ENROUTE/ACCEPTD receipts reach the sink and change nothing."""
    deps = deps_for(gateway, FakeCarrier(ACCEPTED), FakeSms())
    sink = fallback.receipt_sink(deps.db, deps.clock)
    await sink(SmsReceipt("smsc", "nope", "ENROUTE"))  # would raise UnknownPart if applied
    await deps.http.aclose()
