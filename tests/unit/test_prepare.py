"""Preparing a whole message for a profile: budget shared across parts, outputs composed,
the report says whether it fits and, if not, why."""

from __future__ import annotations

import dataclasses
import io
import subprocess
from typing import Any

import pytest
from PIL import Image

from mmsgate.media import av, prepare
from mmsgate.profiles import DEFAULT, LEGACY

pytestmark = pytest.mark.anyio


def grainy_photo(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.effect_noise((width, height), 50).convert("RGB").save(out, "JPEG", quality=95)
    return out.getvalue()


def small_clip() -> bytes:
    command = [av.ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=15",
               "-t", "2", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-f", "mp4",
               "-movflags", "frag_keyframe+empty_moov", "pipe:1"]  # fmt: skip
    return subprocess.run(command, check=True, capture_output=True, timeout=60).stdout


class Blobs:
    """Parts stored by key, as the blob store would hand them over."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    def part(self, kind: str, content_type: str, data: bytes) -> dict[str, Any]:
        key = f"k{len(self.data)}"
        self.data[key] = data
        return {
            "kind": kind,
            "url": f"http://x/{key}",
            "blob_key": key,
            "content_type": content_type,
        }

    async def load(self, key: str) -> bytes:
        return self.data[key]


async def test_bytes_a_video_leaves_go_to_the_image() -> None:
    """A short clip needs little of its share; the photo after it gets the rest, and the
    whole message still fits."""
    blobs = Blobs()
    slides = [
        {"text": "Look", "duration": None, "parts": [blobs.part("image", "image/jpeg", grainy_photo(1600, 1200))]},
        {"text": None, "duration": None, "parts": [blobs.part("video", "video/mp4", small_clip())]},
    ]  # fmt: skip
    prepared = await prepare.prepare(slides, DEFAULT, blobs.load)
    report = prepared.report.to_json()
    image, video = report["parts"]
    assert report["fits"] is True
    assert prepared.composed is not None
    assert report["total_bytes"] == prepared.composed.size <= DEFAULT.budget_bytes
    assert video["output_bytes"] < 0.5 * DEFAULT.budget_bytes
    assert image["output_bytes"] > 0.3 * DEFAULT.budget_bytes  # more than its fixed 2/13 share
    assert video["duration_ms"] == 2000


async def test_objects_the_profile_cannot_take_mean_fallback() -> None:
    """A PDF toward the legacy profile cannot go as MMS: the report says so and why."""
    blobs = Blobs()
    pdf = blobs.part("pdf", "application/pdf", b"%PDF-1.4\n" + b"0" * 2000)
    prepared = await prepare.prepare([{"text": "Menu", "parts": [pdf]}], LEGACY, blobs.load)
    assert prepared.fits is False
    assert "application/pdf" in prepared.report.to_json()["fallback"]


async def test_a_message_that_cannot_fit_says_why() -> None:
    """Text alone over the budget cannot be cut: no composition, and the reason."""
    blobs = Blobs()
    tiny = dataclasses.replace(DEFAULT, budget_bytes=3000)
    photo = blobs.part("image", "image/jpeg", grainy_photo(800, 600))
    slides = [{"text": "x" * 2500, "parts": [photo]}]
    prepared = await prepare.prepare(slides, tiny, blobs.load)
    assert prepared.fits is False
    assert prepared.report.to_json()["fallback"]
