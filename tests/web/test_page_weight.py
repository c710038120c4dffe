"""What the hosted page costs a phone: images offered in two widths with the first one
fetched first, and HTML compressed for clients that take gzip."""

from __future__ import annotations

import datetime as dt
import gzip
import io
import re

import pytest
from PIL import Image

from mmsgate import models
from mmsgate.media import prepare
from mmsgate.web import page as web_page
from tests.conftest import Gateway, MediaServer
from tests.web import media
from tests.web.conftest import Clock, Hosted, fall_back, part, send

pytestmark = pytest.mark.anyio


async def raw_get(site: Gateway, url: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and the body as it went over the wire (not decompressed)."""
    async with site.client.stream("GET", url, headers=headers) as answer:
        body = b"".join([chunk async for chunk in answer.aiter_raw()])
        return answer.status_code, dict(answer.headers), body


def tags(html: str, name: str) -> list[str]:
    return re.findall(rf"<{name}\b[^>]*>", html)


def attr(tag: str, name: str) -> str | None:
    found = re.search(rf'\s{name}="([^"]*)"', tag)
    return found.group(1) if found else None


class TestImages:
    async def test_the_image_offers_its_small_rendition_by_width(
        self, site: Gateway, hosted: Hosted
    ) -> None:
        """An image with a small rendition has `srcset` naming both widths and `sizes`
        describing its slot; `src` stays the full copy."""
        html = (await site.client.get(f"/m/{hosted.token}")).text
        [img] = tags(html, "img")
        url = f"../media/{hosted.token}/1"
        _, width, _ = media.small_photo()
        assert attr(img, "src") == url
        assert attr(img, "srcset") == f"{url}?size=small {width}w, {url} 800w"
        assert attr(img, "sizes") == "(min-width: 40rem) 38rem, calc(100vw - 2rem)"

    async def test_the_first_image_is_fetched_first_and_the_others_lazily(
        self, site: Gateway, hosted: Hosted, clock: Clock, media_server: MediaServer
    ) -> None:
        """The first image, even after a video, is eager with fetchpriority=high; the
        images after it are lazy without it, and one without a small copy has no srcset."""
        blobs = site.services.blobs
        clip, still = media.mp4(), media.photo(400, 300)
        video = part("video", "video/mp4", await blobs.put(clip), clip, width=320, height=240)
        plain = part("image", "image/jpeg", await blobs.put(still), still, width=400, height=300)
        [with_small] = hosted.slides[0]["parts"]
        slides = [{"text": None, "parts": [video, plain, with_small]}]
        [tracking_id] = await send(site, media_server, "17745550102")
        now = clock()
        expires = now + dt.timedelta(days=30)
        later = await fall_back(site.services.db, tracking_id, slides, now=now, expires=expires)
        html = (await site.client.get(f"/m/{later.token}")).text
        first, second = tags(html, "img")
        assert (attr(first, "loading"), attr(first, "fetchpriority")) == ("eager", "high")
        assert attr(first, "srcset") is None
        assert (attr(second, "loading"), attr(second, "fetchpriority")) == ("lazy", None)
        assert attr(second, "srcset") is not None

    async def test_the_small_rendition_is_smaller_and_cached_like_the_others(
        self, site: Gateway, hosted: Hosted
    ) -> None:
        """`?size=small` serves a narrower JPEG of fewer bytes, with its own ETag, cached
        and revalidated like every part."""
        full = await site.client.get(f"/media/{hosted.token}/1")
        small = await site.client.get(f"/media/{hosted.token}/1?size=small")
        assert small.status_code == 200
        assert small.headers["content-type"] == "image/jpeg"
        assert len(small.content) < len(full.content)
        with (
            Image.open(io.BytesIO(small.content)) as narrow,
            Image.open(io.BytesIO(full.content)) as wide,
        ):
            assert narrow.width == prepare.SMALL_WIDTH < wide.width
            assert narrow.width * narrow.height < wide.width * wide.height
        assert small.headers["etag"] != full.headers["etag"]
        assert small.headers["cache-control"] == full.headers["cache-control"]
        again = await site.client.get(
            f"/media/{hosted.token}/1?size=small", headers={"If-None-Match": small.headers["etag"]}
        )
        assert again.status_code == 304

    @pytest.mark.parametrize(("n", "query"), [(2, "size=small"), (1, "size=huge"), (1, "size=")])
    async def test_a_rendition_that_is_not_there_is_404(
        self, site: Gateway, hosted: Hosted, n: int, query: str
    ) -> None:
        """A video has no small rendition, and no other size exists: 404."""
        answer = await site.client.get(f"/media/{hosted.token}/{n}?{query}")
        assert answer.status_code == 404


class TestGzip:
    async def test_the_page_is_gzipped_for_a_client_that_takes_it(
        self, site: Gateway, hosted: Hosted
    ) -> None:
        """With Accept-Encoding: gzip the HTML comes compressed (smaller, same page once
        decompressed), says so, and varies by Accept-Encoding."""
        url = f"/m/{hosted.token}"
        status, plain_headers, plain = await raw_get(site, url, **{"Accept-Encoding": "identity"})
        assert status == 200
        assert "content-encoding" not in plain_headers
        assert plain_headers["vary"] == "Accept-Encoding"
        status, headers, packed = await raw_get(site, url, **{"Accept-Encoding": "br, gzip;q=0.8"})
        assert status == 200
        assert headers["content-encoding"] == "gzip"
        assert headers["vary"] == "Accept-Encoding"
        assert headers["content-length"] == str(len(packed))
        assert len(packed) < len(plain)
        assert gzip.decompress(packed) == plain

    async def test_each_encoding_has_its_own_etag(self, site: Gateway, hosted: Hosted) -> None:
        """The gzip and identity answers have different ETags; each revalidates to 304 only
        for the encoding it names."""
        url = f"/m/{hosted.token}"
        gz = {"Accept-Encoding": "gzip"}
        identity = {"Accept-Encoding": "identity"}
        _, packed, _ = await raw_get(site, url, **gz)
        _, plain, _ = await raw_get(site, url, **identity)
        assert packed["etag"] != plain["etag"]
        status, _, _ = await raw_get(site, url, **gz, **{"If-None-Match": packed["etag"]})
        assert status == 304
        status, _, _ = await raw_get(site, url, **identity, **{"If-None-Match": packed["etag"]})
        assert status == 200
        status, _, _ = await raw_get(site, url, **identity, **{"If-None-Match": plain["etag"]})
        assert status == 304

    async def test_the_404_and_410_pages_are_gzipped_too(
        self, site: Gateway, hosted: Hosted, clock: Clock
    ) -> None:
        """Every HTML answer takes the client's gzip, whatever its status."""
        status, headers, body = await raw_get(site, "/m/" + "x" * 22, **{"Accept-Encoding": "gzip"})
        assert (status, headers["content-encoding"]) == (404, "gzip")
        assert b"<html" in gzip.decompress(body)
        clock.advance(days=31)
        status, headers, body = await raw_get(
            site, f"/m/{hosted.token}", **{"Accept-Encoding": "gzip"}
        )
        assert (status, headers["content-encoding"]) == (410, "gzip")
        assert b"expired" in gzip.decompress(body)

    @pytest.mark.parametrize(
        ("header", "takes"),
        [
            (None, False),
            ("", False),
            ("identity", False),
            ("gzip", True),
            ("GZip", True),
            ("deflate, gzip;q=0.5", True),
            ("gzip;q=0", False),
            ("gzip; q=0.000", False),
            ("*", True),
            ("*;q=0", False),
            ("gzip;q=0, *", False),
            ("x-gzip", True),
            ("gzip;q=nonsense", False),
        ],
    )
    def test_accept_encoding_is_read_with_its_weights(
        self, header: str | None, takes: bool
    ) -> None:
        """gzip is taken when named, or covered by `*`, with a weight above zero."""
        assert web_page.accepts_gzip(header) is takes


async def test_the_web_copy_of_a_wide_image_comes_with_a_small_one() -> None:
    """for_web gives an image wider than SMALL_WIDTH a `small` rendition of fewer bytes and
    pixels, made from the source; a narrow image and a video get none."""
    blobs = {"wide": media.photo(1600, 1200), "narrow": media.photo(400, 300), "clip": media.mp4()}

    async def load(key: str) -> bytes:
        return blobs[key]

    async def save(data: bytes) -> str:
        key = f"saved-{len(blobs)}"
        blobs[key] = data
        return key

    def source(kind: str, content_type: str, key: str) -> dict[str, object]:
        return models.StoredPart(models.MediaKind(kind), f"/{key}", key, content_type, 0)

    parts = [
        source("image", "image/jpeg", "wide"),
        source("image", "image/jpeg", "narrow"),
        source("video", "video/mp4", "clip"),
    ]
    [slide] = await prepare.for_web([models.StoredSlide(None, tuple(parts), None)], load, save)
    wide, narrow, clip = slide.parts
    small = wide.small
    assert small is not None
    assert (small.width, small.height) == (prepare.SMALL_WIDTH, 360)
    assert wide.width is not None
    assert small.width is not None
    assert small.width < wide.width
    assert small.bytes == len(blobs[small.blob_key]) < wide.bytes
    with Image.open(io.BytesIO(blobs[small.blob_key])) as image:
        assert image.size == (prepare.SMALL_WIDTH, 360)
    assert narrow.small is None
    assert clip.small is None
