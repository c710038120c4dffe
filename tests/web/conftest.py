"""A gateway whose clock the test moves, and messages that fell back to a hosted page."""

from __future__ import annotations

import dataclasses
import datetime as dt
import secrets
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from mmsgate import settings as settings_mod
from mmsgate.api.app import build_services, create_app
from mmsgate.models import WebSlide
from mmsgate.store import accounts, deliveries, fallbacks
from mmsgate.store.blobs import BlobStore
from mmsgate.store.db import Database
from tests import samples
from tests.api.helpers import sendings
from tests.conftest import Gateway, MediaServer
from tests.web import media

START = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


class Clock:
    """The app's clock: it reads `now`, which the test moves."""

    def __init__(self, now: dt.datetime = START) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> dt.datetime:
        self.now += dt.timedelta(**delta)
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def site(settings: settings_mod.Settings, clock: Clock) -> AsyncIterator[Gateway]:
    """The app in-process, like `gateway`, with the test's clock."""
    db = Database(settings.db_url)
    await db.migrate()
    created = await accounts.create(db, "acme", senders=["28444"], service_ids=["32113"])
    assert created is not None
    services = dataclasses.replace(build_services(settings, db), clock=clock)
    app = create_app(settings, services)
    async with app.routes.router.lifespan_context(app.routes):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://mmsgate.test") as client:
            yield Gateway(client, services, created.api_key, created.account)


SEND = """<request><action>sendMMS</action><api-key>{key}</api-key>
<to>{to}</to><from>28444</from><service-id>32113</service-id>
<name>spring</name><message-subject>Spring sale</message-subject><fallback-sms-text>See your MMS</fallback-sms-text>
<slide><image><url>{base}/photo.jpg</url></image><message-text>Hello</message-text></slide>
</request>"""


async def send(gw: Gateway, server: MediaServer, *numbers: str) -> list[str]:
    """sendMMS with a text+image slide to `numbers`: their tracking ids."""
    server.add("/photo.jpg", "image/jpeg", samples.jpeg())
    body = SEND.format(key=gw.api_key, to=",".join(numbers), base=server.base)
    answer = await gw.xml(body)
    assert "<status>Success</status>" in answer.text, answer.text
    if len(numbers) == 1:
        return [answer.text.split("<tracking-id>")[1].split("<")[0]]
    return [s["tracking-id"] for s in sendings(answer.content)]


def part(kind: str, content_type: str, key: str, data: bytes, **extra: Any) -> dict[str, Any]:
    return {
        "kind": kind,
        "content_type": content_type,
        "blob_key": key,
        "bytes": len(data),
        "width": None,
        "height": None,
        "duration_ms": None,
        "name": None,
        "alt": None,
        **extra,
    }


async def every_kind(blobs: BlobStore) -> list[dict[str, Any]]:
    """Slides holding one part of every kind, as the pipeline stores them on fallback."""

    async def put(kind: str, content_type: str, data: bytes, **extra: Any) -> dict[str, Any]:
        return part(kind, content_type, await blobs.put(data), data, **extra)

    small, width, height = media.small_photo()
    narrow = part("image", "image/jpeg", await blobs.put(small), small, width=width, height=height)
    photo = await put("image", "image/jpeg", media.photo(), width=800, height=600, small=narrow)
    return [
        {
            "text": "Our spring sale starts now: https://shop.example/sale?a=1&b=2.",
            "duration": 5,
            "parts": [photo],
        },
        {
            "text": "Watch <script>alert('x')</script> this",
            "duration": None,
            "parts": [
                await put(
                    "video", "video/mp4", media.mp4(), width=320, height=240, duration_ms=1000
                ),
                await put("audio", "audio/mp4", media.m4a(), duration_ms=1000),
            ],
        },
        {
            "text": "Keep these",
            "duration": None,
            "parts": [
                await put("vcard", "text/vcard", media.VCARD, name="ann.vcf"),
                await put("ical", "text/calendar", media.ICAL, name="sale.ics"),
                await put("pdf", "application/pdf", media.pdf(), name="flyer"),
                await put(
                    "passbook", "application/vnd.apple.pkpass", media.pkpass(), name="ticket.pkpass"
                ),
            ],
        },
    ]


@dataclasses.dataclass(frozen=True)
class Hosted:
    """A recipient on the fallback path, and its page."""

    tracking_id: str
    token: str
    slides: list[dict[str, Any]]


async def fall_back(
    db: Database,
    tracking_id: str,
    slides: list[dict[str, Any]],
    *,
    now: dt.datetime,
    expires: dt.datetime,
    subject: str | None = "Spring sale",
) -> Hosted:
    """Put the recipient on the fallback path with a page holding `slides`."""
    row = await deliveries.for_delivery(db, tracking_id)
    token = secrets.token_urlsafe(16)
    content = {
        "token": token,
        "link_expires_at": expires,
        "subject": subject,
        "sms_text": f"See your MMS https://mmsgate.test/m/{token}",
        "sms_coding": "gsm7",
        "sms_parts": 1,
    }
    page = [WebSlide.from_data(slide) for slide in slides]
    assert await fallbacks.begin(db, row, content, slides=page, reason="test", now=now)
    return Hosted(tracking_id, token, slides)


@pytest.fixture
async def hosted(site: Gateway, media_server: MediaServer, clock: Clock) -> Hosted:
    """A message sent through the API that fell back to a page of every kind of part,
    whose link expires 30 days from now."""
    [tracking_id] = await send(site, media_server, "17745550100")
    slides = await every_kind(site.services.blobs)
    now = clock()
    db = site.services.db
    return await fall_back(db, tracking_id, slides, now=now, expires=now + dt.timedelta(days=30))
