"""The hosted page /m/{token} and the media behind it, in-process on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import re
import secrets

import pytest

from mmsgate import mm7_codec as mm7
from mmsgate.models import WebPart
from mmsgate.store import fallbacks
from mmsgate.web.page import linkify
from mmsgate.web.parts import UNSATISFIABLE, byte_range, page_part
from tests import samples
from tests.conftest import Gateway, MediaServer
from tests.web import media
from tests.web.conftest import Clock, Hosted, fall_back, part, send

pytestmark = pytest.mark.anyio


def tag(html: str, name: str) -> list[str]:
    """Every opening `<name ...>` tag of `html`, in order."""
    return re.findall(rf"<{name}\b[^>]*>", html)


def attr(tag_text: str, name: str) -> str | None:
    found = re.search(rf'\s{name}="([^"]*)"', tag_text)
    return found.group(1) if found else None


# --- the page


async def test_page_shows_the_subject_and_every_slide_in_order(
    site: Gateway, hosted: Hosted
) -> None:
    """200 HTML: the subject as the heading, one section per slide in order, the image,
    the video and the audio with native players, the text, and the four download buttons."""
    answer = await site.client.get(f"/m/{hosted.token}")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "text/html; charset=utf-8"
    html = answer.text
    assert '<html lang="en">' in html
    assert '<meta name="viewport" content="width=device-width,initial-scale=1">' in html
    assert '<h1 dir="auto">Spring sale</h1>' in html
    assert [attr(s, "aria-label") for s in tag(html, "section")] == [
        "Part 1 of 3",
        "Part 2 of 3",
        "Part 3 of 3",
    ]
    order = [html.index(s) for s in ("Our spring sale", "<video", "<audio", "Add to contacts")]
    assert order == sorted(order)
    assert html.index("<video") < html.index("Watch")  # pictures above their text, as in MMS
    labels = re.findall(r'<a class="button"[^>]*>([^<]+?) ?<', html)
    assert labels == ["Add to contacts (vCard)", "Add to calendar", "Open PDF", "Add to Wallet"]


async def test_media_elements_carry_what_a_phone_needs(site: Gateway, hosted: Hosted) -> None:
    """The image has its size, alt text and lazy/async decoding; video and audio load only
    their metadata, play inline, and name their MP4/AAC sources; every URL is a part number."""
    html = (await site.client.get(f"/m/{hosted.token}")).text
    [img] = tag(html, "img")
    assert (attr(img, "width"), attr(img, "height")) == ("800", "600")
    assert attr(img, "alt") == "Image 1 of the message"
    assert attr(img, "decoding") == "async"
    assert attr(img, "loading") in ("lazy", "eager")
    assert attr(img, "src") == f"../media/{hosted.token}/1"
    [video] = tag(html, "video")
    assert " controls " in video
    assert " playsinline" in video
    assert attr(video, "preload") == "metadata"
    [audio] = tag(html, "audio")
    assert attr(audio, "preload") == "metadata"
    sources = [(attr(s, "src"), attr(s, "type")) for s in tag(html, "source")]
    assert sources == [
        (f"../media/{hosted.token}/2", "video/mp4"),
        (f"../media/{hosted.token}/3", "audio/mp4"),
    ]


async def test_images_take_their_alt_text_when_given(
    site: Gateway, media_server: MediaServer, clock: Clock
) -> None:
    """An `alt` stored with an image is its alt text, escaped; a subject-less page has a
    neutral heading; later images load lazily."""
    [tracking_id] = await send(site, media_server, "17745550101")
    key = await site.services.blobs.put(samples.jpeg())
    slides = [
        {"text": None, "parts": [part("image", "image/jpeg", key, b"", alt='A "red" <box>')]},
        {"text": None, "parts": [part("image", "image/jpeg", key, b"")]},
    ]
    now = clock()
    page = await fall_back(
        site.services.db, tracking_id, slides, now=now, expires=now.replace(year=2027), subject=None
    )
    html = (await site.client.get(f"/m/{page.token}")).text
    first, second = tag(html, "img")
    assert 'alt="A &#34;red&#34; &lt;box&gt;"' in first
    assert attr(second, "alt") == "Image 2 of the message"
    assert attr(second, "loading") == "lazy"
    assert '<h1 dir="auto">Your message</h1>' in html
    assert "width=" not in first  # no size stored: none invented


async def test_text_is_escaped_and_a_script_in_it_is_inert(site: Gateway, hosted: Hosted) -> None:
    """Markup in slide text is shown as text: the page holds no <script> element at all."""
    html = (await site.client.get(f"/m/{hosted.token}")).text
    assert "<script" not in html
    assert "Watch &lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; this" in html


async def test_links_in_text_are_safe(site: Gateway, hosted: Hosted) -> None:
    """An http(s) URL in text becomes a link with rel noopener/noreferrer/nofollow, its `&`
    escaped, and the full stop after it left out of it."""
    html = (await site.client.get(f"/m/{hosted.token}")).text
    assert (
        'now: <a href="https://shop.example/sale?a=1&amp;b=2" rel="noopener noreferrer nofollow">'
        "https://shop.example/sale?a=1&amp;b=2</a>.</p>"
    ) in html


@pytest.mark.parametrize(
    ("text", "html"),
    [
        (
            "see http://a.example/x",
            'see <a href="http://a.example/x" rel="noopener noreferrer nofollow">http://a.example/x</a>',
        ),
        ("javascript:alert(1)", "javascript:alert(1)"),
        ("x javascript://a.example/%0aalert(1)", "x javascript://a.example/%0aalert(1)"),
        ("data:text/html,<b>hi</b>", "data:text/html,&lt;b&gt;hi&lt;/b&gt;"),
        (
            'https://a.example/"><img src=x onerror=alert(1)>',
            '<a href="https://a.example/" rel="noopener noreferrer nofollow">https://a.example/</a>&#34;&gt;&lt;img src=x onerror=alert(1)&gt;',
        ),
        (
            "(https://en.example/wiki/A_(b))",
            '(<a href="https://en.example/wiki/A_(b)" rel="noopener noreferrer nofollow">https://en.example/wiki/A_(b)</a>)',
        ),
        (
            "HTTPS://A.EXAMPLE!",
            '<a href="HTTPS://A.EXAMPLE" rel="noopener noreferrer nofollow">HTTPS://A.EXAMPLE</a>!',
        ),
        ("https://", "https://"),
        ("http://[::1", "http://[::1"),
        ("nohttps://a.example", "nohttps://a.example"),
        ("a & b < c", "a &amp; b &lt; c"),
    ],
)
def test_linkify_links_only_http_urls_and_escapes_everything(text: str, html: str) -> None:
    """Only http(s) URLs with a host become links; everything else is escaped text."""
    assert str(linkify(text)) == html


async def test_downloads_have_their_types_and_file_names(site: Gateway, hosted: Hosted) -> None:
    """vCard, iCal and pkpass download as attachments named after their source with the
    right extension; the PDF opens in place; each with its own content type."""
    expected = {
        4: ("text/vcard", 'attachment; filename="ann.vcf"', media.VCARD),
        5: ("text/calendar", 'attachment; filename="sale.ics"', media.ICAL),
        6: ("application/pdf", 'inline; filename="flyer.pdf"', media.pdf()),
        7: ("application/vnd.apple.pkpass", 'attachment; filename="ticket.pkpass"', media.pkpass()),
    }
    for n, (content_type, disposition, data) in expected.items():
        answer = await site.client.get(f"/media/{hosted.token}/{n}")
        assert answer.status_code == 200
        assert answer.headers["content-type"] == content_type
        assert answer.headers["content-disposition"].startswith(disposition + "; filename*=UTF-8''")
        assert answer.content == data


@pytest.mark.parametrize(
    ("kind", "content_type", "name", "served_type", "disposition"),
    [
        (
            "ical",
            "text/calendar",
            "../../etc/x.ics",
            "text/calendar",
            "attachment; filename=\"x.ics\"; filename*=UTF-8''x.ics",
        ),
        (
            "vcard",
            "text/x-vcard",
            'a"b\r\n.vcf',
            "text/x-vcard",
            "attachment; filename=\"ab.vcf\"; filename*=UTF-8''ab.vcf",
        ),
        (
            "passbook",
            "application/vnd.apple.pkpass",
            None,
            "application/vnd.apple.pkpass",
            "attachment; filename=\"pass.pkpass\"; filename*=UTF-8''pass.pkpass",
        ),
        (
            "pdf",
            "application/pdf",
            "Prospekt für Sie",
            "application/pdf",
            "inline; filename=\"Prospekt f_r Sie.pdf\"; filename*=UTF-8''Prospekt%20f%C3%BCr%20Sie.pdf",
        ),
        (
            "image",
            "text/html",
            "x.html",
            "application/octet-stream",
            "attachment; filename=\"x.html\"; filename*=UTF-8''x.html",
        ),
        ("image", "image/png", "x.png", "image/png", None),
    ],
)
def test_parts_go_out_with_a_safe_type_and_file_name(
    kind: str, content_type: str, name: str | None, served_type: str, disposition: str | None
) -> None:
    """A part's stored type is kept only when it is one the page prepares for its kind, and
    a download's name loses any path, quote or control character and gains its extension."""
    stored = part(kind, content_type, "k" * 64, b"", name=name)
    served = page_part(WebPart.from_data(stored), dt.timedelta(days=1))
    assert (served.content_type, served.disposition) == (served_type, disposition)


async def test_page_headers_keep_it_private_strict_and_small(site: Gateway, hosted: Hosted) -> None:
    """The page is privately cacheable for a short while, loads nothing but its own media
    and its one stylesheet (allowed by hash), runs no script, and sends no referrer."""
    answer = await site.client.get(f"/m/{hosted.token}")
    headers = answer.headers
    assert headers["cache-control"] == "private, max-age=300"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"
    csp = dict(d.strip().split(" ", 1) for d in headers["content-security-policy"].split(";"))
    assert csp["default-src"] == "'none'"
    assert csp["img-src"] == "'self' data:"
    assert csp["media-src"] == "'self'"
    assert "script-src" not in csp
    [style] = re.findall(r"<style>(.*?)</style>", answer.text, re.DOTALL)
    digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    assert csp["style-src"] == f"'sha256-{digest}'"
    assert not re.search(
        r"""(src|href)=["']?(https?:)?//""", answer.text.replace("https://shop.example", "")
    )
    assert len(answer.content) < 8_000


async def test_the_page_is_cached_no_longer_than_its_link_lives(
    site: Gateway, hosted: Hosted, clock: Clock
) -> None:
    """A minute before expiry the page and its media may be cached for a minute at most."""
    clock.advance(days=30, minutes=-1)
    page = await site.client.get(f"/m/{hosted.token}")
    assert page.headers["cache-control"] == "private, max-age=60"
    part = await site.client.get(f"/media/{hosted.token}/1")
    assert part.headers["cache-control"] == "private, max-age=60, immutable"


async def test_head_answers_without_a_body(site: Gateway, hosted: Hosted) -> None:
    """HEAD of the page and of a part: status and headers of GET, no body."""
    get = await site.client.get(f"/m/{hosted.token}")
    head = await site.client.head(f"/m/{hosted.token}")
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == get.headers["content-length"]
    assert head.headers["content-encoding"] == get.headers["content-encoding"] == "gzip"
    part = await site.client.head(f"/media/{hosted.token}/2")
    assert (part.status_code, part.content) == (200, b"")
    assert part.headers["content-length"] == str(len(media.mp4()))


# --- media


async def test_media_is_cached_long_and_revalidated_by_etag(site: Gateway, hosted: Hosted) -> None:
    """A part: its bytes, private long immutable caching, an ETag; the same ETag back is 304
    with no body."""
    answer = await site.client.get(f"/media/{hosted.token}/1")
    assert answer.status_code == 200
    assert answer.content == media.photo()
    assert answer.headers["content-type"] == "image/jpeg"
    assert answer.headers["cache-control"] == f"private, max-age={30 * 86400}, immutable"
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["accept-ranges"] == "bytes"
    assert "content-disposition" not in answer.headers
    etag = answer.headers["etag"]
    again = await site.client.get(f"/media/{hosted.token}/1", headers={"If-None-Match": etag})
    assert (again.status_code, again.content) == (304, b"")
    assert again.headers["etag"] == etag
    weak = await site.client.get(
        f"/media/{hosted.token}/1", headers={"If-None-Match": f'"x", W/{etag}'}
    )
    assert weak.status_code == 304
    other = await site.client.get(f"/media/{hosted.token}/1", headers={"If-None-Match": '"x"'})
    assert other.status_code == 200


@pytest.mark.parametrize(
    ("header", "status", "first", "last"),
    [
        ("bytes=0-99", 206, 0, 99),
        ("bytes=100-", 206, 100, None),
        ("bytes=-50", 206, -50, None),
        ("bytes=0-99999999", 206, 0, None),
        ("bytes=0-0", 206, 0, 0),
    ],
)
async def test_video_is_served_by_byte_ranges(
    site: Gateway, hosted: Hosted, header: str, status: int, first: int, last: int | None
) -> None:
    """A single byte range of the video is 206 with its Content-Range and just those bytes,
    as Safari and Chromium ask for them to play and seek."""
    video = media.mp4()
    size = len(video)
    answer = await site.client.get(f"/media/{hosted.token}/2", headers={"Range": header})
    assert answer.status_code == status
    start = first % size
    end = size - 1 if last is None else last
    assert answer.headers["content-range"] == f"bytes {start}-{end}/{size}"
    assert answer.content == video[start : end + 1]
    assert answer.headers["content-length"] == str(end + 1 - start)
    assert answer.headers["content-type"] == "video/mp4"


async def test_ranges_that_cannot_be_served_as_asked(site: Gateway, hosted: Hosted) -> None:
    """Past the end: 416 with the size; several ranges, a malformed header, or an If-Range
    naming another version: the whole part, 200."""
    size = len(media.m4a())
    url = f"/media/{hosted.token}/3"
    past = await site.client.get(url, headers={"Range": f"bytes={size}-"})
    assert past.status_code == 416
    assert past.headers["content-range"] == f"bytes */{size}"
    assert past.content == b""
    for headers in (
        {"Range": "bytes=0-1,5-9"},
        {"Range": "lines=1-2"},
        {"Range": "bytes=9-1"},
        {"Range": "bytes=0-9", "If-Range": '"another"'},
    ):
        answer = await site.client.get(url, headers=headers)
        assert (answer.status_code, len(answer.content)) == (200, size), headers
    etag = (await site.client.get(url)).headers["etag"]
    same = await site.client.get(url, headers={"Range": "bytes=0-9", "If-Range": etag})
    assert same.status_code == 206


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("bytes=0-9", (0, 9)),
        ("bytes=-0", UNSATISFIABLE),
        ("bytes=-1000", (0, 99)),
        ("bytes=100-", UNSATISFIABLE),
        ("bytes=-", None),
        ("bytes=" + "9" * 5000 + "-", None),
        ("bytes = 5-", (5, 99)),
    ],
)
def test_byte_range_reads_one_range(header: str | None, expected: tuple[int, int] | None) -> None:
    """The Range header of a 100-byte part, read as RFC 9110 §14.1.2 says."""
    assert byte_range(header, 100) == expected


async def test_a_part_number_that_is_not_there_is_404(site: Gateway, hosted: Hosted) -> None:
    """Part 0, a part past the last, and a non-number are 404."""
    for n in ("0", "8", "x", "1.jpg", "99999999999", "١"):
        answer = await site.client.get(f"/media/{hosted.token}/{n}")
        assert answer.status_code == 404, n


# --- opens


async def test_opens_are_counted_and_the_first_is_kept(
    site: Gateway, hosted: Hosted, clock: Clock
) -> None:
    """Each GET of the page counts an open; the first open's time stays, and shows on the
    status API; HEAD and media requests are not opens."""
    first = clock()
    await site.client.head(f"/m/{hosted.token}")
    await site.client.get(f"/media/{hosted.token}/1")
    assert (await fallbacks.status(site.services.db, hosted.tracking_id)).opens == 0
    assert (await site.client.get(f"/m/{hosted.token}")).status_code == 200
    clock.advance(hours=2)
    assert (await site.client.get(f"/m/{hosted.token}")).status_code == 200
    row = await fallbacks.status(site.services.db, hosted.tracking_id)
    assert (row.opens, row.opened_at) == (2, first)
    status = await site.client.get(
        f"/v1/messages/{hosted.tracking_id}", headers={"x-api-key": site.api_key}
    )
    assert status.json()["fallback"]["opened_at"].startswith("2026-03-01T12:00:00")


async def test_opens_at_once_are_all_counted(site: Gateway, hosted: Hosted) -> None:
    """Thirty phones opening the page at the same moment: thirty opens counted (they share
    commits, none is lost)."""
    answers = await asyncio.gather(*(site.client.get(f"/m/{hosted.token}") for _ in range(30)))
    assert {a.status_code for a in answers} == {200}
    row = await fallbacks.status(site.services.db, hosted.tracking_id)
    assert row.opens == 30
    assert row.opened_at is not None


# --- unknown and expired


@pytest.mark.parametrize(
    "token",
    [
        secrets.token_urlsafe(16),  # well formed, unknown
        secrets.token_urlsafe(24),
        "short",
        "a" * 65,
        "x" * 21 + "!",
        "%00" + "a" * 30,
        "a" * 30 + "%20",
        "ü" * 22,
    ],
)
async def test_unknown_and_malformed_tokens_are_the_same_404(
    site: Gateway, hosted: Hosted, token: str
) -> None:
    """A token no page has, well formed or not, is 404 with one small page, never cached;
    its media too."""
    known_404 = await site.client.get(f"/m/{secrets.token_urlsafe(16)}")
    answer = await site.client.get(f"/m/{token}")
    assert answer.status_code == 404
    assert answer.content == known_404.content
    assert "Not found" in answer.text
    assert answer.headers["cache-control"] == "no-store"
    assert len(answer.content) < 4_000
    assert (await site.client.get(f"/media/{token}/1")).status_code == 404


async def test_after_expiry_the_page_and_its_media_are_gone(
    site: Gateway, hosted: Hosted, clock: Clock
) -> None:
    """Once the link expires the page is 410 saying so, with no trace of the content, and
    every part is 410 with none of its bytes; no open is counted."""
    clock.advance(days=30)
    answer = await site.client.get(f"/m/{hosted.token}")
    assert answer.status_code == 410
    assert "<h1>This content has expired</h1>" in answer.text
    assert "31 March 2026" in answer.text
    assert "Spring sale" not in answer.text
    assert "/media/" not in answer.text
    assert answer.headers["content-security-policy"].startswith("default-src 'none'")
    for n in range(1, 9):
        part = await site.client.get(f"/media/{hosted.token}/{n}")
        assert part.status_code == 410
        assert part.content == b"This content has expired.\n"
        assert part.headers["content-type"] == "text/plain; charset=utf-8"
    assert (await fallbacks.status(site.services.db, hosted.tracking_id)).opens == 0


async def test_a_page_just_served_still_expires_on_time(
    site: Gateway, hosted: Hosted, clock: Clock
) -> None:
    """A page read moments ago (held for a few seconds to serve a burst of readers) is 410
    the instant its link expires: expiry is checked on every request."""
    assert (await site.client.get(f"/m/{hosted.token}")).status_code == 200
    assert (await site.client.get(f"/media/{hosted.token}/1")).status_code == 200
    clock.advance(days=30)
    assert (await site.client.get(f"/m/{hosted.token}")).status_code == 410
    assert (await site.client.get(f"/media/{hosted.token}/1")).status_code == 410
    assert (await fallbacks.status(site.services.db, hosted.tracking_id)).opens == 1


# --- MO media


async def test_mo_parts_are_still_served_and_sandboxed(site: Gateway) -> None:
    """Parts of an MO message are served under its token: media inline, anything else (an
    HTML page a handset sent) as a sandboxed download."""
    photo = samples.jpeg()
    html = b"<script>alert(1)</script>"
    content_type, body = mm7.encode_deliver(
        "mo-1", "17745550100", "28444", [("image/jpeg", photo), ("text/html", html)]
    )
    answer = await site.mm7(body, content_type)
    assert mm7.decode_response(answer.headers["content-type"], answer.content).status_code == 1000
    async with site.services.db.read() as conn:
        token = (await conn.exec_driver_sql("SELECT token FROM mo_messages")).scalar_one()
    first = await site.client.get(f"/media/{token}/1")
    assert (first.status_code, first.content) == (200, photo)
    assert first.headers["content-type"] == "image/jpeg"
    assert "content-disposition" not in first.headers
    assert first.headers["content-security-policy"] == "default-src 'none'; sandbox"
    second = await site.client.get(f"/media/{token}/2")
    assert second.content == html
    assert second.headers["content-disposition"] == "attachment"
    assert second.headers["content-security-policy"] == "default-src 'none'; sandbox"
    again = await site.client.get(
        f"/media/{token}/1", headers={"If-None-Match": first.headers["etag"]}
    )
    assert again.status_code == 304
    assert (await site.client.get(f"/media/{token}/3")).status_code == 404
    assert (await site.client.get(f"/m/{token}")).status_code == 404  # an MO token has no page
