"""sendMMS with images that cost far more work than their bytes: refused before decoding,
while a real animation passes and other requests are answered meanwhile."""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from typing import Any

import anyio
import pytest
from PIL import Image, ImageDraw

from mmsgate.media import inspect as inspect_module
from mmsgate.settings import MediaSettings
from tests import bombs
from tests.api.helpers import failure_code, fields
from tests.api.test_errors import send_mms, snapshot
from tests.conftest import Gateway, MediaServer

pytestmark = pytest.mark.anyio

GIF_CAP = MediaSettings().gif_max_bytes
BOMBS = {
    "46KB-2000-frames-7000x7000": lambda: bombs.gif(2000),
    "1MiB-7000x7000": lambda: bombs.gif_filling(GIF_CAP),
    "1MiB-1x1": lambda: bombs.gif_filling(GIF_CAP, 1, 1),
    "20-frames-7000x7000": lambda: bombs.gif(20),
}


def image_slide(url: str) -> str:
    return f"<slide><image><url>{url}</url></image></slide>"


def walking_square(frames: int = 24) -> bytes:
    """A real animation: a square crossing a 320x240 picture, 80 ms a frame, looping."""
    pictures = []
    for index in range(frames):
        picture = Image.new("RGB", (320, 240), (20, 40, 160))
        left = index * 12
        ImageDraw.Draw(picture).rectangle((left, 90, left + 40, 130), fill=(230, 40, 40))
        pictures.append(picture)
    out = io.BytesIO()
    pictures[0].save(out, "GIF", save_all=True, append_images=pictures[1:], duration=80, loop=0)
    return out.getvalue()


async def until(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await anyio.sleep(0.001)


@pytest.mark.parametrize("name", list(BOMBS))
async def test_a_gif_frame_bomb_is_too_big(
    gateway: Gateway, media_server: MediaServer, name: str
) -> None:
    """Thousands of tiny frames on a large canvas (or tens of thousands on a tiny one), under
    the GIF byte cap, are E331 before a frame is decoded, and nothing is stored."""
    data = BOMBS[name]()
    assert len(data) <= GIF_CAP
    url = media_server.add("/bomb.gif", "image/gif", data)
    before = await snapshot(gateway)
    response = await gateway.xml(send_mms(gateway.api_key, image_slide(url)))
    assert failure_code(response.content) == "E331", response.text
    assert "pixels to decode" in fields(response.content)["error-info"]
    assert await snapshot(gateway) == before


async def test_a_real_animation_is_accepted_and_transcoded(
    gateway: Gateway, media_server: MediaServer
) -> None:
    """A 24-frame GIF is accepted, and transcoding keeps it an animated GIF."""
    url = media_server.add("/walk.gif", "image/gif", walking_square())
    body = send_mms(gateway.api_key, image_slide(url))
    assert fields((await gateway.xml(body)).content)["status"] == "Success"
    preview = await gateway.client.post(
        "/v1/preview", content=body, headers={"x-api-key": gateway.api_key}
    )
    assert preview.status_code == 200, preview.text
    part = preview.json()["profiles"]["default"]["parts"][0]
    assert (part["content_type"], part["width"], part["height"]) == ("image/gif", 320, 240)
    assert part["dropped"] == []


async def test_health_answers_while_an_image_is_inspected(
    gateway: Gateway, media_server: MediaServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a large animation (within the budget) is being inspected, /healthz answers:
    inspection runs off the event loop, and the sendMMS then succeeds."""
    order: list[str] = []
    real = inspect_module.inspect

    def observed(*args: Any) -> inspect_module.Inspected:
        order.append("inspecting")
        try:
            return real(*args)
        finally:
            order.append("inspected")

    monkeypatch.setattr(inspect_module, "inspect", observed)
    url = media_server.add("/heavy.gif", "image/gif", bombs.gif(4))
    responses: list[bytes] = []

    async def send() -> None:
        responses.append((await gateway.xml(send_mms(gateway.api_key, image_slide(url)))).content)

    async with anyio.create_task_group() as group:
        group.start_soon(send)
        await until(lambda: "inspecting" in order)
        assert (await gateway.client.get("/healthz")).status_code == 200
        order.append("healthz")
    assert order == ["inspecting", "healthz", "inspected"]
    assert fields(responses[0])["status"] == "Success"
