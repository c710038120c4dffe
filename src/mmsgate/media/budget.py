"""How much work an image may cost: pixels, frames × canvas, and seconds of CPU.

Decoding an animation costs about its frames times its canvas: a GIF, APNG or animated WebP
decoder (Pillow's, a browser's) composes every frame onto the whole canvas, however small the
frame. A 46 KB GIF of 2,000 1×1 frames on a 7000×7000 canvas is 98 billion pixels of work,
minutes of CPU. So the frames and the canvas are read from the container's own structure
(GIF blocks, PNG chunks, RIFF chunks), which costs a pass over the bytes and no decoding,
and an image over budget is refused before its first pixel is decoded.

The budget, WORK_PIXELS, is what a real animated MMS needs with room to spare: a 640×480 GIF
of a few hundred frames (600 KB) is about 100 million; 200 million is also a 1080p clip of 90
frames. Decoding it costs Pillow under a second (about 3 ns a pixel). Each frame also costs
Pillow some 25 µs before any pixel, about as much as FRAME_PIXELS pixels, so a file of tens
of thousands of tiny frames is over budget too.

What the model misses (a slow path in a decoder) the CPU limit catches: the work checks
`CpuLimit.check` between frames and attempts, so it stops within one frame of the limit.
Thread CPU time rather than wall time, so a busy machine never makes a good image fail.
"""

from __future__ import annotations

import dataclasses
import struct
import time

from mmsgate import errors

MAX_PIXELS = 50_000_000
"""Images above this many pixels are refused before decoding (a 12 MP photo is far below)."""
WORK_PIXELS = 200_000_000
"""Frames × (canvas pixels + FRAME_PIXELS) above this are refused before decoding."""
FRAME_PIXELS = 8192
INSPECT_CPU_SECONDS = 10.0
"""CPU seconds checking one image at accept time may take (a budget-sized GIF takes ~1)."""
TRANSCODE_CPU_SECONDS = 30.0
"""CPU seconds transcoding one image for one profile may take (a few are usual)."""

_GIF_BLOCK_IMAGE, _GIF_BLOCK_EXTENSION, _GIF_TRAILER = 0x2C, 0x21, 0x3B
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class OverBudget(errors.MmsgateError):
    """An image would cost more than its budget; the message says what and how much."""


@dataclasses.dataclass(frozen=True, slots=True)
class Layout:
    """What an image's container says about it: frames, and the canvas they are drawn on."""

    frames: int
    width: int
    height: int

    @property
    def work(self) -> int:
        return self.frames * (self.width * self.height + FRAME_PIXELS)


def check(data: bytes, size: tuple[int, int]) -> Layout:
    """The layout of `data`, whose decoder's header gives `size`; OverBudget when it is too
    big to decode."""
    found = read_layout(data) or Layout(1, *size)
    width, height = max(found.width, size[0]), max(found.height, size[1])
    layout = Layout(found.frames, width, height)
    if width * height > MAX_PIXELS:
        raise OverBudget(f"{width}x{height} is more than {MAX_PIXELS} pixels")
    if layout.work > WORK_PIXELS:
        raise OverBudget(
            f"{layout.frames} frames of {width}x{height} are more than "
            f"{WORK_PIXELS} pixels to decode"
        )
    return layout


@dataclasses.dataclass(frozen=True, slots=True)
class CpuLimit:
    """Seconds of the calling thread's CPU that one piece of image work may use."""

    seconds: float
    started: float = dataclasses.field(default_factory=time.thread_time)

    def check(self) -> None:
        """Raise OverBudget once the work has used more than its seconds."""
        if time.thread_time() - self.started > self.seconds:
            raise OverBudget(f"decoding it takes more than {self.seconds:g} s of CPU")


def read_layout(data: bytes) -> Layout | None:
    """Frames and canvas of a GIF, PNG (APNG) or WebP; None for other formats, and for
    headers too broken to read (the decoder then says the file is corrupt)."""
    try:
        if data.startswith((b"GIF87a", b"GIF89a")):
            return _gif_layout(data)
        if data.startswith(_PNG_SIGNATURE):
            return _png_layout(data)
        if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
            return _webp_layout(data)
    except struct.error:  # the first header itself is cut short
        return None
    return None


def _gif_layout(data: bytes) -> Layout:
    """Count image descriptors (GIF89a §20); the canvas grows to every frame's extent, as
    Pillow and browsers draw a frame past the logical screen by enlarging it. Read as Pillow
    reads: bytes that start no block are skipped, a missing trailer ends the file."""
    width, height, flags = struct.unpack_from("<HHB", data, 6)
    at = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
    frames = 0
    while at < len(data):
        block, at = data[at], at + 1
        if block == _GIF_TRAILER:
            break
        if block == _GIF_BLOCK_EXTENSION:
            at = _gif_sub_blocks(data, at + 1)
        elif block == _GIF_BLOCK_IMAGE:
            if at + 9 > len(data):
                break  # cut short inside a descriptor: the frames before it are the file
            left, top, w, h, local = struct.unpack_from("<HHHHB", data, at)
            width, height = max(width, left + w), max(height, top + h)
            at += 9 + (3 << ((local & 7) + 1) if local & 0x80 else 0)
            at = _gif_sub_blocks(data, at + 1)  # past the LZW minimum code size
            frames += 1
    return Layout(frames, width, height)


def _gif_sub_blocks(data: bytes, at: int) -> int:
    """The offset past a chain of data sub-blocks (each a length byte, then that many)."""
    while at < len(data):
        length = data[at]
        at += 1 + length
        if length == 0:
            break
    return at


def _png_layout(data: bytes) -> Layout:
    """IHDR gives the canvas; an APNG's acTL announces its frames and each has an fcTL
    (APNG spec §4): the larger count, so a file cannot understate what it holds."""
    width, height = struct.unpack_from(">II", data, 16)
    announced = controls = 0
    at = len(_PNG_SIGNATURE)
    while at + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, at)
        if kind == b"acTL" and at + 12 <= len(data):
            announced = struct.unpack_from(">I", data, at + 8)[0]
        elif kind == b"fcTL":
            controls += 1
        elif kind == b"IEND":
            break
        at += 12 + length
    return Layout(max(1, announced, controls), width, height)


def _webp_layout(data: bytes) -> Layout | None:
    """An extended WebP's VP8X chunk gives the canvas; each ANMF chunk is one frame (WebP
    container spec, "Extended file format"). A simple WebP is one frame: None, so the
    decoder's header size stands."""
    if data[12:16] != b"VP8X":
        return None
    width = int.from_bytes(data[24:27], "little") + 1
    height = int.from_bytes(data[27:30], "little") + 1
    frames, at = 0, 12
    while at + 8 <= len(data):
        kind, length = struct.unpack_from("<4sI", data, at)
        frames += kind == b"ANMF"
        at += 8 + length + (length & 1)  # chunks are padded to an even size
    return Layout(max(1, frames), width, height)
