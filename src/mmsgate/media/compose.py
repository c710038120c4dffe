"""Compose an MMS for MM7: the OMA MMS SMIL presentation and the multipart/related body.

SMIL follows the MMS SMIL subset (OMA MMS CONF; AOSP's conformance check): one layout with
at most the regions `Image` and `Text`, one `par` per slide with its `dur`, `img`/`video` in
Image, `text` in Text, `audio` without a region, other objects as `ref`. Every part has a
Content-ID and an ASCII Content-Location made from the same token, and the SMIL refers to
parts by `cid:` (RFC 2392). The container is multipart/related with the SMIL first and named
by `start` (RFC 2387); lines end in CRLF. Media parts are base64 and say so; text parts are
UTF-8 as they are, labelled 8bit only when they hold a byte over 127 (7bit, which a SMIL
or an ASCII text is, is what no label means: RFC 2045 §6.1). MMSCs copy part headers into
the handset's PDU, so a part carries only the headers it needs.
"""

from __future__ import annotations

import base64
import dataclasses
import secrets
from collections.abc import Sequence

from mmsgate.models import MediaKind

ROOT_WIDTH, ROOT_HEIGHT, TEXT_HEIGHT = 320, 480, 160  # a portrait phone screen, as AOSP lays out
_PREFIX = {
    MediaKind.IMAGE: "img",
    MediaKind.VIDEO: "vid",
    MediaKind.AUDIO: "aud",
    MediaKind.TEXT: "txt",
    MediaKind.VCARD: "card",
    MediaKind.ICAL: "cal",
    MediaKind.PDF: "doc",
    MediaKind.PASSBOOK: "pass",
}
_EXTENSION = {
    "image/jpeg": "jpg",
    "image/gif": "gif",
    "image/png": "png",
    "audio/mp4": "m4a",
    "audio/amr": "amr",
    "audio/mpeg": "mp3",
    "video/mp4": "mp4",
    "video/3gpp": "3gp",
    "text/plain": "txt",
    "text/vcard": "vcf",
    "text/x-vcard": "vcf",
    "text/calendar": "ics",
    "text/x-vcalendar": "vcs",
    "application/pdf": "pdf",
    "application/vnd.apple.pkpass": "pkpass",
}
_ELEMENT = {
    MediaKind.IMAGE: "img",
    MediaKind.VIDEO: "video",
    MediaKind.AUDIO: "audio",
    MediaKind.TEXT: "text",
}
_REGION = {MediaKind.IMAGE: "Image", MediaKind.VIDEO: "Image", MediaKind.TEXT: "Text"}
_HEADER_BOUND = 220  # bytes of MIME headers per part, an upper bound for budgeting


@dataclasses.dataclass(frozen=True, slots=True)
class Part:
    """One media part of a slide."""

    kind: MediaKind
    content_type: str
    data: bytes
    width: int | None = None
    height: int | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Slide:
    parts: tuple[Part, ...]
    duration_ms: int


@dataclasses.dataclass(frozen=True, slots=True)
class Composed:
    """The content part of an MM7 SubmitReq."""

    content_type: str
    body: bytes
    smil: bytes
    size: int
    wire_size: int


def names(slides: Sequence[Slide]) -> list[list[str]]:
    """The token of every part (`img1`, `txt2`, ...), numbered per kind in slide order."""
    counts: dict[MediaKind, int] = {}
    result = []
    for slide in slides:
        row = []
        for part in slide.parts:
            counts[part.kind] = counts.get(part.kind, 0) + 1
            row.append(f"{_PREFIX[part.kind]}{counts[part.kind]}")
        result.append(row)
    return result


def _region(name: str, top: int, height: int, fit: str) -> str:
    size = f'width="{ROOT_WIDTH}px" height="{height}px"'
    return f'<region id="{name}" left="0" top="{top}" {size} fit="{fit}"/>'


def smil_document(slides: Sequence[Slide], tokens: Sequence[Sequence[str]]) -> bytes:
    """The SMIL presentation: regions only for what the slides use, one `par` per slide."""
    kinds = {p.kind for s in slides for p in s.parts}
    has_image = bool(kinds & {MediaKind.IMAGE, MediaKind.VIDEO})
    has_text = MediaKind.TEXT in kinds
    image_height = ROOT_HEIGHT - TEXT_HEIGHT if has_text else ROOT_HEIGHT
    layout = [f'<root-layout width="{ROOT_WIDTH}px" height="{ROOT_HEIGHT}px"/>']
    if has_image:
        layout.append(_region("Image", 0, image_height, "meet"))
    if has_text:
        top = image_height if has_image else 0
        height = TEXT_HEIGHT if has_image else ROOT_HEIGHT
        layout.append(_region("Text", top, height, "scroll"))
    pars = []
    for slide, row in zip(slides, tokens, strict=True):
        items = []
        for part, token in zip(slide.parts, row, strict=True):
            element = _ELEMENT.get(part.kind, "ref")
            region = f' region="{_REGION[part.kind]}"' if part.kind in _REGION else ""
            items.append(f'<{element} src="cid:{token}"{region}/>')
        pars.append(f'<par dur="{slide.duration_ms}ms">' + "".join(items) + "</par>")
    document = (
        "<smil><head><layout>"
        + "".join(layout)
        + "</layout></head><body>"
        + "".join(pars)
        + "</body></smil>"
    )
    return document.encode("ascii")


def compose(slides: Sequence[Slide], *, boundary: str | None = None) -> Composed:
    """The multipart/related body: SMIL first, then every part in slide order."""
    tokens = names(slides)
    smil = smil_document(slides, tokens)
    entries = [("<smil>", "smil.smil", "application/smil", smil, False)]
    for slide, row in zip(slides, tokens, strict=True):
        for part, token in zip(slide.parts, row, strict=True):
            media_type = part.content_type.split(";")[0].strip().lower()
            location = f"{token}.{_EXTENSION.get(media_type, 'bin')}"
            header_type = "text/plain; charset=utf-8" if part.kind is MediaKind.TEXT else media_type
            entries.append(
                (f"<{token}>", location, header_type, part.data, part.kind is not MediaKind.TEXT)
            )
    boundary = boundary or _boundary([e[3] for e in entries])
    chunks = []
    for content_id, location, content_type, data, binary in entries:
        encoded = base64.encodebytes(data).replace(b"\n", b"\r\n") if binary else data + b"\r\n"
        encoding = "base64" if binary else "" if data.isascii() else "8bit"
        head = (
            f"--{boundary}\r\nContent-Type: {content_type}\r\nContent-ID: {content_id}\r\n"
            f"Content-Location: {location}\r\n"
        )
        if encoding:
            head += f"Content-Transfer-Encoding: {encoding}\r\n"
        head += "\r\n"
        chunks.append(head.encode("ascii") + encoded)
    body = b"".join(chunks) + f"--{boundary}--\r\n".encode("ascii")
    content_type = (
        f'multipart/related; type="application/smil"; start="<smil>"; boundary="{boundary}"'
    )
    size = len(smil) + sum(len(p.data) for s in slides for p in s.parts)
    return Composed(content_type, body, smil, size, len(body))


def _boundary(payloads: Sequence[bytes]) -> str:
    while True:
        candidate = "mms-" + secrets.token_hex(12)
        if not any(candidate.encode("ascii") in data for data in payloads):
            return candidate


def overhead_estimate(slides: Sequence[Slide]) -> int:
    """An upper bound of the SMIL plus MIME headers, for sharing a budget before transcoding."""
    smil = len(smil_document(slides, names(slides)))
    parts = 1 + sum(len(s.parts) for s in slides)
    return smil + parts * _HEADER_BOUND + 64
