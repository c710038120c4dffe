"""What a body is: types told from magic bytes, declared types cleaned up, types per kind.

Pure functions over bytes; `inspect` decides what a mismatch means for a slide.
"""

from __future__ import annotations

import codecs
import re

from mmsgate.models import MediaKind

KNOWN_TYPES: dict[MediaKind, frozenset[str]] = {
    MediaKind.IMAGE: frozenset(
        {"image/jpeg", "image/png", "image/gif", "image/webp", "image/bmp", "image/tiff"}
        | {"image/heic"}
    ),
    MediaKind.AUDIO: frozenset(
        {"audio/mpeg", "audio/wav", "audio/amr", "audio/mp4", "audio/aac", "audio/ogg"}
        | {"audio/3gpp"}
    ),
    MediaKind.VIDEO: frozenset(
        {"video/mp4", "video/3gpp", "video/quicktime", "video/x-msvideo", "video/mpeg"}
        | {"video/webm", "video/x-ms-wmv"}
    ),
    MediaKind.TEXT: frozenset({"text/plain"}),
    MediaKind.VCARD: frozenset({"text/vcard"}),
    MediaKind.ICAL: frozenset({"text/calendar"}),
    MediaKind.PDF: frozenset({"application/pdf"}),
    MediaKind.PASSBOOK: frozenset({"application/vnd.apple.pkpass"}),
}
"""The types each kind of slot accepts, in their canonical spelling."""

_ALIASES = {
    "image/jpg": "image/jpeg",
    "image/pjpeg": "image/jpeg",
    "image/x-png": "image/png",
    "image/x-ms-bmp": "image/bmp",
    "image/x-bmp": "image/bmp",
    "image/tif": "image/tiff",
    "image/heif": "image/heic",
    "audio/mp3": "audio/mpeg",
    "audio/mpeg3": "audio/mpeg",
    "audio/mpg": "audio/mpeg",
    "audio/x-mp3": "audio/mpeg",
    "audio/x-mpeg": "audio/mpeg",
    "audio/x-wav": "audio/wav",
    "audio/wave": "audio/wav",
    "audio/vnd.wave": "audio/wav",
    "audio/x-m4a": "audio/mp4",
    "audio/m4a": "audio/mp4",
    "audio/x-aac": "audio/aac",
    "audio/aacp": "audio/aac",
    "audio/3gp": "audio/3gpp",
    "application/ogg": "audio/ogg",
    "video/3gp": "video/3gpp",
    "video/3gpp2": "video/3gpp",
    "video/x-m4v": "video/mp4",
    "video/avi": "video/x-msvideo",
    "video/msvideo": "video/x-msvideo",
    "video/mpg": "video/mpeg",
    "video/x-ms-asf": "video/x-ms-wmv",
    "text/x-vcard": "text/vcard",
    "text/directory": "text/vcard",
    "text/x-vcalendar": "text/calendar",
    "application/x-pdf": "application/pdf",
}

# Fixed magic numbers at offset 0, longest and most specific first.
_PREFIXES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\x30\x26\xb2\x75\x8e\x66\xcf\x11", "video/x-ms-wmv"),  # the ASF header GUID
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"%PDF-", "application/pdf"),
    (b"#!AMR", "audio/amr"),
    (b"\x1a\x45\xdf\xa3", "video/webm"),  # EBML, which Matroska shares
    (b"\x00\x00\x01\xba", "video/mpeg"),  # MPEG program stream pack header
    (b"\x00\x00\x01\xb3", "video/mpeg"),  # MPEG video sequence header
    (b"II*\x00", "image/tiff"),
    (b"MM\x00*", "image/tiff"),
    (b"OggS", "audio/ogg"),
    (b"ADIF", "audio/aac"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"ID3", "audio/mpeg"),
)
_RIFF_FORMS = {b"WEBP": "image/webp", b"WAVE": "audio/wav", b"AVI ": "video/x-msvideo"}
_HEIC_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"})
_AUDIO_BRANDS = frozenset({b"M4A ", b"M4B ", b"M4P ", b"F4A "})
_BMP_HEADER_SIZES = frozenset({12, 40, 52, 56, 64, 108, 124})
# C0 controls other than tab, line feed, form feed and carriage return mean binary data.
_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")


def canonical_type(declared: str) -> str:
    """A declared type lower-cased, without parameters, with aliases (`audio/mp3`) resolved."""
    bare = declared.partition(";")[0].strip().lower()
    return _ALIASES.get(bare, bare)


def sniff(data: bytes) -> str | None:
    """The type the bytes themselves show, or None when they show nothing known."""
    for prefix, content_type in _PREFIXES:
        if data.startswith(prefix):
            return content_type
    return (
        _sniff_riff(data)
        or _sniff_iso_media(data)
        or _sniff_frame_sync(data)
        or _sniff_bmp(data)
        or _sniff_zip(data)
        or _sniff_text(data)
    )


def _sniff_riff(data: bytes) -> str | None:
    if data.startswith(b"RIFF") and len(data) >= 12:
        return _RIFF_FORMS.get(data[8:12])
    return None


def _sniff_iso_media(data: bytes) -> str | None:
    """ISO base media files (MP4, 3GP, QuickTime, HEIC) name their brand in the ftyp box."""
    if data[4:8] != b"ftyp" or len(data) < 12:
        return None
    brand = data[8:12]
    if brand in _HEIC_BRANDS:
        return "image/heic"
    if brand in (b"avif", b"avis"):
        return None  # AVIF is an image mmsgate does not take; leave it to the declared type
    if brand in _AUDIO_BRANDS:
        return "audio/mp4"
    if brand.startswith((b"3gp", b"3g2")):
        return "video/3gpp"
    if brand == b"qt  ":
        return "video/quicktime"
    # isom, iso2-6, mp41, mp42, avc1, M4V, dash and the many vendor brands are all MP4.
    return "video/mp4"


def _sniff_frame_sync(data: bytes) -> str | None:
    """MP3 frames and ADTS AAC frames start with 11 set bits; the fields after must be valid."""
    if len(data) < 4 or data[0] != 0xFF or data[1] & 0xE0 != 0xE0:
        return None
    if data[1] & 0xF6 == 0xF0:
        return "audio/aac"  # ADTS: MPEG-2/4 with the layer bits 00
    version, layer = (data[1] >> 3) & 3, (data[1] >> 1) & 3
    bitrate, rate = data[2] >> 4, (data[2] >> 2) & 3
    if version == 1 or layer == 0 or bitrate == 0xF or rate == 3:
        return None
    return "audio/mpeg"


def _sniff_bmp(data: bytes) -> str | None:
    # "BM" alone starts plenty of text; the DIB header size after it makes it a bitmap.
    if data.startswith(b"BM") and len(data) >= 18:
        header_size = int.from_bytes(data[14:18], "little")
        return "image/bmp" if header_size in _BMP_HEADER_SIZES else None
    return None


def _sniff_zip(data: bytes) -> str | None:
    if not data.startswith(b"PK\x03\x04"):
        return None
    # A Passbook pass is a zip holding pass.json; zip stores member names uncompressed.
    return "application/vnd.apple.pkpass" if b"pass.json" in data else "application/zip"


def _sniff_text(data: bytes) -> str | None:
    text = decode_text(data, lenient=False)
    if text is None:
        return None
    start = text.lstrip()[:16].upper()
    if start.startswith("BEGIN:VCARD"):
        return "text/vcard"
    if start.startswith("BEGIN:VCALENDAR"):
        return "text/calendar"
    return "text/plain"


def decode_text(data: bytes, *, lenient: bool) -> str | None:
    """The text in `data`: UTF-8 (BOM allowed) or UTF-16 with a BOM; Latin-1 only if lenient.

    None when no encoding gives readable text (control characters mean binary data).
    """
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encodings: tuple[str, ...] = ("utf-16",)
    else:
        encodings = ("utf-8-sig", "latin-1") if lenient else ("utf-8-sig",)
    for encoding in encodings:
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        if _CONTROLS.search(text) is None:
            return text
    return None
