"""POST /mm7: delivery reports from MMSCs move recipients forward only, once, each with
one postback; unknown ids and bad bodies get MM7 faults."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re

import pytest
import sqlalchemy as sa

from mmsgate import mm7_codec as mm7
from mmsgate import models
from mmsgate.pipeline.postbacks import body_of
from mmsgate.sim.mmsc import SIM_HANDSET, delivery_report
from mmsgate.store import deliveries
from mmsgate.store.schema import jobs, recipient_events
from tests import samples
from tests.api.test_send_mms import SEED
from tests.conftest import Gateway, MediaServer

pytestmark = pytest.mark.anyio
S = models.RecipientState


async def queued(gateway: Gateway, media_server: MediaServer) -> str:
    """An accepted send, its recipient not submitted yet."""
    media_server.add("/images/1.jpg", "image/jpeg", samples.jpeg())
    media_server.add("/audio/1.mp3", "audio/mpeg", samples.mp3())
    media_server.add("/cal/2.ics", "text/calendar", samples.ICAL)
    response = await gateway.xml(SEED.format(key=gateway.api_key, base=media_server.base))
    return response.text.split("<tracking-id>")[1].split("<")[0]


async def take(
    gateway: Gateway, tracking_id: str, message_id: str, route: str = "simulator"
) -> None:
    """The MMSC's SubmitRsp for the recipient, recorded: submitted over `route` under
    `message_id`."""
    moved = await deliveries.move(
        gateway.services.db,
        tracking_id,
        deliveries.Move(S.SUBMITTED, "N101", carrier_message_id=message_id, route=route),
        postback=None,
        now=dt.datetime.now(dt.UTC),
    )
    assert moved


async def submitted(gateway: Gateway, media_server: MediaServer, message_id: str) -> str:
    """An accepted send whose recipient the MMSC took under `message_id`."""
    tracking_id = await queued(gateway, media_server)
    await take(gateway, tracking_id, message_id)
    return tracking_id


async def postback_codes(gateway: Gateway) -> list[str]:
    async with gateway.services.db.read() as conn:
        rows = (
            await conn.execute(
                sa.select(jobs.c.payload).where(jobs.c.kind == models.JobKind.POSTBACK.value)
            )
        ).all()
    return [body_of(row.payload)[0].decode().split("<code>")[1].split("<")[0] for row in rows]


async def report(gateway: Gateway, message_id: str, status: str) -> mm7.Response:
    body = delivery_report(message_id, "12399471613", status)
    answer = await gateway.mm7(body)
    return mm7.decode_response(answer.headers["content-type"], answer.content)


async def test_retrieved_delivers_once_whatever_follows(
    gateway: Gateway, media_server: MediaServer
) -> None:
    """Retrieved gives N102; a duplicate, a late Forwarded and a late Expired change nothing,
    yet each is acknowledged so the MMSC stops resending."""
    tracking_id = await submitted(gateway, media_server, "mmsc-1")
    for status in ("Retrieved", "Retrieved", "Forwarded", "Expired"):
        answer = await report(gateway, "mmsc-1", status)
        assert (answer.kind, answer.status_code) == ("DeliveryReportRsp", 1000)
    assert await postback_codes(gateway) == ["N102"]
    async with gateway.services.db.read() as conn:
        body = await conn.scalar(
            sa.select(jobs.c.payload).where(jobs.c.kind == models.JobKind.POSTBACK.value)
        )
    # queued as the event, rendered only when sent
    assert ("body" not in body, body["event"]["code"]) == (True, "N102")
    # the handset's UAProf from the report's UACapabilities
    assert f"<handset>{SIM_HANDSET}</handset>" in body_of(body)[0].decode()
    status = await gateway.client.get(
        f"/v1/messages/{tracking_id}", headers={"x-api-key": gateway.api_key}
    )
    assert status.json()["state"] == "delivered"
    async with gateway.services.db.read() as conn:
        states = (
            await conn.scalars(
                sa.select(recipient_events.c.state).where(
                    recipient_events.c.tracking_id == tracking_id
                )
            )
        ).all()
    assert list(states) == ["queued", "submitted", "delivered"]


@pytest.mark.parametrize(
    ("status", "code", "state"),
    [("Rejected", "E102", "rejected"), ("Expired", "N103", "expired")],
)
async def test_final_reports_map_to_sinch_codes(
    gateway: Gateway, media_server: MediaServer, status: str, code: str, state: str
) -> None:
    """Rejected is E102 and Expired is N103, each once."""
    tracking_id = await submitted(gateway, media_server, "mmsc-2")
    await report(gateway, "mmsc-2", status)
    await report(gateway, "mmsc-2", "Retrieved")  # too late: the state is final
    assert await postback_codes(gateway) == [code]
    answer = await gateway.client.get(
        f"/v1/messages/{tracking_id}", headers={"x-api-key": gateway.api_key}
    )
    assert answer.json()["state"] == state


async def test_non_final_reports_keep_the_recipient_submitted(
    gateway: Gateway, media_server: MediaServer
) -> None:
    """Deferred says nothing final: no postback, still submitted, then Retrieved counts."""
    await submitted(gateway, media_server, "mmsc-3")
    await report(gateway, "mmsc-3", "Deferred")
    assert await postback_codes(gateway) == []
    await report(gateway, "mmsc-3", "Retrieved")
    assert await postback_codes(gateway) == ["N102"]


async def test_unknown_message_id_is_a_transient_fault(gateway: Gateway) -> None:
    """A report for an id not (yet) known is refused with 3000 and HTTP 500 so the MMSC
    resends it."""
    body = delivery_report("never-seen", "12399471613", "Retrieved")
    http = await gateway.mm7(body)
    assert http.status_code == 500
    answer = mm7.decode_response(http.headers["content-type"], http.content)
    assert answer.status_code == 3000
    assert answer.fault is not None


async def test_report_overtaking_its_submit_response_is_applied(
    gateway: Gateway, media_server: MediaServer
) -> None:
    """A report that arrives just before its SubmitRsp is recorded is held a moment and
    applied, rather than refused for the MMSC to send again."""
    tracking_id = await queued(gateway, media_server)
    early = asyncio.create_task(report(gateway, "mmsc-race", "Retrieved"))
    for _ in range(10):  # let the report reach its first look-up
        await asyncio.sleep(0)
    await take(gateway, tracking_id, "mmsc-race")
    answer = await early
    assert (answer.kind, answer.status_code) == ("DeliveryReportRsp", 1000)
    assert await postback_codes(gateway) == ["N102"]


@pytest.mark.parametrize(
    "body", [b"not xml", b"<?xml version='1.0'?><!DOCTYPE x [<!ENTITY a 'b'>]><x>&a;</x>"]
)
async def test_bad_bodies_are_format_faults(gateway: Gateway, body: bytes) -> None:
    """Garbage and DTDs get 2007 Message format corrupt, with HTTP 400: final, since no
    resend of the same bytes can succeed."""
    answer = await gateway.mm7(body)
    assert answer.status_code == 400
    assert mm7.decode_response("text/xml", answer.content).status_code == 2007


async def test_move_never_goes_back(gateway: Gateway, media_server: MediaServer) -> None:
    """The state machine: a later, lower state is refused and writes nothing."""
    tracking_id = await submitted(gateway, media_server, "mmsc-4")
    now = dt.datetime.now(dt.UTC)
    db = gateway.services.db
    assert await deliveries.move(
        db, tracking_id, deliveries.Move(S.DELIVERED), postback=None, now=now
    )
    event = models.PostbackEvent(models.PostbackKind.DELIVERY, gateway.account.id, "E102")
    for back in (S.QUEUED, S.SUBMITTED, S.DELIVERED, S.FAILED):
        assert not await deliveries.move(
            db, tracking_id, deliveries.Move(back), postback=event, now=now
        )
    assert await postback_codes(gateway) == []


async def test_metrics_show_receipts_and_the_state_of_the_system(
    gateway: Gateway, media_server: MediaServer
) -> None:
    """GET /metrics: receipt counters of this process and recipients by state from the
    database, in the Prometheus text format."""
    await submitted(gateway, media_server, "mmsc-m")
    await report(gateway, "mmsc-m", "Retrieved")
    answer = await gateway.client.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    text = answer.text
    assert 'mmsgate_receipts_total{applied="true",status="Retrieved"}' in text
    assert 'mmsgate_recipients{state="delivered",route="simulator"} 1' in text
    assert 'mmsgate_jobs{kind="postback",state="pending"} 1' in text
    assert "mmsgate_accepted_total" in text


async def test_an_mo_message_is_stored_posted_and_served(gateway: Gateway) -> None:
    """A DeliverReq to one of the account's numbers: DeliverRsp 1000, an N401 postback
    listing content URLs, and each URL serves its part; other tokens and numbers are 404."""
    photo = samples.jpeg()
    content_type, body = mm7.encode_deliver(
        "mo-1", "17745550100", "28444", [("image/jpeg", photo), ("text/plain", b"Hi!")],
        subject="Look",
    )  # fmt: skip
    answer = await gateway.mm7(body, content_type)
    rsp = mm7.decode_response(answer.headers["content-type"], answer.content)
    assert (rsp.kind, rsp.status_code) == ("DeliverRsp", 1000)
    async with gateway.services.db.read() as conn:
        [payload] = (
            await conn.scalars(
                sa.select(jobs.c.payload).where(jobs.c.kind == models.JobKind.POSTBACK.value)
            )
        ).all()
    text = body_of(payload)[0].decode()
    assert "<origin>MMS_MO</origin>" in text
    assert "<code>N401</code>" in text
    assert "<from>17745550100</from>" in text
    assert "<message-subject>Look</message-subject>" in text
    files = re.findall(r"<file>([^<]+)</file>", text)
    assert len(files) == 2
    first = await gateway.client.get("/" + files[0].split("/", 3)[3])
    assert first.status_code == 200
    assert first.content == photo
    assert first.headers["content-type"] == "image/jpeg"
    second = await gateway.client.get("/" + files[1].split("/", 3)[3])
    assert second.content == b"Hi!"
    token = files[0].split("/")[-2]
    assert (await gateway.client.get(f"/media/{token}/3")).status_code == 404
    assert (await gateway.client.get(f"/media/{token[:-2]}xx/1")).status_code == 404


async def mo_postback_payload(gateway: Gateway) -> dict[str, object]:
    async with gateway.services.db.read() as conn:
        [payload] = (
            await conn.scalars(
                sa.select(jobs.c.payload).where(jobs.c.kind == models.JobKind.POSTBACK.value)
            )
        ).all()
    return dict(payload)


async def test_a_group_mo_names_the_others_in_copy_to_and_its_keyword(gateway: Gateway) -> None:
    """A group DeliverReq whose To lists another member before the account's number, and
    whose Cc lists two more (one again), reaches the account: its N401 has `to` the
    account's number, the other members once each in `copy-to` (not the sender, not the
    Bcc), and the text's first word in capitals as `keyword`, in JSON; XML has the keyword."""
    content_type, body = mm7.encode_deliver(
        "mo-g", "17745550100", "28444", [("text/plain", b"photo, please!")]
    )
    group = (
        b"<Recipients><To><Number>+17745550199</Number><ShortCode>28444</ShortCode></To>"
        b"<Cc><Number>17745550198</Number><Number>17745550100</Number>"
        b"<Number>17745550199</Number></Cc><Bcc><Number>17745550197</Number></Bcc></Recipients>"
    )
    one = b"<Recipients><To><ShortCode>28444</ShortCode></To></Recipients>"
    assert one in body
    answer = await gateway.mm7(body.replace(one, group), content_type)
    assert mm7.decode_response(answer.headers["content-type"], answer.content).status_code == 1000
    payload = await mo_postback_payload(gateway)
    as_json = json.loads(body_of(payload, models.PostbackFormat.JSON)[0])
    assert as_json["to"] == "28444"
    assert as_json["copy-to"] == [{"number": "17745550199"}, {"number": "17745550198"}]
    assert as_json["keyword"] == "PHOTO"
    assert "<keyword>PHOTO</keyword>" in body_of(payload)[0].decode()


async def test_an_mo_without_words_has_no_keyword(gateway: Gateway) -> None:
    """An MO with neither subject nor text (a photo alone) has no keyword and, sent to one
    number, no copy-to."""
    content_type, body = mm7.encode_deliver(
        "mo-p", "17745550100", "28444", [("image/jpeg", samples.jpeg())]
    )
    assert (await gateway.mm7(body, content_type)).status_code == 200
    as_json = json.loads(body_of(await mo_postback_payload(gateway), models.PostbackFormat.JSON)[0])
    assert "keyword" not in as_json
    assert "copy-to" not in as_json


async def test_an_mo_message_to_a_number_of_no_account_is_refused(gateway: Gateway) -> None:
    """A DeliverReq to a number no account has is a 2002 Address Error."""
    content_type, body = mm7.encode_deliver("mo-2", "17745550100", "99999", [("text/plain", b"x")])
    answer = await gateway.mm7(body, content_type)
    assert mm7.decode_response(answer.headers["content-type"], answer.content).status_code == 2002


@pytest.mark.parametrize(
    ("sent", "served", "text"),
    [
        ("text/plain; charset=UTF-8", "text/plain; charset=utf-8", "Grüße, 東京 👋"),
        ('text/plain; charset="iso-8859-1"; format=flowed', "text/plain; charset=iso-8859-1",
         "Café à Zürich"),
    ],
)  # fmt: skip
async def test_an_mo_text_part_is_served_with_its_charset(
    gateway: Gateway, sent: str, served: str, text: str
) -> None:
    """An MO text part's charset survives storage: its URL serves the bytes unchanged, typed
    with that charset only, never sniffed."""
    data = text.encode(served.rsplit("=", 1)[1])
    content_type, body = mm7.encode_deliver("mo-3", "17745550100", "28444", [(sent, data)])
    answer = await gateway.mm7(body, content_type)
    assert mm7.decode_response(answer.headers["content-type"], answer.content).status_code == 1000
    async with gateway.services.db.read() as conn:
        [payload] = (
            await conn.scalars(
                sa.select(jobs.c.payload).where(jobs.c.kind == models.JobKind.POSTBACK.value)
            )
        ).all()
    [url] = re.findall(r"<file>([^<]+)</file>", body_of(payload)[0].decode())
    part = await gateway.client.get("/" + url.split("/", 3)[3])
    assert part.status_code == 200
    assert part.content == data
    assert part.headers["content-type"] == served
    assert part.headers["x-content-type-options"] == "nosniff"
    assert part.text == text
