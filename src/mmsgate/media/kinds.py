"""What fetch and inspect say about each media kind: its name in error texts and its codes."""

from __future__ import annotations

from mmsgate.codes import ErrorCode
from mmsgate.models import MediaKind
from mmsgate.settings import MediaSettings

_NOUNS = {
    MediaKind.IMAGE: "image",
    MediaKind.AUDIO: "audio",
    MediaKind.VIDEO: "video",
    MediaKind.TEXT: "text",
    MediaKind.VCARD: "vCard",
    MediaKind.ICAL: "iCal",
    MediaKind.PDF: "PDF",
    MediaKind.PASSBOOK: "Passbook file",
}

FETCH_CODES = {
    MediaKind.IMAGE: ErrorCode.IMAGE_FETCH,
    MediaKind.AUDIO: ErrorCode.AUDIO_FETCH,
    MediaKind.VIDEO: ErrorCode.VIDEO_FETCH,
    MediaKind.TEXT: ErrorCode.TEXT_FETCH,
    MediaKind.VCARD: ErrorCode.VCARD_FETCH,
    MediaKind.ICAL: ErrorCode.ICAL_FETCH,
    MediaKind.PDF: ErrorCode.PDF_FETCH,
    MediaKind.PASSBOOK: ErrorCode.PASSBOOK_FETCH,
}

TOO_BIG_CODES = {
    MediaKind.IMAGE: ErrorCode.IMAGE_TOO_BIG,
    MediaKind.AUDIO: ErrorCode.AUDIO_TOO_BIG,
    MediaKind.VIDEO: ErrorCode.VIDEO_TOO_BIG,
    MediaKind.TEXT: ErrorCode.TEXT_FILE_TOO_LONG,
    MediaKind.VCARD: ErrorCode.VCARD_TOO_BIG,
    MediaKind.ICAL: ErrorCode.ICAL_TOO_BIG,
    MediaKind.PDF: ErrorCode.PDF_TOO_BIG,
    MediaKind.PASSBOOK: ErrorCode.PASSBOOK_TOO_BIG,
}


def noun(kind: MediaKind) -> str:
    """The kind as error texts name it mid-sentence: `image`, `vCard`, `Passbook file`."""
    return _NOUNS[kind]


def subject(kind: MediaKind) -> str:
    """The kind at the start of a sentence: `Image`, but `vCard` and `PDF` keep their case."""
    word = _NOUNS[kind]
    return word[:1].upper() + word[1:] if word.islower() else word


def byte_cap(kind: MediaKind, settings: MediaSettings, *, gif: bool = False) -> int:
    """The most bytes a part of `kind` may have (API reference §13.1)."""
    if kind is MediaKind.IMAGE:
        return settings.gif_max_bytes if gif else settings.image_max_bytes
    if kind is MediaKind.AUDIO:
        return settings.audio_max_bytes
    if kind is MediaKind.VIDEO:
        return settings.video_max_bytes
    if kind is MediaKind.TEXT:
        # The limit is in characters; a UTF-8 character takes at most 4 bytes.
        return settings.text_max_chars * 4
    return settings.object_max_bytes
