"""sendMMS end to end: the seed example, media fetched at accept time, media errors."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from mmsgate import settings as settings_mod
from mmsgate.store import accounts, schema
from tests import samples
from tests.api.helpers import assert_golden, failure_code, fields
from tests.api.test_errors import send_mms, snapshot
from tests.conftest import Gateway, MediaServer

pytestmark = pytest.mark.anyio

SEED = """<request>
    <action>sendMMS</action>
    <api-key>{key}</api-key>
    <to>12399471613</to>
    <from>28444</from>
    <operator-id>31062</operator-id>
    <message-subject>The subject</message-subject>
    <service-id>32113</service-id>
    <name>FuelTheFire</name>
    <fallback-sms-text>Your MMS is here</fallback-sms-text>
    <slide>
        <duration>5</duration>
        <image>
            <url>{base}/images/1.jpg</url>
        </image>
        <audio>
            <url>{base}/audio/1.mp3</url>
        </audio>
        <message-text>Here is some text blah blah ...</message-text>
    </slide>
    <slide>
        <message-text>Invitation</message-text>
        <ical><url>{base}/cal/2.ics</url></ical>
        <duration>10</duration>
    </slide>
</request>"""


def seed_media(server: MediaServer) -> None:
    server.add("/images/1.jpg", "image/jpeg", samples.jpeg(), ETag='"img-1"')
    server.add("/audio/1.mp3", "audio/mpeg", samples.mp3())
    server.add("/cal/2.ics", "text/calendar", samples.ICAL)


async def test_seed_example_gets_the_seed_success_shape(
    gateway: Gateway, media_server: MediaServer
) -> None:
    """The seed's sendMMS request answers exactly status, to, mms-id, tracking-id, status-details."""
    seed_media(media_server)
    response = await gateway.xml(SEED.format(key=gateway.api_key, base=media_server.base))
    assert response.status_code == 200
    assert_golden("send_mms_success.xml", response.content, "mms-id", "tracking-id")
    assert list(fields(response.content)) == [
        "status",
        "to",
        "mms-id",
        "tracking-id",
        "status-details",
    ]


async def test_seed_example_stores_fetched_parts(
    gateway: Gateway, media_server: MediaServer
) -> None:
    """The parts are fetched, checked, kept in the blob store, and described on the template."""
    seed_media(media_server)
    response = await gateway.xml(SEED.format(key=gateway.api_key, base=media_server.base))
    mms_id = int(fields(response.content)["mms-id"])
    async with gateway.services.db.read() as conn:
        template = (
            await conn.execute(sa.select(schema.templates).where(schema.templates.c.id == mms_id))
        ).one()
    first, second = template.slides
    assert [p["content_type"] for p in first["parts"]] == ["image/jpeg", "audio/mpeg"]
    assert (first["parts"][0]["width"], first["parts"][0]["height"]) == (640, 480)
    assert second["parts"][0]["content_type"] == "text/calendar"
    assert second["duration"] == 10
    blob = await gateway.services.content._blobs.get(first["parts"][0]["blob_key"])
    assert blob == samples.jpeg()


async def test_refetch_revalidates_with_etag(gateway: Gateway, media_server: MediaServer) -> None:
    """A URL fetched again is revalidated (If-None-Match → 304) and still stored whole."""
    seed_media(media_server)
    body = SEED.format(key=gateway.api_key, base=media_server.base)
    assert fields((await gateway.xml(body)).content)["status"] == "Success"
    assert fields((await gateway.xml(body)).content)["status"] == "Success"
    assert media_server.hits["/images/1.jpg"] == 2
    async with gateway.services.db.read() as conn:
        cached = (await conn.execute(sa.select(schema.media_cache))).all()
    assert [row.etag for row in cached] == ['"img-1"']


def slide(kind: str, url: str) -> str:
    return f"<slide><{kind}><url>{url}</url></{kind}></slide>"


FETCH_CASES = [
    ("image", "E351"),
    ("audio", "E352"),
    ("video", "E353"),
    ("message-text", "E354"),
    ("vcard", "E355"),
    ("ical", "E356"),
    ("pdf", "E357"),
    ("passbook", "E358"),
]


@pytest.mark.parametrize(("kind", "code"), FETCH_CASES)
async def test_unreachable_media_is_could_not_copy(
    gateway: Gateway, media_server: MediaServer, kind: str, code: str
) -> None:
    """A media URL that answers 404 fails the request with the kind's E35x code."""
    before = await snapshot(gateway)
    response = await gateway.xml(
        send_mms(gateway.api_key, slide(kind, media_server.base + "/missing"))
    )
    assert failure_code(response.content) == code
    assert "slide 1" in fields(response.content)["error-info"]
    assert await snapshot(gateway) == before


SIZE_CASES = [
    ("image", "image/jpeg", "E331"),
    ("audio", "audio/mpeg", "E332"),
    ("video", "video/mp4", "E333"),
    ("message-text", "text/plain", "E334"),
    ("vcard", "text/vcard", "E335"),
    ("ical", "text/calendar", "E336"),
    ("pdf", "application/pdf", "E337"),
    ("passbook", "application/vnd.apple.pkpass", "E338"),
]


@pytest.mark.media(
    image_max_bytes=1000,
    audio_max_bytes=1000,
    video_max_bytes=1000,
    object_max_bytes=1000,
    text_max_chars=100,
)
@pytest.mark.parametrize(("kind", "content_type", "code"), SIZE_CASES)
async def test_oversized_media_is_too_big(
    gateway: Gateway, media_server: MediaServer, kind: str, content_type: str, code: str
) -> None:
    """Media over the configured cap fails with the kind's E33x code, nothing stored."""
    url = media_server.add("/big", content_type, b"x" * 5000)
    before = await snapshot(gateway)
    response = await gateway.xml(send_mms(gateway.api_key, slide(kind, url)))
    assert failure_code(response.content) == code, response.text
    assert await snapshot(gateway) == before


CORRUPT_CASES = [
    ("image", "image/jpeg", samples.jpeg()[:600], "E341"),
    ("audio", "audio/mpeg", b"ID3" + b"\x00" * 2000, "E342"),
    ("video", "video/mp4", b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 2000, "E343"),
    ("vcard", "text/vcard", b"not a card at all", "E344"),
]


@pytest.mark.parametrize(("kind", "content_type", "data", "code"), CORRUPT_CASES)
async def test_corrupt_media_is_refused(
    gateway: Gateway,
    media_server: MediaServer,
    kind: str,
    content_type: str,
    data: bytes,
    code: str,
) -> None:
    """A file that does not decode is an E34x error, not a crash, and nothing is stored."""
    url = media_server.add("/bad", content_type, data)
    before = await snapshot(gateway)
    response = await gateway.xml(send_mms(gateway.api_key, slide(kind, url)))
    assert failure_code(response.content) == code, response.text
    assert await snapshot(gateway) == before


async def test_wrong_kind_of_media_is_e229(gateway: Gateway, media_server: MediaServer) -> None:
    """An image element whose URL serves a video is content not allowed (E229)."""
    url = media_server.add("/clip", "video/mp4", samples.mp4())
    response = await gateway.xml(send_mms(gateway.api_key, slide("image", url)))
    assert failure_code(response.content) == "E229"


async def test_unrecognized_type_is_e629(gateway: Gateway, media_server: MediaServer) -> None:
    """Bytes nobody can recognise, served as octet-stream, are E629."""
    url = media_server.add("/blob", "application/octet-stream", b"\x01\x02\x03" * 100)
    response = await gateway.xml(send_mms(gateway.api_key, slide("image", url)))
    assert failure_code(response.content) == "E629"


async def test_loopback_media_refused_without_private_networks(
    gateway: Gateway, media_server: MediaServer
) -> None:
    """With private networks not allowed, a loopback media URL is refused (SSRF guard)."""
    import dataclasses

    from mmsgate.media.fetch import Fetcher

    guarded = Fetcher(
        dataclasses.replace(gateway.services.settings.media, allow_private_networks=False)
    )
    gateway.services.content._fetcher = guarded
    try:
        url = media_server.add("/i.jpg", "image/jpeg", samples.jpeg())
        response = await gateway.xml(send_mms(gateway.api_key, slide("image", url)))
        assert failure_code(response.content) == "E351"
        assert "not allowed" in fields(response.content)["error-info"]
        assert "/i.jpg" not in media_server.hits
    finally:
        await guarded.aclose()


@pytest.mark.config(api=settings_mod.ApiSettings(account_cache_seconds=0))
async def test_the_account_sets_the_default_lifetime_of_a_send(
    gateway: Gateway, media_server: MediaServer
) -> None:
    """With `--mms-expiry-hours 6` a send without mms-expiry-timestamp expires in 6 hours;
    a request's own timestamp still wins."""
    await accounts.update(gateway.services.db, "acme", mms_expiry_hours=6)
    media_server.add("/images/1.jpg", "image/jpeg", samples.jpeg())
    media_server.add("/audio/1.mp3", "audio/mpeg", samples.mp3())
    media_server.add("/cal/2.ics", "text/calendar", samples.ICAL)
    before = dt.datetime.now(dt.UTC)
    response = await gateway.xml(SEED.format(key=gateway.api_key, base=media_server.base))
    tracking_id = response.text.split("<tracking-id>")[1].split("<")[0]
    async with gateway.services.db.read() as conn:
        expires = await conn.scalar(
            sa.select(schema.messages.c.expires_at)
            .join(schema.recipients, schema.recipients.c.message_id == schema.messages.c.id)
            .where(schema.recipients.c.tracking_id == tracking_id)
        )
    expires = expires if expires.tzinfo else expires.replace(tzinfo=dt.UTC)
    assert dt.timedelta(hours=6) <= expires - before < dt.timedelta(hours=6, minutes=1)
