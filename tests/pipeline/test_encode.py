"""saveMMS processing: the worker prepares templates per profile, reports, and posts N003 or
E002/E003/E004; the report and preview endpoints show the same shape."""

from __future__ import annotations

import io
from typing import Any

import pytest
import sqlalchemy as sa
from PIL import Image

from mmsgate.media import av, images
from mmsgate.pipeline import postbacks
from mmsgate.profiles import PROFILES
from mmsgate.store import accounts
from mmsgate.store.schema import templates, transcodes
from tests import samples
from tests.api.helpers import fields
from tests.api.test_errors import snapshot
from tests.conftest import Gateway, MediaServer
from tests.pipeline.encoding import insert_encoding_template, run_encoder
from tests.pipeline.test_postbacks import Receiver, receiver  # noqa: F401 - fixture

pytestmark = pytest.mark.anyio
PART_KEYS = {
    "slide",
    "kind",
    "content_type",
    "source_bytes",
    "output_bytes",
    "width",
    "height",
    "duration_ms",
    "codec",
    "quality",
}


def photo(width: int, height: int) -> bytes:
    """A photo-like JPEG: smooth shading under fine grain, so it does not compress to nothing."""
    shade = Image.radial_gradient("L").resize((width, height)).convert("RGB")
    grain = Image.effect_noise((width, height), 40).convert("RGB")
    out = io.BytesIO()
    Image.blend(shade, grain, 0.35).save(out, "JPEG", quality=92)
    return out.getvalue()


def save_body(key: str, base: str) -> str:
    return (
        f"<request><action>saveMMS</action><api-key>{key}</api-key><name>promo</name>"
        f"<slide><image><url>{base}/big.jpg</url></image><message-text>Hi</message-text></slide>"
        f"<slide><audio><url>{base}/tune.mp3</url></audio></slide></request>"
    )


async def test_template_is_prepared_reported_and_posted(
    gateway: Gateway,
    media_server: MediaServer,
    receiver: Receiver,  # noqa: F811
) -> None:
    """A saved template with a large photo and audio is encoded for each profile within its
    budget, becomes usable, and its N003 postback arrives."""
    media_server.add("/big.jpg", "image/jpeg", photo(3000, 2000))
    media_server.add("/tune.mp3", "audio/mpeg", samples.mp3(2.0))
    await accounts.update(gateway.services.db, "acme", postback_url=receiver.url)
    mms_id = fields((await gateway.xml(save_body(gateway.api_key, media_server.base))).content)[
        "mms-id"
    ]
    await run_encoder(gateway)
    report = (
        await gateway.client.get(f"/v1/templates/{mms_id}", headers={"x-api-key": gateway.api_key})
    ).json()
    assert report["state"] == "ready"
    for name in ("default", "legacy"):
        profile = report["profiles"][name]
        assert profile["fits"] is True
        assert profile["total_bytes"] <= profile["budget_bytes"] == PROFILES[name].budget_bytes
        assert [p["kind"] for p in profile["parts"]] == ["image", "audio"]
        assert set(profile["parts"][0]) >= PART_KEYS
    image = report["profiles"]["default"]["parts"][0]
    assert image["content_type"] == "image/jpeg"
    assert max(image["width"], image["height"]) <= PROFILES["default"].image_max_width
    assert report["profiles"]["legacy"]["parts"][1]["content_type"] == "audio/amr"
    [(_headers, body)] = receiver.received
    assert body == postbacks.template_postback("N003", int(mms_id))


@pytest.mark.parametrize(
    ("kind", "content_type", "code", "tag"),
    [
        ("audio", "audio/mpeg", "E002", "audio-name"),
        ("video", "video/mp4", "E003", "video-name"),
        ("image", "image/jpeg", "E004", "image-name"),
    ],
)
async def test_undecodable_part_fails_with_its_code_naming_the_url(
    gateway: Gateway,
    receiver: Receiver,  # noqa: F811
    kind: str,
    content_type: str,
    code: str,
    tag: str,
) -> None:
    """A part that cannot be transcoded marks the template failed and posts E002 (audio),
    E003 (video) or E004 (image) with its URL."""
    await accounts.update(gateway.services.db, "acme", postback_url=receiver.url)
    key = await gateway.services.blobs.put(b"ID3" + b"\x00" * 4000)
    url = f"http://media.example/broken.{kind}"
    part = {"kind": kind, "url": url, "blob_key": key, "content_type": content_type, "size": 4003}
    template_id = await insert_encoding_template(
        gateway, [{"text": None, "duration": None, "parts": [part]}]
    )
    await run_encoder(gateway)
    async with gateway.services.db.read() as conn:
        state = await conn.scalar(sa.select(templates.c.state).where(templates.c.id == template_id))
    assert state == "failed"
    [(_headers, body)] = receiver.received
    assert f"<code>{code}</code>".encode() in body
    assert f"<{tag}>{url}</{tag}>".encode() in body


async def test_preview_stores_nothing(gateway: Gateway, media_server: MediaServer) -> None:
    """POST /v1/preview reports each profile for a sendMMS without writing anything."""
    media_server.add("/big.jpg", "image/jpeg", photo(2000, 1500))
    media_server.add("/tune.mp3", "audio/mpeg", samples.mp3(1.0))
    before = await snapshot(gateway)
    body = save_body(gateway.api_key, media_server.base).replace("saveMMS", "sendMMS")
    response = await gateway.client.post(
        "/v1/preview", content=body, headers={"x-api-key": gateway.api_key}
    )
    assert response.status_code == 200, response.text
    preview = response.json()
    assert preview["state"] == "preview"
    assert preview["profiles"]["default"]["fits"] is True
    assert await snapshot(gateway) == before


async def test_the_same_media_is_transcoded_once_per_profile(
    gateway: Gateway, media_server: MediaServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second template with the same photo and audio reuses the cached outputs: no
    transcoder runs again, and both templates report the same bytes."""
    media_server.add("/big.jpg", "image/jpeg", photo(1600, 1200))
    media_server.add("/tune.mp3", "audio/mpeg", samples.mp3(1.0))
    runs: list[str] = []
    real_image, real_audio = images.transcode_image, av.transcode_audio

    def counted_image(*args: Any) -> images.ImageResult:
        runs.append("image")
        return real_image(*args)

    async def counted_audio(*args: Any) -> av.AvResult:
        runs.append("audio")
        return await real_audio(*args)

    monkeypatch.setattr(images, "transcode_image", counted_image)
    monkeypatch.setattr(av, "transcode_audio", counted_audio)
    ids = []
    for _ in range(2):
        response = await gateway.xml(save_body(gateway.api_key, media_server.base))
        ids.append(fields(response.content)["mms-id"])
        await run_encoder(gateway)
        assert sorted(runs) == ["audio", "audio", "image", "image"]  # 2 parts x 2 profiles
    async with gateway.services.db.read() as conn:
        cached = await conn.scalar(sa.select(sa.func.count()).select_from(transcodes))
        rows = (await conn.execute(sa.select(templates.c.reports, templates.c.state))).all()
    assert cached == 4
    assert [row.state for row in rows] == ["ready", "ready"]
    assert rows[0].reports == rows[1].reports
