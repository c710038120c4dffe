"""GET /m/{token}: the hosted page an SMS-with-link fallback points to.

One self-contained HTML document per message: the subject, then each slide in order (images
at phone width, native audio and video players, text with its web links made clickable,
vCard/iCal/PDF/pkpass as download buttons). No script, no third-party request: the only
other requests are for the message's own media under `/media/{token}/{n}` (see `parts`).
After the link's expiry the page is 410 and says so; an unknown token is 404.
"""

from __future__ import annotations

import base64
import collections
import dataclasses
import datetime as dt
import functools
import gzip
import hashlib
import importlib.resources
import re
import time
import urllib.parse
from collections.abc import Callable, Mapping
from typing import TypeAlias

import jinja2
import structlog
from markupsafe import Markup, escape
from starlette.requests import Request
from starlette.responses import Response

from mmsgate.models import MediaKind, WebPart
from mmsgate.store import fallbacks
from mmsgate.store.blobs import BlobStore
from mmsgate.store.db import Database
from mmsgate.web import html

log = structlog.get_logger(__name__)

PAGE_MAX_AGE = 300  # seconds a phone may show the page from its cache without asking again
HTML = "text/html; charset=utf-8"
GZIP_LEVEL = 6  # zlib's default: within a few percent of 9 on a page, at a fraction of the time
# The slot an image fills: the column (40rem less 1rem of padding each side) or the screen.
IMAGE_SIZES = "(min-width: 40rem) 38rem, calc(100vw - 2rem)"
SMALL = "size=small"  # the query that asks /media/{token}/{n} for an image's small rendition

# What a part of each kind is offered as, when it is not shown in the page itself.
DOWNLOADS = {
    MediaKind.VCARD: "Add to contacts (vCard)",
    MediaKind.ICAL: "Add to calendar",
    MediaKind.PDF: "Open PDF",
    MediaKind.PASSBOOK: "Add to Wallet",
}
# The file name a download gets: the part's own (from its source URL), with this extension.
FILE_NAMES = {
    MediaKind.VCARD: ("contact", ".vcf"),
    MediaKind.ICAL: ("event", ".ics"),
    MediaKind.PDF: ("document", ".pdf"),
    MediaKind.PASSBOOK: ("pass", ".pkpass"),
}
PLAYED = (MediaKind.IMAGE, MediaKind.VIDEO, MediaKind.AUDIO)
# What a template reads: names to plain values (strings, numbers, lists of such mappings).
Context: TypeAlias = Mapping[str, object]
_MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip


@dataclasses.dataclass(slots=True)
class Held:
    """A page as the cache holds it: read at `at` (monotonic), and its HTML once rendered."""

    at: float
    page: fallbacks.Page
    html: bytes | None = None
    gzipped: bytes | None = None


class PageCache:
    """Pages looked up in the last few seconds, with their rendered HTML, by token.

    A page link goes out in an SMS, and its readers come together: the SMS lands, and a
    group's phones open it within seconds, each also fetching the media. A page never
    changes once made (its expiry is checked against the clock on every request), so for
    `ttl` seconds the lookup and the render are done once, not per request. Only pages that
    exist are kept: an unknown token is looked up every time, so a guess costs the same
    whatever it is (see `lookup_key`)."""

    def __init__(self, ttl: float = 5.0, size: int = 4096) -> None:
        self.ttl, self.size = ttl, size
        self._pages: dict[str, Held] = {}

    async def page(self, db: Database, token: str) -> Held | None:
        """The page as held (its HTML None until rendered once), or None if unknown."""
        now = time.monotonic()
        held = self._pages.get(token)
        if held is not None and now - held.at < self.ttl:
            return held
        page = await fallbacks.page(db, token)
        if page is None:
            self._pages.pop(token, None)
            return None
        if len(self._pages) >= self.size:  # drop the oldest half: cheap, and rare
            for old in list(self._pages)[: self.size // 2]:
                del self._pages[old]
        held = self._pages[token] = Held(now, page)
        return held


@dataclasses.dataclass(frozen=True, slots=True)
class Web:
    """What the page and media endpoints need, built once at start."""

    db: Database
    blobs: BlobStore
    clock: Callable[[], dt.datetime]
    pages: PageCache = dataclasses.field(default_factory=PageCache)


# Tokens are URL-safe base64 from `secrets.token_urlsafe`: at least 16 random bytes
# (22 characters) for pages, 24 (32) for MO messages; the columns hold at most 64.
_TOKEN = re.compile(r"[A-Za-z0-9_-]{22,64}")
# Looked up in place of a malformed token: '!' is outside the alphabet, so no row holds it.
_DECOY = "!" * 32


def lookup_key(token: str) -> str:
    """The token to look up in the database: `token`, or a decoy when it is malformed.

    Why wrong tokens leak nothing by timing: every request does the same work before it is
    answered, one lookup by token on a unique B-tree index, whether the token is malformed
    (the decoy is looked up, so a bad format is not answered early), unknown or known. The
    cost of that lookup is set by the depth of the tree, not by the token; how many leading
    characters of a guess match a stored key changes only a memcmp of at most 64 bytes, a
    few nanoseconds under the tens of microseconds of jitter of every database round trip.
    And the token's ≥128 random bits make guessing hopeless even with a prefix known.
    SQLite and PostgreSQL (deterministic collations) compare text byte for byte, so the
    index finds exactly the token asked for, never a near miss."""
    return token if _TOKEN.fullmatch(token) else _DECOY


async def hosted_page(web: Web, request: Request) -> Response:
    """GET/HEAD /m/{token}: the page (an open is recorded on GET), 410 expired, 404."""
    token = lookup_key(request.path_params["token"])
    held = await web.pages.page(web.db, token)
    if held is None:
        return not_found(request)
    page = held.page
    now = web.clock()
    if page.expired(now):
        return expired(request, page.link_expires_at)
    if request.method == "GET":
        await fallbacks.opened(web.db, token, now)
        log.info("page.opened", tracking_id=page.tracking_id)
    if held.html is None or held.gzipped is None:
        held.html = render("page.html", **page_context(token, page))
        held.gzipped = gzip.compress(held.html, GZIP_LEVEL, mtime=0)
    left = int((page.link_expires_at - now).total_seconds())
    cache = f"private, max-age={max(0, min(PAGE_MAX_AGE, left))}"
    return html_answer(request, 200, held.html, page_headers(cache), gzipped=held.gzipped)


def not_found(request: Request) -> Response:
    body = render("not_found.html")
    return html_answer(request, 404, body, page_headers("no-store"))


def expired(request: Request, expired_at: dt.datetime) -> Response:
    body = render("expired.html", expired_on=long_date(expired_at))
    return html_answer(request, 410, body, page_headers("private, max-age=3600"))


def html_answer(
    request: Request,
    status: int,
    body: bytes,
    headers: dict[str, str],
    *,
    gzipped: bytes | None = None,
) -> Response:
    """An HTML answer, gzip-compressed when the client takes gzip (RFC 9110 §12.5.3): a
    page's HTML shrinks to about a third, which on a slow phone link is most of its
    time. Each encoding has its own strong ETag (RFC 9110 §8.8.3), so a revalidation
    is answered 304 only for the bytes the client holds; `Vary` tells caches the answer
    depends on Accept-Encoding."""
    digest = hashlib.sha256(body).digest()[:16]
    etag = base64.urlsafe_b64encode(digest).decode().rstrip("=")
    headers = {**headers, "Vary": "Accept-Encoding"}
    if accepts_gzip(request.headers.get("accept-encoding")):
        body = gzipped if gzipped is not None else gzip.compress(body, GZIP_LEVEL, mtime=0)
        headers["Content-Encoding"] = "gzip"
        etag += "-gzip"
    headers["ETag"] = f'"{etag}"'
    if status == 200 and etag_matches(request.headers.get("if-none-match"), headers["ETag"]):
        return Response(status_code=304, headers=headers)
    return respond(request, status, body, HTML, headers)


def accepts_gzip(header: str | None) -> bool:
    """Whether Accept-Encoding (RFC 9110 §12.5.3) takes gzip: named (or `*`, gzip not being
    named) with a weight above zero."""
    weights: dict[str, float] = {}
    for item in (header or "").split(",")[:20]:
        coding, _, params = item.partition(";")
        name, weight = coding.strip().lower(), 1.0
        key, _, value = params.strip().partition("=")
        if key.strip().lower() == "q":
            try:
                weight = float(value)
            except ValueError:
                weight = 0.0
        weights.setdefault(name, weight)
    chosen = weights.get("gzip", weights.get("x-gzip", weights.get("*", 0.0)))
    return chosen > 0


def etag_matches(header: str | None, etag: str) -> bool:
    """If-None-Match (RFC 9110 §13.1.2): `*` or any listed tag, compared weakly."""
    if not header:
        return False
    tags = [tag.strip().removeprefix("W/") for tag in header.split(",")]
    return "*" in tags or etag in tags


def page_context(token: str, page: fallbacks.Page) -> Context:
    """What page.html shows: slides with their parts numbered as `/media/{token}/{n}`."""
    n, seen = 0, collections.Counter[MediaKind]()
    slides: list[Context] = []
    for slide in page.slides:
        media: list[Context] = []
        downloads: list[Context] = []
        for part in slide.parts:
            n += 1
            seen[part.kind] += 1
            first = part.kind is MediaKind.IMAGE and seen[MediaKind.IMAGE] == 1
            item = view_of(part, f"../media/{token}/{n}", seen[part.kind], first=first)
            (media if part.kind in PLAYED else downloads).append(item)
        slides.append({"text": slide.text, "media": media, "downloads": downloads})
    return {
        "title": page.subject or "Your message",
        "slides": slides,
        "expires": long_date(page.link_expires_at),
        "image_sizes": IMAGE_SIZES,
    }


def view_of(part: WebPart, url: str, ordinal: int, *, first: bool) -> Context:
    """One part as page.html uses it. The URL is relative (`../media/...`), so the page
    works the same behind a reverse proxy that mounts mmsgate under a path."""
    kind = part.kind
    noun = _NOUNS.get(kind, "File")
    return {
        "kind": kind.value,
        "url": url,
        "content_type": part.content_type,
        "width": part.width,
        "height": part.height,
        "alt": part.alt or f"{noun} {ordinal} of the message",
        # Lazy images load as they near the screen; the first image is what the reader
        # sees at once (the largest paint), so it is fetched right away, and first.
        "loading": "eager" if first else "lazy",
        "priority": first,
        "srcset": _srcset(part, url),
        "label": DOWNLOADS.get(kind, "Download file"),
        "name": file_name(part) if part.name else None,
    }


_NOUNS = {MediaKind.IMAGE: "Image", MediaKind.VIDEO: "Video", MediaKind.AUDIO: "Audio"}


def _srcset(part: WebPart, url: str) -> str | None:
    """`small 480w, full 800w` when the image has a small rendition, so a phone-width slot
    gets the narrow one; None (the `src` alone) otherwise."""
    small, width = part.small, part.width
    if part.kind is not MediaKind.IMAGE or small is None or not width or not small.width:
        return None
    return f"{url}?{SMALL} {small.width}w, {url} {width}w"


def file_name(part: WebPart) -> str:
    """The name a part downloads under: its own, without any path, quote or control
    character, ending in its kind's extension (`flyer` → `flyer.pdf`), else a generic one."""
    stem, extension = FILE_NAMES.get(part.kind, ("file", ""))
    raw = (part.name or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in raw if c.isprintable() and c != '"').strip(" .")[:100] or stem
    if extension and not name.lower().endswith(extension):
        name += extension
    return name


_URL = re.compile(r"\bhttps?://[^\s<>\"'`]+", re.IGNORECASE)
_TRAILING = ".,;:!?'\"*_"
_REL = "noopener noreferrer nofollow"


def linkify(text: str) -> Markup:
    """`text` escaped for HTML, with its http(s) URLs as links. Only what `_URL` finds
    (always http or https, never `javascript:` or `data:`) becomes an href, and every
    piece, link or not, goes through `escape`, so markup in the text stays text."""
    out, last = [], 0
    for found in _URL.finditer(text):
        url = _trim(found.group(0))
        start = found.start()
        out.append(escape(text[last:start]))
        out.append(_anchor(url))
        last = start + len(url)
    out.append(escape(text[last:]))
    return Markup("").join(out)


def _trim(url: str) -> str:
    """A URL without the punctuation that ends the sentence around it; a closing
    parenthesis stays when it closes one opened inside the URL (Wikipedia links)."""
    while url:
        if url[-1] in _TRAILING or (url[-1] == ")" and url.count(")") > url.count("(")):
            url = url[:-1]
        else:
            break
    return url


def _anchor(url: str) -> Markup:
    try:
        parts = urllib.parse.urlsplit(url)
        ok = parts.scheme.lower() in ("http", "https") and bool(parts.hostname)
    except ValueError:  # e.g. a malformed IPv6 literal
        ok = False
    if not ok:
        return escape(url)
    return Markup('<a href="{0}" rel="{1}">{0}</a>').format(url, _REL)


def long_date(at: dt.datetime) -> str:
    """`1 March 2027`: unambiguous everywhere, and independent of the server's locale."""
    day = at.astimezone(dt.UTC)
    return f"{day.day} {_MONTHS[day.month - 1]} {day.year}"


@functools.cache
def _environment() -> tuple[jinja2.Environment, Markup, str]:
    """The templates, the page's CSS, and the CSP source that allows exactly that CSS."""
    env = html.templates("mmsgate.web")
    env.filters["linkify"] = linkify
    css = importlib.resources.files("mmsgate.web").joinpath("templates/page.css").read_text()
    css = css.strip()
    digest = base64.b64encode(hashlib.sha256(css.encode()).digest()).decode()
    return env, Markup(css), f"'sha256-{digest}'"  # noqa: S704 - our own stylesheet


def render(template: str, **context: object) -> bytes:
    env, css, _ = _environment()
    return env.get_template(template).render(css=css, **context).encode()


def page_headers(cache: str) -> dict[str, str]:
    """Headers of every HTML answer: nothing but the page's own images, media and the one
    stylesheet (by hash) may load; no script at all; no referrer to the links it holds.
    `data:` images are allowed for the empty icon (`<link rel="icon" href="data:,">`) that
    keeps browsers from asking for a /favicon.ico there is none of."""
    _, _, style = _environment()
    csp = (
        f"default-src 'none'; img-src 'self' data:; media-src 'self'; style-src {style}; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    return {**html.secure_headers(csp, cache), "X-Robots-Tag": "noindex, nofollow"}


def respond(
    request: Request, status: int, body: bytes, media_type: str, headers: dict[str, str]
) -> Response:
    """A response whose body is left out for HEAD, with the length GET would have. The
    type goes out as given: no charset is added to a text/vcard or text/calendar part,
    whose encoding the part itself declares."""
    headers = {**headers, "Content-Type": media_type}
    if request.method == "HEAD":
        headers["Content-Length"] = str(len(body))
        body = b""
    return Response(body, status_code=status, headers=headers)
