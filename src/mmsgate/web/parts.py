"""GET /media/{token}/{n}: part n (from 1) behind a hosted page or an MO message's content
URLs, with what a slow phone and a media player need: long private caching (blobs are
content-addressed, so a key's bytes never change), ETag revalidation, and single byte
ranges (Safari will not play a video without 206 answers; Chromium seeks with them).

Page parts stop being served when the page's link expires (410, no bytes). MO parts come
from handsets with whatever type the sender's phone gave them, so they are sandboxed and
anything that is not plainly an image, a sound, a video or text is served as a download.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import urllib.parse

from starlette.requests import Request
from starlette.responses import Response

from mmsgate.models import MediaKind, WebPart
from mmsgate.store import mo
from mmsgate.web.page import FILE_NAMES, SMALL, Web, etag_matches, file_name, lookup_key, respond

YEAR = 365 * 24 * 3600
# Types the pipeline prepares for the page, by kind; anything else is sent as a plain file.
PAGE_TYPES = {
    MediaKind.IMAGE: ("image/jpeg", "image/png", "image/gif"),
    MediaKind.VIDEO: ("video/mp4",),
    MediaKind.AUDIO: ("audio/mp4", "audio/mpeg", "audio/aac"),
    MediaKind.VCARD: ("text/vcard", "text/x-vcard", "text/directory"),
    MediaKind.ICAL: ("text/calendar",),
    MediaKind.PDF: ("application/pdf",),
    MediaKind.PASSBOOK: ("application/vnd.apple.pkpass",),
}
# MO types a browser may show in place; they are still sandboxed.
MO_INLINE = re.compile(r"(image/(jpeg|png|gif|webp|bmp)|audio/.+|video/.+|text/plain)")
SANDBOX = "default-src 'none'; sandbox"
NOT_FOUND = b"not found\n"
GONE = b"This content has expired.\n"
TEXT = "text/plain; charset=utf-8"


@dataclasses.dataclass(frozen=True, slots=True)
class Served:
    """How one part goes out: its bytes' key and the headers that describe them."""

    blob_key: str
    content_type: str
    max_age: int
    disposition: str | None = None
    csp: str | None = SANDBOX


async def media(web: Web, request: Request) -> Response:
    """GET/HEAD /media/{token}/{n}: a page part, or an MO part; 410 after the page's link
    expired; 404 for anything else. Both kinds of token are looked up (see `lookup_key`)."""
    token = lookup_key(request.path_params["token"])
    n = part_number(request.path_params["n"])
    size = request.query_params.get("size")
    held = await web.pages.page(web.db, token)
    if held is not None:
        page = held.page
        now = web.clock()
        if page.expired(now):
            return _plain(request, 410, GONE)
        part = rendition(page.part(n) if n else None, size)
        if part is None:
            return _plain(request, 404, NOT_FOUND)
        return await serve(web, request, page_part(part, page.link_expires_at - now))
    row = await mo.by_token(web.db, token)
    if row is None or not n or n > len(row.parts) or size is not None:
        return _plain(request, 404, NOT_FOUND)
    return await serve(web, request, mo_part(row.parts[n - 1]))


def part_number(raw: str) -> int | None:
    """n of the URL, or None; short, so a 5,000-digit n is not parsed into an integer."""
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 4 else None


def rendition(part: WebPart | None, size: str | None) -> WebPart | None:
    """The part as asked: itself, or with `?size=small` its small rendition (an image's
    narrow copy, see `prepare.for_web`); None when there is no such rendition."""
    if part is None or size is None:
        return part
    small = part.small
    if f"size={size}" != SMALL or small is None:
        return None
    return dataclasses.replace(
        part,
        content_type=small.content_type,
        blob_key=small.blob_key,
        bytes=small.bytes,
        width=small.width,
        height=small.height,
        small=None,
    )


def page_part(part: WebPart, left: dt.timedelta) -> Served:
    """A hosted page's part: cached no longer than the link lives."""
    content_type = part.content_type
    kind: MediaKind | None = part.kind  # None: served as a plain file
    if _base(content_type) not in PAGE_TYPES.get(part.kind, ()):
        content_type, kind = "application/octet-stream", None
    max_age = max(0, min(YEAR, int(left.total_seconds())))
    if kind is MediaKind.PDF:
        # In the browser's own viewer; a CSP here would keep Chromium's viewer from starting.
        return Served(part.blob_key, content_type, max_age, _disposition("inline", part), None)
    if kind is not None and kind not in FILE_NAMES:
        return Served(part.blob_key, content_type, max_age)
    return Served(part.blob_key, content_type, max_age, _disposition("attachment", part))


def mo_part(part: mo.MoPart) -> Served:
    """An MO part: sandboxed, and a download unless it is plain media or text."""
    base = _base(part["content_type"])
    inline = MO_INLINE.fullmatch(base) is not None
    served = base + _charset(part["content_type"])
    return Served(part["blob_key"], served, YEAR, None if inline else "attachment")


# The type goes out as the handset sent it with its charset, without which a UTF-8 or
# Latin-1 text is read wrong, and with no other parameter: nothing a browser could act on.
_CHARSET = re.compile(
    r';\s*charset\s*=\s*"?([A-Za-z0-9][A-Za-z0-9._:+-]{0,39})"?\s*(?:;|$)', re.IGNORECASE
)


def _charset(content_type: str) -> str:
    """`; charset=utf-8` when `content_type` names a plain charset, else nothing."""
    found = _CHARSET.search(content_type)
    return f"; charset={found.group(1).lower()}" if found else ""


def _base(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def _disposition(how: str, part: WebPart) -> str:
    """`attachment; filename="x.ics"; filename*=UTF-8''x.ics` (RFC 6266): an ASCII name
    for old clients, the real one for the rest."""
    name = file_name(part)
    ascii_name = re.sub(r"[^A-Za-z0-9._ -]", "_", name)
    quoted = urllib.parse.quote(name, safe="")
    return f"{how}; filename=\"{ascii_name}\"; filename*=UTF-8''{quoted}"


async def serve(web: Web, request: Request, served: Served) -> Response:
    """The part's bytes: 304 when the client has them, 206 for a byte range, else 200."""
    etag = f'"{served.blob_key}"'
    headers = {
        "Cache-Control": f"private, max-age={served.max_age}, immutable",
        "ETag": etag,
        "Accept-Ranges": "bytes",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cross-Origin-Resource-Policy": "same-origin",
    }
    if served.disposition:
        headers["Content-Disposition"] = served.disposition
    if served.csp:
        headers["Content-Security-Policy"] = served.csp
    if etag_matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=headers)
    data = await web.blobs.get(served.blob_key)
    wanted = request.headers.get("range")
    if wanted is not None and request.headers.get("if-range", etag) != etag:
        wanted = None  # the client's copy is another version: send the whole of this one
    span = byte_range(wanted, len(data))
    if span == UNSATISFIABLE:
        headers["Content-Range"] = f"bytes */{len(data)}"
        return respond(request, 416, b"", TEXT, headers)
    if span is None:
        return respond(request, 200, data, served.content_type, headers)
    first, last = span
    headers["Content-Range"] = f"bytes {first}-{last}/{len(data)}"
    return respond(request, 206, data[first : last + 1], served.content_type, headers)


UNSATISFIABLE = (-1, -1)
_SPEC = re.compile(r"bytes=(\d*)-(\d*)")


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The one range (first, last, inclusive) a Range header asks for (RFC 9110 §14.1.2),
    None to send everything, or UNSATISFIABLE. A server may ignore a Range header (§14.2),
    and this one does for malformed headers and for several ranges: players ask for one."""
    found = _SPEC.fullmatch((header or "").replace(" ", ""))
    if found is None or len(header or "") > 100:
        return None
    first, last = found.groups()
    if not first and not last:
        return None
    if not first:  # the last N bytes
        suffix = int(last)
        return UNSATISFIABLE if suffix == 0 or size == 0 else (max(0, size - suffix), size - 1)
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if last and int(last) < start:
        return None  # invalid: ignored, like a header that is not there
    if start >= size:
        return UNSATISFIABLE
    return start, end


def _plain(request: Request, status: int, body: bytes) -> Response:
    headers = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
    return respond(request, status, body, TEXT, headers)
