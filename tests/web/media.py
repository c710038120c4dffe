"""Small real files of every kind the hosted page shows, made by the tests themselves."""

from __future__ import annotations

import array
import functools
import io
import json
import math
import zipfile
from fractions import Fraction

import av
from PIL import Image

from mmsgate.media import images, prepare
from tests import samples

VCARD = samples.VCARD
ICAL = samples.ICAL


@functools.cache
def photo(width: int = 800, height: int = 600) -> bytes:
    """A photo-like JPEG (shading under grain), so that its size follows its pixels."""
    shade = Image.radial_gradient("L").resize((width, height)).convert("RGB")
    grain = Image.effect_noise((width, height), 40).convert("RGB")
    out = io.BytesIO()
    Image.blend(shade, grain, 0.35).save(out, "JPEG", quality=85)
    return out.getvalue()


@functools.cache
def small_photo() -> tuple[bytes, int, int]:
    """photo()'s narrow rendition, made as the pipeline makes it: bytes, width, height."""
    small = images.transcode_image(photo(), prepare.WEB_SMALL, prepare.SMALL_TARGET)
    return small.data, small.width, small.height


@functools.cache
def m4a(seconds: float = 1.0) -> bytes:
    """AAC in an MP4 container (audio/mp4), as the pipeline makes audio for the web."""
    out = io.BytesIO()
    with av.open(out, "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=22050)
        stream.layout = "mono"
        _tone(container, stream, seconds, 22050)
    return out.getvalue()


@functools.cache
def mp4(seconds: float = 1.0, width: int = 320, height: int = 240) -> bytes:
    """H.264 video with an AAC sound track (video/mp4), as the pipeline makes video."""
    out = io.BytesIO()
    with av.open(out, "w", format="mp4") as container:
        video = container.add_stream("libx264", rate=15)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        sound = container.add_stream("aac", rate=22050)
        sound.layout = "mono"
        for i in range(int(15 * seconds)):
            image = Image.new("RGB", (width, height), (i * 8 % 256, 80, 160))
            for packet in video.encode(av.VideoFrame.from_image(image)):
                container.mux(packet)
        for packet in video.encode(None):
            container.mux(packet)
        _tone(container, sound, seconds, 22050)
    return out.getvalue()


def _tone(
    container: av.container.OutputContainer, stream: av.AudioStream, seconds: float, rate: int
) -> None:
    total = int(rate * seconds)
    for start in range(0, total, 1024):
        n = min(1024, total - start)
        wave = array.array(
            "f", (0.2 * math.sin(2 * math.pi * 440 * i / rate) for i in range(start, start + n))
        )
        frame = av.AudioFrame(format="fltp", layout="mono", samples=n)
        frame.planes[0].update(wave.tobytes())
        frame.sample_rate, frame.pts, frame.time_base = rate, start, Fraction(1, rate)
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode(None):
        container.mux(packet)


@functools.cache
def pdf() -> bytes:
    """A one-page PDF."""
    out = io.BytesIO()
    Image.new("RGB", (200, 100), (255, 255, 255)).save(out, "PDF")
    return out.getvalue()


@functools.cache
def pkpass() -> bytes:
    """A Wallet pass: a zip of pass.json and its manifest (unsigned: the page only serves it)."""
    pass_json = json.dumps({"formatVersion": 1, "description": "Ticket", "serialNumber": "1"})
    manifest = json.dumps({"pass.json": "0" * 40})
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("pass.json", pass_json)
        archive.writestr("manifest.json", manifest)
    return out.getvalue()
