"""Small real media files made by the tests themselves (Pillow and PyAV)."""

from __future__ import annotations

import functools
import io
from fractions import Fraction

import av
from PIL import Image


@functools.cache
def jpeg(width: int = 640, height: int = 480) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 40, 90)).save(out, "JPEG", quality=80)
    return out.getvalue()


@functools.cache
def png(width: int = 64, height: int = 64) -> bytes:
    out = io.BytesIO()
    Image.new("RGBA", (width, height), (0, 120, 255, 128)).save(out, "PNG")
    return out.getvalue()


@functools.cache
def mp3(seconds: float = 1.0) -> bytes:
    """A mono 440 Hz-ish MP3 of the given length."""
    out = io.BytesIO()
    with av.open(out, "w", format="mp3") as container:
        stream = container.add_stream("libmp3lame", rate=22050)
        stream.layout = "mono"
        samples = int(22050 * seconds)
        for start in range(0, samples, 1152):
            n = min(1152, samples - start)
            frame = av.AudioFrame(format="s16", layout="mono", samples=n)
            frame.planes[0].update(bytes((i * 7) % 256 for i in range(n * 2)))
            frame.sample_rate = 22050
            frame.pts = start
            frame.time_base = Fraction(1, 22050)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return out.getvalue()


@functools.cache
def mp4(seconds: float = 1.0, width: int = 320, height: int = 240) -> bytes:
    out = io.BytesIO()
    with av.open(out, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=15)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(int(15 * seconds)):
            image = Image.new("RGB", (width, height), (i * 8 % 256, 80, 160))
            for packet in stream.encode(av.VideoFrame.from_image(image)):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return out.getvalue()


VCARD = b"BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Ann Example\r\nTEL:+17745550100\r\nEND:VCARD\r\n"
ICAL = (
    b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//mmsgate//tests//EN\r\nBEGIN:VEVENT\r\n"
    b"UID:1@example\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:20260102T100000Z\r\n"
    b"SUMMARY:Invitation\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
)
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
