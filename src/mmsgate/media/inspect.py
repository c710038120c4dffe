"""Check what a fetch brought back: its real type, that it fits its slot, and that it decodes.

CPU work, synchronous and pure: the caller runs `inspect` in a worker thread, never on the
event loop. Codes follow the API reference §6.3: E229 wrong kind for the slot, E629 type
unknown, E331/E334 too big or too long, E341-E344 corrupt. An image's work is bounded before
it is decoded and while it is (see `budget`): past either bound it is E331, too big.

    resolve the type (sniffed, else declared) ─▶ check it against the slot ─▶ decode the kind
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import io
import json
import struct
import zipfile
from collections.abc import Callable, Sequence

import av
import av.error
from av.container import InputContainer
from av.stream import Disposition, Stream
from PIL import Image, ImageFile

from mmsgate.codes import ErrorCode
from mmsgate.errors import MediaError
from mmsgate.media import budget
from mmsgate.media.budget import MAX_PIXELS
from mmsgate.media.kinds import noun, subject
from mmsgate.media.sniff import KNOWN_TYPES, canonical_type, decode_text, sniff
from mmsgate.models import MediaKind
from mmsgate.settings import MediaSettings

# Demuxing stops after this many packets of the main stream without a decoded frame, so a
# file that parses but never decodes cannot keep a worker thread busy.
_MAX_PACKETS = 200
_MAX_PASS_JSON = 1024 * 1024
_PILLOW_FORMATS = {
    "image/jpeg": "JPEG",
    "image/png": "PNG",
    "image/gif": "GIF",
    "image/webp": "WEBP",
    "image/bmp": "BMP",
    "image/tiff": "TIFF",
    "image/heic": "HEIF",
}
# What Pillow's format plugins raise on malformed input, besides OSError.
_PILLOW_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    struct.error,
    IndexError,
    KeyError,
    TypeError,
    ZeroDivisionError,
)
_AV_ERRORS = (av.error.FFmpegError, OSError, ValueError, EOFError, IndexError)
# Slots whose bytes are sniffed as one type but that accept a close relative of it.
_FITS = {
    (MediaKind.AUDIO, "video/mp4"): "audio/mp4",
    (MediaKind.AUDIO, "video/3gpp"): "audio/3gpp",
    (MediaKind.TEXT, "text/vcard"): "text/plain",
    (MediaKind.TEXT, "text/calendar"): "text/plain",
    (MediaKind.VCARD, "text/plain"): "text/vcard",
    (MediaKind.ICAL, "text/plain"): "text/calendar",
    (MediaKind.PASSBOOK, "application/zip"): "application/vnd.apple.pkpass",
}
_TEXTUAL = frozenset({MediaKind.TEXT, MediaKind.VCARD, MediaKind.ICAL})
_ANIMATED = frozenset({"GIF", "PNG", "WEBP"})


@dataclasses.dataclass(frozen=True, slots=True)
class Inspected:
    """What a part really is: its type and, where they apply, size, duration, codecs, text."""

    content_type: str
    width: int | None = None
    height: int | None = None
    duration_ms: int | None = None
    codecs: tuple[str, ...] = ()
    text: str | None = None


def inspect(
    kind: MediaKind, data: bytes, declared_type: str, slide: int, settings: MediaSettings
) -> Inspected:
    """Check the fetched `data` for a `kind` slot of 1-based `slide`, or raise a MediaError."""
    content_type = resolve_type(kind, data, declared_type, slide, settings)
    return _INSPECTORS[kind](data, content_type, slide, settings)


def resolve_type(
    kind: MediaKind, data: bytes, declared_type: str, slide: int, settings: MediaSettings
) -> str:
    """The type to treat `data` as: what its bytes show, else (lenient) what was declared."""
    declared = canonical_type(declared_type)
    sniffed = sniff(data)
    if sniffed is None and kind in _TEXTUAL and not settings.strict:
        # Lenient mode takes Latin-1 text, which no magic number announces.
        sniffed = "text/plain" if decode_text(data, lenient=True) is not None else None
    if sniffed is not None:
        sniffed = _FITS.get((kind, sniffed), sniffed)
    known = KNOWN_TYPES[kind]
    if settings.strict:
        # Strict is Sinch: the declared type must be valid and the content must not deny it.
        if declared not in known:
            raise _unrecognized(slide, f"{noun(kind)} slot declared {declared or 'no type'}")
        if sniffed is not None and sniffed != declared:
            raise _not_allowed(slide, f"declared {declared} but holds {sniffed}")
        return declared
    if sniffed is not None:
        if sniffed not in known:
            raise _not_allowed(slide, f"{noun(kind)} slot holds {sniffed}")
        return sniffed
    if declared in known:
        return declared
    raise _unrecognized(
        slide, f"the {noun(kind)} is of no known type (declared {declared or 'no type'})"
    )


def _unrecognized(slide: int, detail: str) -> MediaError:
    return MediaError(
        ErrorCode.UNRECOGNIZED_CONTENT_TYPE, f"Unrecognized content type in slide {slide}: {detail}"
    )


def _not_allowed(slide: int, detail: str) -> MediaError:
    return MediaError(
        ErrorCode.CONTENT_NOT_ALLOWED, f"Content not allowed in slide {slide}: {detail}"
    )


def _corrupt(code: ErrorCode, what: str, slide: int, detail: str = "") -> MediaError:
    """`what` starts the sentence, as in §6.3: "Image file in slide 2 is corrupted"."""
    suffix = f": {detail}" if detail else ""
    return MediaError(code, f"{what} in slide {slide} is corrupted{suffix}")


# --- images -------------------------------------------------------------------------------


def _inspect_image(
    data: bytes, content_type: str, slide: int, settings: MediaSettings
) -> Inspected:
    if content_type == "image/heic" and not _heif_available():
        raise _unrecognized(slide, "HEIC images need pillow-heif, which is not installed")
    limit = budget.CpuLimit(budget.INSPECT_CPU_SECONDS)
    try:
        with Image.open(io.BytesIO(data), formats=[_PILLOW_FORMATS[content_type]]) as image:
            width, height = image.size
            # The headers give the size and frames: refuse before decoding spends them.
            budget.check(data, image.size)
            _decode_image(image)
            duration_ms = _animation_ms(image, limit)
    except budget.OverBudget as exc:
        raise _too_big(slide, str(exc)) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        # Pillow's own bomb check fires in open() for sizes far beyond ours.
        raise _too_big(slide, f"more than {MAX_PIXELS} pixels") from None
    except _PILLOW_ERRORS:
        raise _corrupt(ErrorCode.IMAGE_CORRUPT, "Image file", slide) from None
    return Inspected(content_type, width=width, height=height, duration_ms=duration_ms)


def _too_big(slide: int, detail: str) -> MediaError:
    return MediaError(ErrorCode.IMAGE_TOO_BIG, f"Image in slide {slide} is too big: {detail}")


def _decode_image(image: ImageFile.ImageFile) -> None:
    """Decode the (first) frame, so a truncated or corrupt file fails here and not later."""
    if image.format == "JPEG":
        # DCT scaling decodes at 1/8 size but still walks every entropy-coded block, so a
        # broken file still fails while a 12 MP photo checks in milliseconds.
        image.draft("RGB", (max(1, image.width // 8), max(1, image.height // 8)))
    image.load()


def _animation_ms(image: ImageFile.ImageFile, limit: budget.CpuLimit) -> int | None:
    """The total duration of an animated GIF, PNG or WebP; None for a still image. Seeking
    decodes the frames, so a broken later frame is refused too; `limit` bounds the time."""
    if image.format not in _ANIMATED:
        return None  # a TIFF's or an MPO's further pages are no animation
    frames = int(getattr(image, "n_frames", 1))
    if frames <= 1:
        return None
    total = 0
    for index in range(frames):
        limit.check()
        image.seek(index)
        total += int(image.info.get("duration", 0))
    image.seek(0)
    return total


@functools.cache
def _heif_available() -> bool:
    """Whether pillow-heif is importable; it registers Pillow's HEIF opener once."""
    try:
        module = importlib.import_module("pillow_heif")
    except ImportError:
        return False
    module.register_heif_opener()
    return True


# --- audio and video ----------------------------------------------------------------------


def _inspect_audio(
    data: bytes, content_type: str, slide: int, settings: MediaSettings
) -> Inspected:
    corrupt = _corrupt(ErrorCode.AUDIO_CORRUPT, "Audio file", slide)
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            if _moving_pictures(container):
                raise _not_allowed(slide, "audio slot holds a file with moving pictures")
            streams = container.streams.audio
            if not streams or not _decodes(container, streams[0]):
                raise corrupt
            return Inspected(
                content_type,
                duration_ms=_duration_ms(container, streams[0]),
                codecs=_codecs(container),
            )
    except _AV_ERRORS:
        raise corrupt from None


def _inspect_video(
    data: bytes, content_type: str, slide: int, settings: MediaSettings
) -> Inspected:
    broken = MediaError(
        ErrorCode.VIDEO_NO_CODECS, f"Video in slide {slide} is corrupted or missing codecs"
    )
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            streams = _moving_pictures(container)
            if not streams:
                raise broken
            width, height = _frame_size(streams[0], slide)
            if not _decodes(container, streams[0]):
                raise broken
            return Inspected(
                content_type,
                width=width,
                height=height,
                duration_ms=_duration_ms(container, streams[0]),
                codecs=_codecs(container),
            )
    except _AV_ERRORS:
        raise broken from None


def _frame_size(stream: Stream, slide: int) -> tuple[int | None, int | None]:
    """The frame size from the stream header, refused before decoding would allocate it."""
    width = getattr(stream.codec_context, "width", None)
    height = getattr(stream.codec_context, "height", None)
    if width and height and width * height > MAX_PIXELS:
        raise MediaError(
            ErrorCode.VIDEO_TOO_BIG,
            f"Video in slide {slide} is too big: {width}x{height} is more than {MAX_PIXELS} pixels",
        )
    return width, height


def _moving_pictures(container: InputContainer) -> list[Stream]:
    """Video streams, leaving out cover art (an MP3's picture is a one-frame video stream)."""
    return [
        stream
        for stream in container.streams.video
        if not stream.disposition & Disposition.attached_pic
    ]


def _decodes(container: InputContainer, stream: Stream) -> bool:
    """Whether `stream` yields a frame within the first packets (the last, empty one flushes)."""
    for count, packet in enumerate(container.demux(stream)):
        if count >= _MAX_PACKETS:
            return False
        if packet.decode():
            return True
    return False


def _duration_ms(container: InputContainer, stream: Stream) -> int | None:
    if container.duration is not None and container.duration > 0:
        return round(container.duration / 1000)  # microseconds (AV_TIME_BASE)
    if stream.duration is not None and stream.time_base is not None:
        return round(stream.duration * stream.time_base * 1000)
    return None


def _codecs(container: InputContainer) -> tuple[str, ...]:
    """Codec names, video first: `("h264", "aac")`."""
    moving: Sequence[Stream] = _moving_pictures(container)
    return tuple(stream.codec_context.name for stream in [*moving, *container.streams.audio])


# --- text and objects ---------------------------------------------------------------------


def _inspect_text(data: bytes, content_type: str, slide: int, settings: MediaSettings) -> Inspected:
    text = decode_text(data, lenient=not settings.strict)
    if text is None:
        raise _not_allowed(slide, "the text is not readable UTF-8")
    if len(text) > settings.text_max_chars:
        raise MediaError(
            ErrorCode.TEXT_FILE_TOO_LONG,
            f"Text in slide {slide} is too long: more than {settings.text_max_chars} characters",
        )
    return Inspected("text/plain", text=text)


def _inspect_vcard(
    data: bytes, content_type: str, slide: int, settings: MediaSettings
) -> Inspected:
    _check_calendar_like(data, "VCARD", MediaKind.VCARD, slide, settings)
    return Inspected("text/vcard")


def _inspect_ical(data: bytes, content_type: str, slide: int, settings: MediaSettings) -> Inspected:
    _check_calendar_like(data, "VCALENDAR", MediaKind.ICAL, slide, settings)
    return Inspected("text/calendar")


def _check_calendar_like(
    data: bytes, component: str, kind: MediaKind, slide: int, settings: MediaSettings
) -> None:
    """vCard and iCalendar are text framed by BEGIN:<component> ... END:<component>."""
    text = decode_text(data, lenient=not settings.strict)
    body = text.lstrip().upper() if text is not None else ""
    if not body.startswith(f"BEGIN:{component}") or f"END:{component}" not in body:
        raise _corrupt(
            ErrorCode.OBJECT_CORRUPT, f"{subject(kind)} file", slide, f"not a {noun(kind)}"
        )


def _inspect_pdf(data: bytes, content_type: str, slide: int, settings: MediaSettings) -> Inspected:
    if not data.startswith(b"%PDF-"):
        raise _corrupt(ErrorCode.OBJECT_CORRUPT, "PDF file", slide, "no %PDF- header")
    return Inspected("application/pdf")


def _inspect_pass(data: bytes, content_type: str, slide: int, settings: MediaSettings) -> Inspected:
    corrupt = _corrupt(ErrorCode.OBJECT_CORRUPT, "Passbook file", slide, "no valid pass.json")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            member = archive.getinfo("pass.json")
            # The declared size bounds what reading it may inflate to.
            if member.file_size > _MAX_PASS_JSON:
                raise corrupt
            document = json.loads(archive.read(member))
    # RuntimeError: an encrypted member; NotImplementedError: an unknown compression method.
    except (zipfile.BadZipFile, KeyError, ValueError, OSError, EOFError, RuntimeError):
        raise corrupt from None
    if not isinstance(document, dict):
        raise corrupt
    return Inspected("application/vnd.apple.pkpass")


_Inspector = Callable[[bytes, str, int, MediaSettings], Inspected]
_INSPECTORS: dict[MediaKind, _Inspector] = {
    MediaKind.IMAGE: _inspect_image,
    MediaKind.AUDIO: _inspect_audio,
    MediaKind.VIDEO: _inspect_video,
    MediaKind.TEXT: _inspect_text,
    MediaKind.VCARD: _inspect_vcard,
    MediaKind.ICAL: _inspect_ical,
    MediaKind.PDF: _inspect_pdf,
    MediaKind.PASSBOOK: _inspect_pass,
}
