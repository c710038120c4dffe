"""Transcode one image, still or animated, to fit a carrier profile and a byte target.

CPU work, synchronous and pure: `prepare` runs `transcode_image` in a worker thread. Its
work is bounded before decoding (frames × canvas, see `budget`) and while it runs (CPU
seconds, checked between frames and attempts).

    animated ──▶ GIF: fewer frames, then colours, then pixels ─────────▶ done
       │ still, or no GIF fits (the first frame then)
    upright, sRGB, in the box ─▶ see-through: PNG (or GIF), smaller ─▶ done
       │ opaque, or no PNG fits (flattened on white then)
    JPEG down the quality ladder, then smaller ──────────────────────▶ done, or ImageTooBig

Everything is re-encoded, so no EXIF (GPS included), comment, XMP or text chunk reaches a
handset; the camera's orientation is applied first. Every loop has a fixed bound.
"""

from __future__ import annotations

import dataclasses
import io
import math
import struct
from collections.abc import Sequence

import PIL
import pillow_heif
from PIL import ExifTags, Image, ImageCms, ImageFile, ImageOps, ImageSequence

from mmsgate import errors
from mmsgate.codes import ErrorCode
from mmsgate.media import budget
from mmsgate.media.budget import MAX_PIXELS
from mmsgate.media.budget import TRANSCODE_CPU_SECONDS as CPU_SECONDS
from mmsgate.profiles import CarrierProfile

pillow_heif.register_heif_opener()

MIN_SIDE = 120  # stills are not shrunk below this shorter side: ImageTooBig instead
MAX_FRAMES = 500  # longer animations are thinned on reading, durations summed
# Kept frames x their pixels: ~100 MB of RGBA at most; more frames are thinned on reading.
_FRAME_PIXELS = 25_000_000
# Animated attempts, mildest first, as (keep every n-th frame, palette colours, scale): frame
# rate goes first, colours next, size last.
_ANIMATION_STEPS = (
    (1, 256, 1.0), (2, 256, 1.0), (2, 128, 1.0), (2, 64, 1.0),
    (2, 32, 1.0), (2, 32, 0.75), (4, 32, 0.75), (4, 32, 0.5),
)  # fmt: skip
_LOSSLESS_TRIES = 3  # PNG/GIF stills: sizes tried before flattening to JPEG
_SHRINKS = 30  # JPEG sizes tried; each is at most 0.9 of the last, so MIN_SIDE ends it sooner
_STRIPS, _STRIP_ROWS = 12, 16  # JPEG size estimate: bands of whole 4:2:0 MCU rows
_CLOSE = 1.08  # a quality estimated this near the target is still worth one encode
_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF", "HEIF")  # no EPS (Ghostscript) & co.
_ANIMATED = frozenset({"GIF", "WEBP", "PNG"})  # an MPO's second frame is a photo, not motion
# EXIF tags that say who, where, when or with what; a lone Orientation is applied, not lost.
_PRIVATE_TAGS = frozenset(
    {0x010E, 0x010F, 0x0110, 0x0131, 0x0132, 0x013B, 0x02BC, 0x8298, 0x83BB, 0x8769, 0x8825}
)
_PRIVATE_KEYS = ("xmp", "XML:com.adobe.xmp", "comment", "photoshop")
_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError, struct.error)
_SRGB = ImageCms.createProfile("sRGB")
_CLEAR_MASK = [255] * 128 + [0] * 128  # alpha under half: a GIF's see-through palette entry


@dataclasses.dataclass(frozen=True, slots=True)
class ImageResult:
    """One transcoded image, what it became and what was lost on the way."""

    data: bytes
    content_type: str
    width: int
    height: int
    quality: int | None
    frames: int
    dropped: tuple[str, ...]


class ImageTooBig(errors.MmsgateError):
    """The image cannot fit the byte target even at the smallest size and quality tried."""


def transcode_image(
    data: bytes, profile: CarrierProfile, target_bytes: int, cpu_seconds: float = CPU_SECONDS
) -> ImageResult:
    """The image as one of `profile.image_types`, inside its box and `target_bytes`.

    Raises MediaError E341 for an unreadable image, E331 past MAX_PIXELS or the work budget
    (both before decoding) or past `cpu_seconds`, and ImageTooBig when even the smallest
    attempt is over `target_bytes`.
    """
    limit = budget.CpuLimit(cpu_seconds)
    try:
        with _open(data) as image:
            # The headers give the size and frames: refuse before decoding would spend them.
            layout = budget.check(data, image.size)
            dropped: tuple[str, ...] = ("metadata",) if _has_metadata(image) else ()
            if image.format in _ANIMATED and getattr(image, "is_animated", False):
                animated = _animated(image, layout.frames, profile, target_bytes, limit)
                if animated is not None:
                    return dataclasses.replace(animated, dropped=dropped + animated.dropped)
                image.seek(0)
                dropped += ("animation",)
            return _still(image, profile, target_bytes, dropped, len(data), limit)
    except budget.OverBudget as exc:
        raise _too_many_pixels(str(exc)) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        # Pillow's own check, in open(), for sizes far past ours.
        raise _too_many_pixels(f"more than {MAX_PIXELS} pixels") from None
    except _ERRORS as exc:
        raise _corrupt(f"it does not decode ({exc or type(exc).__name__})") from None


def _open(data: bytes) -> ImageFile.ImageFile:
    if not data:
        raise _corrupt("the file is empty")
    try:
        image = Image.open(io.BytesIO(data), formats=_FORMATS)
    except PIL.UnidentifiedImageError:
        raise _corrupt("not a JPEG, PNG, GIF, WebP, BMP, TIFF or HEIC image") from None
    return image


def _corrupt(why: str) -> errors.MediaError:
    return errors.MediaError(ErrorCode.IMAGE_CORRUPT, f"Image file corrupted: {why}")


def _too_many_pixels(why: str) -> errors.MediaError:
    return errors.MediaError(ErrorCode.IMAGE_TOO_BIG, f"Image too big: {why}")


def _has_metadata(image: Image.Image) -> bool:
    """Whether the file says who, where or when: EXIF, XMP, comments, PNG text chunks."""
    if any(key in image.info for key in _PRIVATE_KEYS):
        return True
    if image.format == "PNG" and any(isinstance(value, str) for value in image.info.values()):
        return True  # tEXt / iTXt chunks, the only string values Pillow reads from a PNG
    return not _PRIVATE_TAGS.isdisjoint(image.getexif())


def _fit(size: tuple[int, int], box: tuple[int, int]) -> tuple[int, int]:
    """`size` scaled to fit inside `box`, aspect ratio kept, never enlarged."""
    return _scaled(size, min(1.0, box[0] / size[0], box[1] / size[1]))


def _scaled(size: tuple[int, int], scale: float) -> tuple[int, int]:
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def _result(
    data: bytes, kind: str, size: tuple[int, int], quality: int | None, dropped: tuple[str, ...]
) -> ImageResult:
    frames = 1
    if kind == "GIF":
        with Image.open(io.BytesIO(data)) as written:  # Pillow merges identical frames
            frames = int(getattr(written, "n_frames", 1))
    return ImageResult(data, f"image/{kind.lower()}", *size, quality, frames, dropped)


# --- stills -------------------------------------------------------------------------------


def _still(
    image: ImageFile.ImageFile,
    profile: CarrierProfile,
    target: int,
    dropped: tuple[str, ...],
    source_bytes: int,
    limit: budget.CpuLimit,
) -> ImageResult:
    source_format, source_sides = image.format or "", sorted(image.size)
    picture = _upright(image, profile)
    if _transparent(picture):
        kept = _transparent_still(picture, source_format, profile, target, dropped, limit)
        if kept is not None:
            return kept
        picture = _flattened(picture)
        dropped += ("transparency",)
    elif source_format == "PNG" and source_bytes <= target and sorted(picture.size) == source_sides:
        # A PNG already small and in the box (a chart, a screenshot) keeps its crisp edges;
        # re-encoded all the same, as text chunks and EXIF must not pass.
        data = _png(picture) if "image/png" in profile.image_types else b""
        if data and len(data) <= target:
            return _result(data, "PNG", picture.size, None, dropped)
    rgb = picture if picture.mode == "RGB" else picture.convert("RGB")
    return _jpeg(rgb, profile, target, dropped, limit)


def _upright(image: ImageFile.ImageFile, profile: CarrierProfile) -> Image.Image:
    """Decoded upright, in sRGB, in RGB, RGBA or L, scaled into the profile's box."""
    box = (profile.image_max_width, profile.image_max_height)
    turned = image.getexif().get(ExifTags.Base.Orientation, 1) in (5, 6, 7, 8)
    if image.format in ("JPEG", "MPO"):
        # DCT scaling decodes at 1/2, 1/4 or 1/8 while staying at least the final size: a
        # 12 MP photo for a 1920 box decodes at 2000x1500 in about half the time.
        width, height = _fit(image.size[::-1] if turned else image.size, box)
        image.draft("RGB", (height, width) if turned else (width, height))
    icc = image.info.get("icc_profile")
    picture = ImageOps.exif_transpose(image)
    if icc:
        picture = _to_srgb(picture, icc)
    picture = _normal_mode(picture)
    size = _fit(picture.size, box)
    if size != picture.size:
        # reducing_gap: a cheap box reduction first where the factor is large, then Lanczos.
        picture = picture.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    # Pillow writes some info keys (comment, ICC profile) into saved files: none may pass.
    picture.info = {}
    return picture


def _to_srgb(image: Image.Image, icc: bytes) -> Image.Image:
    """Colours from the embedded profile (a phone's Display P3, a printer's CMYK) into sRGB,
    as the profile itself is not kept; an unusable profile leaves the pixels as they are."""
    if image.mode not in ("RGB", "RGBA", "CMYK"):
        return image
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if "srgb" in ImageCms.getProfileDescription(source).lower():
            return image
        mode = "RGBA" if image.mode == "RGBA" else "RGB"
        return ImageCms.profileToProfile(image, source, _SRGB, outputMode=mode) or image
    except (ImageCms.PyCMSError, OSError, ValueError):
        return image


def _normal_mode(image: Image.Image) -> Image.Image:
    """RGBA where there is any alpha, else RGB or L: the modes the encoders below take."""
    if "A" in image.mode or "a" in image.mode or "transparency" in image.info:
        return image if image.mode == "RGBA" else image.convert("RGBA")
    if image.mode in ("RGB", "L"):
        return image
    if image.mode.startswith("I"):
        return image.point(lambda value: value / 256).convert("L")  # 16-bit grey: top byte
    return image.convert("L" if image.mode == "1" else "RGB")  # P, CMYK, YCbCr, ...


def _transparent(image: Image.Image) -> bool:
    """Whether any pixel is see-through: an alpha channel all at 255 is no reason to keep it."""
    if image.mode != "RGBA":
        return False
    low, _high = image.getchannel("A").getextrema()
    return isinstance(low, int) and low < 255


def _flattened(image: Image.Image) -> Image.Image:
    white = Image.new("RGB", image.size, (255, 255, 255))
    white.paste(image, mask=image.getchannel("A"))
    return white


def _transparent_still(
    picture: Image.Image,
    source_format: str,
    profile: CarrierProfile,
    target: int,
    dropped: tuple[str, ...],
    limit: budget.CpuLimit,
) -> ImageResult | None:
    """PNG, or GIF for a GIF or where PNG is not taken (legacy handsets): GIF's on/off
    transparency beats a white box. Smaller until it fits; None to flatten it to JPEG."""
    order = ("GIF", "PNG") if source_format == "GIF" else ("PNG", "GIF")
    kind = next((k for k in order if f"image/{k.lower()}" in profile.image_types), None)
    if kind is None:
        return None
    if kind == "GIF" and picture.getcolors(255) is None:
        dropped += ("colours →255",)
    # Below half the sides, the whole picture flattened on white shows more than a stamp.
    floor, current = max(MIN_SIDE, min(picture.size) // 2), picture
    for _ in range(_LOSSLESS_TRIES):
        limit.check()
        data = _png(current) if kind == "PNG" else _gif([current], None, 256, None)
        if len(data) <= target:
            return _result(data, kind, current.size, None, dropped)
        size = _smaller(current.size, len(data), target, floor)
        if size is None:
            return None
        current = picture.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    return None


def _smaller(
    size: tuple[int, int], size_bytes: int, target: int, floor: int = MIN_SIDE
) -> tuple[int, int] | None:
    """The next size to try: bytes go roughly with area, so jump near where they would fit,
    between 0.5 and 0.9 of the sides; None once the shorter side is down to `floor`."""
    short = min(size)
    if short <= floor:
        return None
    scale = min(0.9, max(0.5, math.sqrt(target / size_bytes) * 0.95, floor / short))
    return _scaled(size, scale)


def _jpeg(
    picture: Image.Image,
    profile: CarrierProfile,
    target: int,
    dropped: tuple[str, ...],
    limit: budget.CpuLimit,
) -> ImageResult:
    qualities = sorted(set(profile.jpeg_qualities), reverse=True)
    current, smallest = picture, 0
    for _ in range(_SHRINKS):
        limit.check()
        found, smallest = _best_quality(current, qualities, target)
        if found is not None:
            return _result(found[0], "JPEG", current.size, found[1], dropped)
        size = _smaller(current.size, smallest, target)
        if size is None:
            break
        current = picture.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    raise ImageTooBig(
        f"even {current.width}x{current.height} at JPEG quality {qualities[-1]} is "
        f"{smallest} bytes, over the {target} allowed"
    )


def _best_quality(
    picture: Image.Image, qualities: Sequence[int], target: int
) -> tuple[tuple[bytes, int] | None, int]:
    """The highest quality on the ladder that fits, as (bytes, quality), and the size at the
    lowest quality when none does. Starts where the estimate points, so usually one encode."""
    guesses = _estimated_sizes(picture, qualities)
    start = next((i for i, g in enumerate(guesses) if g <= target), len(qualities) - 1)
    for index in range(start, len(qualities)):
        data = _jpeg_bytes(picture, qualities[index])
        if len(data) > target:
            continue
        if index == start and index > 0 and guesses[index - 1] <= target * _CLOSE:
            higher = _jpeg_bytes(picture, qualities[index - 1])  # the estimate may be pessimistic
            if len(higher) <= target:
                return (higher, qualities[index - 1]), len(data)
        return (data, qualities[index]), len(data)
    return None, len(data)


def _estimated_sizes(picture: Image.Image, qualities: Sequence[int]) -> list[float]:
    """JPEG bytes at each quality, from evenly spread bands of whole rows encoded alone: the
    same pixels, so the same statistics, at a sixth of the cost. Small pictures: no guess."""
    rows = _STRIPS * _STRIP_ROWS
    if picture.height < 4 * rows:
        return [0.0] * len(qualities)
    sample = Image.new(picture.mode, (picture.width, rows))
    pitch = picture.height // _STRIPS
    for band in range(_STRIPS):
        top = (band * pitch + pitch // 2) // _STRIP_ROWS * _STRIP_ROWS
        strip = picture.crop((0, top, picture.width, top + _STRIP_ROWS))
        sample.paste(strip, (0, band * _STRIP_ROWS))
    factor = picture.height / rows
    return [len(_jpeg_bytes(sample, quality)) * factor for quality in qualities]


def _jpeg_bytes(picture: Image.Image, quality: int) -> bytes:
    # Baseline, not progressive: some MMS handsets show progressive JPEG badly or not at all.
    # Optimized Huffman tables: about 10% fewer bytes for a few more milliseconds.
    return _saved(picture, "JPEG", quality=quality, optimize=True, progressive=False)


def _png(picture: Image.Image) -> bytes:
    return _saved(picture, "PNG", compress_level=6)


def _saved(picture: Image.Image, kind: str, **options: object) -> bytes:
    out = io.BytesIO()
    picture.save(out, kind, **options)
    return out.getvalue()


# --- animations ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class _Clip:
    """An animation read once: RGBA frames inside the GIF box, with their durations."""

    frames: list[Image.Image]
    durations: list[int]
    loop: int | None
    source_frames: int


def _animated(
    image: ImageFile.ImageFile,
    count: int,
    profile: CarrierProfile,
    target: int,
    limit: budget.CpuLimit,
) -> ImageResult | None:
    """The mildest step's GIF of `count` frames that fits; None when none does, or GIF is
    not taken."""
    if "image/gif" not in profile.image_types:
        return None
    clip = _read_clip(image, count, profile.gif_max_side, limit)
    # A step leaving one frame is no animation. Every step is smaller than the one before,
    # so a binary search finds the mildest that fits in at most four encodes.
    steps = [s for s in _ANIMATION_STEPS if -(-len(clip.frames) // s[0]) >= 2]
    if not steps:
        return None
    found = _encoded_step(clip, steps[0], target)
    if found is not None:
        return found
    low, high = 1, len(steps) - 1
    while low <= high:
        limit.check()
        middle = (low + high) // 2
        fits = _encoded_step(clip, steps[middle], target)
        if fits is None:
            low = middle + 1
        else:
            found, high = fits, middle - 1
    return found


def _encoded_step(clip: _Clip, step: tuple[int, int, float], target: int) -> ImageResult | None:
    every, colours, scale = step
    # Each kept frame is shown for the frames it stands for: the total time is kept.
    frames, times = clip.frames[::every], clip.durations
    durations = [sum(times[i : i + every]) for i in range(0, len(times), every)]
    if scale < 1.0:
        size = _scaled(frames[0].size, scale)
        frames = [frame.resize(size, Image.Resampling.LANCZOS) for frame in frames]
    data = _gif(frames, durations, colours, clip.loop)
    if len(data) > target:
        return None
    losses: tuple[str, ...] = ()
    if len(frames) < clip.source_frames:
        losses += (f"frames {clip.source_frames}→{len(frames)}",)
    if colours < 256:
        losses += (f"colours 256→{colours}",)
    return _result(data, "GIF", frames[0].size, None, losses)


def _read_clip(
    image: ImageFile.ImageFile, count: int, max_side: int, limit: budget.CpuLimit
) -> _Clip:
    size = _fit(image.size, (max_side, max_side))
    # Too many frames for memory or sense: keep every n-th from the start, durations summed.
    every = max(-(-count // MAX_FRAMES), -(-count * size[0] * size[1] // _FRAME_PIXELS))
    loop = image.info.get("loop")  # absent: the GIF plays once, and so will ours
    frames: list[Image.Image] = []
    durations: list[int] = []
    try:
        for index, frame in enumerate(ImageSequence.Iterator(image)):
            limit.check()
            frame.load()  # an animated WebP sets a frame's duration only once it is decoded
            # Viewers show a missing or zero delay as 100 ms; that figure keeps sums right.
            duration = int(frame.info.get("duration") or 100)
            if index % every:
                durations[-1] += duration
                continue
            rgba = frame.convert("RGBA")
            if rgba.size != size:
                rgba = rgba.resize(size, Image.Resampling.LANCZOS, reducing_gap=2.0)
            frames.append(rgba)
            durations.append(duration)
    except _ERRORS:
        if len(frames) < 2:
            raise
        # A file cut short plays the frames before the cut, as browsers do.
    return _Clip(frames, durations, None if loop is None else int(loop), count)


def _gif(
    frames: Sequence[Image.Image], durations: list[int] | None, colours: int, loop: int | None
) -> bytes:
    """One palette shared by all frames (chosen from a sample), so unchanged areas stay
    unchanged and Pillow can write each frame as a small patch over the one before."""
    alpha = any(_transparent(frame) for frame in frames)
    palette = _palette(frames, colours - 1 if alpha else colours)
    paletted = [_paletted(frame, palette, alpha) for frame in frames]
    options: dict[str, object] = {} if loop is None else {"loop": loop}
    if durations is not None:
        # Transparent frames must clear what was under them (disposal 2); opaque ones stay
        # (1) so that a frame can be a small patch over the last instead of a whole picture.
        options |= {"duration": durations, "disposal": 2 if alpha else 1}
    return _saved(
        paletted[0], "GIF", save_all=True, append_images=paletted[1:], optimize=True, **options
    )


def _palette(frames: Sequence[Image.Image], colours: int) -> Image.Image:
    """Median-cut colours of up to 16 frames spread over the clip, each made small: a good
    palette at a fraction of quantizing every frame (and no per-frame palette flicker)."""
    picks = frames[:: max(1, len(frames) // 16)][:16]
    side = 1024 if len(picks) == 1 else 160
    width, height = _fit(frames[0].size, (side, side))  # all frames are one size
    sample = Image.new("RGB", (width, height * len(picks)))
    for index, frame in enumerate(picks):
        # Nearest: the sample holds only true colours of the frames, no blends of them.
        tile = frame.convert("RGB").resize((width, height), Image.Resampling.NEAREST)
        sample.paste(tile, (0, index * height))
    return sample.quantize(colours, Image.Quantize.MEDIANCUT)


def _paletted(frame: Image.Image, palette: Image.Image, alpha: bool) -> Image.Image:
    # No dithering: it shifts pixels in unchanged areas from frame to frame, costing bytes.
    mapped = frame.convert("RGB").quantize(palette=palette, dither=Image.Dither.NONE)
    mapped.info = {}
    if alpha:
        # GIF has one see-through palette entry, put just past the picture's colours.
        entries = palette.getpalette() or []
        clear = len(entries) // 3
        mapped.putpalette([*entries, 0, 0, 0])
        mapped.paste(clear, mask=frame.getchannel("A").point(_CLEAR_MASK, "1"))
        mapped.info["transparency"] = clear
    return mapped
