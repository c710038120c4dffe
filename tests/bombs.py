"""Images that are small in bytes and huge in work, built by the tests byte by byte: many tiny
frames drawn on a large canvas (GIF, APNG, animated WebP)."""

from __future__ import annotations

import io
import struct
import zlib

from PIL import Image

_GIF_FRAME = (
    b"\x21\xf9\x04\x00\x02\x00\x00\x00"  # graphic control extension: a 20 ms delay
    + b"\x2c{descriptor}"  # image descriptor, then one 1x1 pixel as LZW (min code size 2)
    + b"\x02\x02\x44\x01\x00"
)


def gif(
    frames: int,
    width: int = 7000,
    height: int = 7000,
    *,
    at: tuple[int, int] = (0, 0),
    screen: tuple[int, int] | None = None,
) -> bytes:
    """A GIF89a of `frames` 1x1 frames at `at` on a `width` x `height` canvas; `screen`
    gives a smaller logical screen that the frames then lie outside of."""
    screen_w, screen_h = screen or (width, height)
    head = b"GIF89a" + struct.pack("<HHBBB", screen_w, screen_h, 0x80, 0, 0)
    head += b"\x00\x00\x00\xff\xff\xff"  # a two-colour global table
    descriptor = struct.pack("<HHHHB", *at, 1, 1, 0)
    frame = _GIF_FRAME.replace(b"{descriptor}", descriptor)
    return head + frame * frames + b"\x3b"


def gif_filling(size_bytes: int, width: int = 7000, height: int = 7000) -> bytes:
    """The GIF with as many 1x1 frames as fit in `size_bytes`."""
    overhead = len(gif(0, width, height))
    per_frame = len(gif(1, width, height)) - overhead
    return gif((size_bytes - overhead) // per_frame, width, height)


def apng(frames: int, side: int) -> bytes:
    """An APNG whose first frame fills a `side` x `side` grey canvas and whose other frames
    are one pixel each."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        body = kind + payload
        return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body))

    def control(sequence: int, size: int) -> bytes:
        return chunk(b"fcTL", struct.pack(">IIIIIHHBB", sequence, size, size, 0, 0, 1, 50, 0, 0))

    picture = zlib.compress(b"\x00" * ((side + 1) * side))  # filter byte 0, then the row
    parts = [
        chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)),
        chunk(b"acTL", struct.pack(">II", frames, 0)),
        control(0, side),
        chunk(b"IDAT", picture),
    ]
    sequence = 1
    for _ in range(frames - 1):
        parts.append(control(sequence, 1))
        parts.append(chunk(b"fdAT", struct.pack(">I", sequence + 1) + zlib.compress(b"\x00\x00")))
        sequence += 2
    return b"\x89PNG\r\n\x1a\n" + b"".join(parts) + chunk(b"IEND", b"")


def webp(frames: int, side: int) -> bytes:
    """An animated WebP of `frames` 16x16 frames on a `side` x `side` canvas: Pillow's own
    two-frame file with its canvas widened and its last frame repeated."""
    tiles = [Image.new("RGB", (16, 16), colour) for colour in ((200, 0, 0), (0, 0, 200))]
    out = io.BytesIO()
    tiles[0].save(out, "WEBP", save_all=True, append_images=tiles[1:], duration=50, lossless=True)
    data = out.getvalue()
    chunks, at = [], 12
    while at < len(data):
        length = struct.unpack_from("<I", data, at + 4)[0]
        chunks.append(data[at : at + 8 + length + (length & 1)])
        at += 8 + length + (length & 1)
    head = [c for c in chunks if c[:4] != b"ANMF"]
    canvas = (side - 1).to_bytes(3, "little") * 2
    head = [c[:12] + canvas + c[18:] if c[:4] == b"VP8X" else c for c in head]
    frame = [c for c in chunks if c[:4] == b"ANMF"][-1]
    body = b"WEBP" + b"".join(head) + frame * frames
    return b"RIFF" + struct.pack("<I", len(body)) + body
