"""Image transcoding through the real Pillow pipeline.

Every input is made here, with Pillow and pillow-heif, from noise over gradients so that JPEG
and GIF sizes behave like camera photos. Every output is decoded again, independently, and
checked: type, dimensions, bytes against the target, metadata, frames and timing.
"""

from __future__ import annotations

import functools
import io
import random
import struct
import zlib

import pillow_heif
import pytest
from PIL import Image, ImageDraw, ImageSequence, PngImagePlugin

from mmsgate import errors
from mmsgate.codes import ErrorCode
from mmsgate.media import images
from mmsgate.profiles import DEFAULT, LEGACY, PROFILES, CarrierProfile

pillow_heif.register_heif_opener()  # to make HEIC inputs; images.py registers it for itself

ORIENTATION, MAKE, GPS_IFD = 0x0112, 0x010F, 0x8825
RED = (255, 0, 0)


# --- inputs made on the spot -----------------------------------------------------------------


def noise(size: tuple[int, int], seed: int = 1) -> Image.Image:
    """Colour noise from random bytes: nothing a codec can predict."""
    return Image.frombytes("RGB", size, random.Random(seed).randbytes(size[0] * size[1] * 3))


def photo(size: tuple[int, int], seed: int = 1) -> Image.Image:
    """A smooth gradient under fine colour grain: compresses like a camera photo."""
    shade = Image.radial_gradient("L").resize(size).convert("RGB")
    return Image.blend(shade, noise(size, seed), 0.3)


def encoded(image: Image.Image, kind: str, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, kind, **options)
    return out.getvalue()


@functools.cache
def camera_jpeg() -> bytes:
    """A 12-megapixel photo as a camera saves it (quality 92)."""
    return encoded(photo((4000, 3000)), "JPEG", quality=92)


def logo(size: tuple[int, int] = (600, 400)) -> Image.Image:
    """A blue rectangle with a red dot on a see-through background."""
    image = Image.new("RGBA", size, (0, 0, 0, 0))
    width, height = size
    image.paste((0, 90, 200, 255), (width // 6, height // 4, width * 5 // 6, height * 3 // 4))
    image.paste((*RED, 255), (width // 2 - 10, height // 2 - 10, width // 2 + 10, height // 2 + 10))
    return image


def clip_frames(count: int, size: tuple[int, int], *, noisy: bool) -> list[Image.Image]:
    """A square crossing a gradient; `noisy` frames are grain all over, so each costs bytes."""
    frames = []
    for index in range(count):
        frame = photo(size, seed=index) if noisy else photo(size, seed=0).filter_size_hint()
        x = index * (size[0] - 60) // max(1, count - 1)
        frame.paste(RED, (x, 20, x + 60, 80))
        frames.append(frame)
    return frames


def gif(frames: list[Image.Image], duration: int = 80, **options: object) -> bytes:
    return encoded(
        frames[0], "GIF", save_all=True, append_images=frames[1:], duration=duration, **options
    )


@functools.cache
def calm_gif() -> bytes:
    """40 frames of 800x600: a square over a still background, 80 ms each, looping."""
    return gif(clip_frames(40, (800, 600), noisy=False), loop=0)


@functools.cache
def noisy_gif() -> bytes:
    """40 frames of 800x600 grain, 80 ms each: several megabytes however it is cut."""
    return gif(clip_frames(40, (800, 600), noisy=True), loop=0)


def png_header(width: int, height: int, colour_type: int = 0) -> bytes:
    """A PNG declaring `width` x `height` with almost no pixel data behind it."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


# --- checking outputs ------------------------------------------------------------------------


def check(
    result: images.ImageResult, target: int, profile: CarrierProfile = DEFAULT
) -> Image.Image:
    """Decode the output afresh and hold it to what the result and the profile say."""
    image = Image.open(io.BytesIO(result.data))
    image.load()
    assert Image.MIME[image.format or ""] == result.content_type
    assert result.content_type in profile.image_types
    assert image.size == (result.width, result.height)
    assert len(result.data) <= target
    assert getattr(image, "n_frames", 1) == result.frames
    box = (profile.gif_max_side,) * 2 if result.frames > 1 else None
    box = box or (profile.image_max_width, profile.image_max_height)
    assert image.width <= box[0] and image.height <= box[1]
    assert not image.getexif()
    assert not {"exif", "icc_profile", "xmp", "comment"} & set(image.info)
    if image.format == "JPEG":
        assert result.quality in profile.jpeg_qualities
        assert not image.info.get("progressive")  # baseline, for handsets
    else:
        assert result.quality is None
    return image


def durations(image: Image.Image) -> list[int]:
    return [int(frame.info["duration"]) for frame in ImageSequence.Iterator(image)]


def alpha_at(image: Image.Image, xy: tuple[int, int]) -> int:
    pixel = image.convert("RGBA").getpixel(xy)
    assert isinstance(pixel, tuple)
    return int(pixel[3])


def rgb_at(image: Image.Image, xy: tuple[int, int]) -> tuple[int, int, int]:
    pixel = image.convert("RGB").getpixel(xy)
    assert isinstance(pixel, tuple)
    return int(pixel[0]), int(pixel[1]), int(pixel[2])


def reddish(colour: tuple[int, int, int]) -> bool:
    return colour[0] > 190 and colour[1] < 70 and colour[2] < 70
