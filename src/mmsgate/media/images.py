"""Transcode one image, still or animated, to fit a carrier profile and a byte target.

Always re-encoded, so no EXIF (GPS included), comment or XMP ever reaches a handset; the
camera's orientation is applied first. Big JPEGs decode at a reduced DCT scale (draft mode)
near the final size, which costs a fraction of a full decode. Stills go to JPEG down a
quality ladder, then smaller, until they fit; PNG survives only for real transparency or an
already small file. Animated GIF and WebP stay animated GIFs, shrinking by frame rate, colours
and size in turn, and only as a last resort become a still of their first frame.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Iterator

import pillow_heif
from PIL import Image, ImageCms, ImageOps, ImageSequence, UnidentifiedImageError

from mmsgate import errors
from mmsgate.codes import ErrorCode
from mmsgate.media.inspect import MAX_PIXELS
from mmsgate.profiles import CarrierProfile

pillow_heif.register_heif_opener()

SCALE_STEP = 0.75
MIN_SIDE = 120  # below this a photo says nothing: report that it cannot fit instead
MAX_FRAMES = 300  # more are thinned on reading, durations summed, so the timing holds
# Animated attempts, mildest first: (keep every n-th frame, palette colours, scale).
ANIMATION_STEPS = (
    (1, 256, 1.0),
    (2, 256, 1.0),
    (2, 128, 1.0),
    (2, 64, 0.75),
    (3, 64, 0.75),
    (3, 32, 0.5),
    (4, 32, 0.5),
)
_SRGB = ImageCms.createProfile("sRGB")
_METADATA = ("exif", "icc_profile", "xmp", "comment", "photoshop", "XML:com.adobe.xmp")
_ERRORS = (OSError, ValueError, SyntaxError, EOFError, IndexError, UnidentifiedImageError)


@dataclasses.dataclass(frozen=True, slots=True)
class ImageResult:
    """One transcoded image and what it became."""

    data: bytes
    content_type: str
    width: int
    height: int
    quality: int | None
    frames: int
    dropped: tuple[str, ...]


class ImageTooBig(errors.MmsgateError):
    """The image cannot fit the byte target even at the smallest size and quality tried."""


def transcode_image(data: bytes, profile: CarrierProfile, target_bytes: int) -> ImageResult:
    """The image in one of the profile's types, within its dimensions and `target_bytes`.

    Raises MediaError (E341) for an unreadable image, MediaError (E331) past 50 megapixels,
    ImageTooBig when nothing tried fits.
    """
    try:
        with _open(data) as image:
            dropped: tuple[str, ...] = ("metadata",) if _has_metadata(image) else ()
            if getattr(image, "n_frames", 1) > 1 and "image/gif" in profile.image_types:
                animated = _animated(image, profile, target_bytes)
                if animated is not None:
                    return dataclasses.replace(animated, dropped=dropped + animated.dropped)
                image.seek(0)
                dropped += ("animation",)
            return _still(image, profile, target_bytes, dropped, len(data))
    except Image.DecompressionBombError:
        raise _too_many_pixels("far more than 50 megapixels") from None
    except _ERRORS as exc:
        raise _corrupt(str(exc) or type(exc).__name__) from None


def _open(data: bytes) -> Image.Image:
    if not data:
        raise _corrupt("the file is empty")
    image = Image.open(io.BytesIO(data))
    width, height = image.size
    # The header gives the size: refuse before decoding would allocate it.
    if width * height > MAX_PIXELS:
        image.close()
        raise _too_many_pixels(f"{width}x{height} is more than {MAX_PIXELS} pixels")
    return image


def _corrupt(why: str) -> errors.MediaError:
    return errors.MediaError(ErrorCode.IMAGE_CORRUPT, f"Image file corrupted: {why}")


def _too_many_pixels(why: str) -> errors.MediaError:
    return errors.MediaError(ErrorCode.IMAGE_TOO_BIG, f"Image too big: {why}")


def _has_metadata(image: Image.Image) -> bool:
    return any(key in image.info for key in _METADATA) or bool(image.getexif())


# --- stills -------------------------------------------------------------------------------


def _still(
    image: Image.Image,
    profile: CarrierProfile,
    target: int,
    dropped: tuple[str, ...],
    source_bytes: int,
) -> ImageResult:
    source_format = image.format
    picture = _decoded(image, profile)
    if _transparent(picture):
        kept = _transparent_still(picture, profile, target, dropped)
        if kept is not None:
            return kept
        picture = _flattened(picture)
        dropped += ("transparency",)
    elif source_format in ("PNG", "GIF") and source_bytes <= target:
        # An already small lossless image (a logo, a chart) keeps its crisp edges.
        kept = _lossless(picture, profile, target, dropped, source_format)
        if kept is not None:
            return kept
    return _jpeg(picture.convert("RGB"), target, profile, dropped)


def _decoded(image: Image.Image, profile: CarrierProfile) -> Image.Image:
    """Decode upright, in a mode JPEG/PNG can hold, scaled into the profile's box."""
    box = (profile.image_max_width, profile.image_max_height)
    if image.format == "JPEG":
        # DCT scaling: decode at 1/2, 1/4 or 1/8 while staying at least the box's size
        # (a square request, as orientation may still swap the sides).
        side = max(box)
        image.draft("RGB", (side, side))
    icc = image.info.get("icc_profile")
    picture = ImageOps.exif_transpose(image) or image
    picture = _normal_mode(picture)
    picture.thumbnail(box, Image.Resampling.LANCZOS, reducing_gap=2.0)
    if icc and picture.mode in ("RGB", "RGBA"):
        picture = _to_srgb(picture, icc)
    # Pillow carries info (comment, ICC profile) into the saved file: nothing of it may go.
    picture.info = {}
    return picture


def _to_srgb(image: Image.Image, icc: bytes) -> Image.Image:
    """Colours from the embedded profile (a phone's Display P3) into sRGB, as the ICC
    profile itself is dropped; an unreadable profile leaves the pixels as they are."""
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        converted = ImageCms.profileToProfile(image, source, _SRGB, outputMode=image.mode)
    except (ImageCms.PyCMSError, OSError, ValueError):
        return image
    return converted or image


def _normal_mode(image: Image.Image) -> Image.Image:
    if image.mode in ("RGB", "RGBA", "L"):
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        return image.point(lambda v: v / 256).convert("L")  # 16-bit grey to 8-bit
    if image.mode == "CMYK":
        return image.convert("RGB")
    has_alpha = "A" in image.mode or "transparency" in image.info
    return image.convert("RGBA" if has_alpha else "RGB")


def _transparent(image: Image.Image) -> bool:
    """Whether any pixel is not fully opaque (an alpha channel of all 255 is no reason)."""
    if image.mode != "RGBA":
        return False
    low, _high = image.getchannel("A").getextrema()
    return isinstance(low, int) and low < 255


def _flattened(image: Image.Image) -> Image.Image:
    white = Image.new("RGB", image.size, (255, 255, 255))
    white.paste(image, mask=image.getchannel("A"))
    return white


def _transparent_still(
    image: Image.Image, profile: CarrierProfile, target: int, dropped: tuple[str, ...]
) -> ImageResult | None:
    """PNG where the profile takes it, else GIF (one transparent palette entry), smaller
    until it fits; None when it cannot, and the caller flattens it to JPEG."""
    # GIF only where PNG is not taken: its 256 colours and on/off alpha suit logos, not photos.
    kinds = [k for k in ("PNG", "GIF") if f"image/{k.lower()}" in profile.image_types][:1]
    for kind in kinds:
        for picture in _shrinking(image, steps=3):
            data = _encode(picture if kind == "PNG" else _paletted(picture, 256), kind)
            if len(data) <= target:
                return _result(data, kind, picture, None, 1, dropped)
    return None


def _lossless(
    image: Image.Image,
    profile: CarrierProfile,
    target: int,
    dropped: tuple[str, ...],
    kind: str,
) -> ImageResult | None:
    if f"image/{kind.lower()}" not in profile.image_types:
        return None
    picture = image if kind == "PNG" else _paletted(image, 256)
    data = _encode(picture, kind)
    return _result(data, kind, image, None, 1, dropped) if len(data) <= target else None


def _jpeg(
    image: Image.Image, target: int, profile: CarrierProfile, dropped: tuple[str, ...]
) -> ImageResult:
    for picture in _shrinking(image, steps=12):
        for quality in profile.jpeg_qualities:
            data = _encode(picture, "JPEG", quality=quality)
            if len(data) <= target:
                return _result(data, "JPEG", picture, quality, 1, dropped)
    raise ImageTooBig(
        f"{image.width}x{image.height} does not fit {target} bytes even at "
        f"{MIN_SIDE} px and quality {min(profile.jpeg_qualities)}"
    )


def _shrinking(image: Image.Image, steps: int) -> Iterator[Image.Image]:
    """The image, then smaller by SCALE_STEP each time, down to MIN_SIDE on its short side."""
    picture = image
    for _ in range(steps):
        yield picture
        width, height = (round(side * SCALE_STEP) for side in picture.size)
        if min(width, height) < MIN_SIDE:
            return
        picture = image.resize((width, height), Image.Resampling.LANCZOS, reducing_gap=2.0)


def _paletted(image: Image.Image, colours: int) -> Image.Image:
    """A palette image for GIF. With alpha, the last entry is the transparent one: GIF has
    only on/off transparency, so pixels under half opacity become see-through."""
    if image.mode != "RGBA":
        return image.convert("RGB").quantize(colours, Image.Quantize.MEDIANCUT)
    paletted = image.convert("RGB").quantize(colours - 1, Image.Quantize.FASTOCTREE)
    clear = image.getchannel("A").point(lambda a: 255 if a < 128 else 0)
    paletted.paste(colours - 1, mask=clear)
    paletted.info["transparency"] = colours - 1
    return paletted


def _encode(image: Image.Image, kind: str, quality: int | None = None) -> bytes:
    out = io.BytesIO()
    if kind == "JPEG":
        # Baseline, not progressive: some MMS handsets show progressive JPEG badly or not at all.
        image.save(out, "JPEG", quality=quality, optimize=False, progressive=False)
    elif kind == "PNG":
        image.save(out, "PNG", optimize=False, compress_level=9)
    else:
        image.save(out, "GIF", optimize=True)
    return out.getvalue()


def _result(
    data: bytes,
    kind: str,
    image: Image.Image,
    quality: int | None,
    frames: int,
    dropped: tuple[str, ...],
) -> ImageResult:
    content_type = f"image/{kind.lower()}"
    return ImageResult(data, content_type, image.width, image.height, quality, frames, dropped)


# --- animations ---------------------------------------------------------------------------


def _animated(image: Image.Image, profile: CarrierProfile, target: int) -> ImageResult | None:
    """An animated GIF that fits, shrinking step by step; None when none does."""
    frames, durations, thinned = _frames(image, profile.gif_max_side)
    loop = int(image.info.get("loop", 0))
    for every, colours, scale in ANIMATION_STEPS:
        step = every * thinned
        kept, times = _thin(frames, durations, every)
        if scale < 1.0:
            size = (max(1, round(kept[0].width * scale)), max(1, round(kept[0].height * scale)))
            kept = [f.resize(size, Image.Resampling.LANCZOS) for f in kept]
        data = _save_animation(kept, times, colours, loop)
        if len(data) <= target:
            dropped = _animation_losses(len(frames) * thinned, len(kept), step, colours)
            return _result(data, "GIF", kept[0], None, len(kept), dropped)
    return None


def _frames(image: Image.Image, max_side: int) -> tuple[list[Image.Image], list[int], int]:
    """Every frame as RGBA scaled into `max_side`, its duration, and the thinning applied."""
    count = getattr(image, "n_frames", 1)
    thinning = -(-count // MAX_FRAMES)  # ceiling: keep at most MAX_FRAMES
    scale = min(1.0, max_side / max(image.size))
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    frames: list[Image.Image] = []
    durations: list[int] = []
    for index, frame in enumerate(ImageSequence.Iterator(image)):
        duration = int(frame.info.get("duration", 100) or 100)
        if index % thinning:
            durations[-1] += duration
            continue
        frames.append(frame.convert("RGBA").resize(size, Image.Resampling.LANCZOS))
        durations.append(duration)
    return frames, durations, thinning


def _thin(
    frames: list[Image.Image], durations: list[int], every: int
) -> tuple[list[Image.Image], list[int]]:
    """Every `every`-th frame, each shown for the frames it replaces: total time is kept."""
    kept = frames[::every]
    times = [sum(durations[i : i + every]) for i in range(0, len(durations), every)]
    return kept, times


def _save_animation(
    frames: list[Image.Image], durations: list[int], colours: int, loop: int
) -> bytes:
    paletted = [_paletted(frame, colours) for frame in frames]
    out = io.BytesIO()
    paletted[0].save(
        out,
        "GIF",
        save_all=True,
        append_images=paletted[1:],
        duration=durations,
        loop=loop,
        disposal=2,
        optimize=True,
    )
    return out.getvalue()


def _animation_losses(source_frames: int, kept: int, step: int, colours: int) -> tuple[str, ...]:
    losses = []
    if step > 1:
        losses.append(f"frames {source_frames}→{kept}")
    if colours < 256:
        losses.append(f"colours 256→{colours}")
    return tuple(losses)
