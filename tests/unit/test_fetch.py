"""Fetching slide media: the SSRF guard, redirects, caps, strict mode, timeouts, revalidation."""

from __future__ import annotations

import dataclasses
import gzip
import socket
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

import anyio
import pytest

import mmsgate
from mmsgate.codes import ErrorCode
from mmsgate.errors import MediaError
from mmsgate.http_client import address_allowed
from mmsgate.media.fetch import (
    CachedCopy,
    Fetched,
    Fetcher,
    fetch_all,
)
from mmsgate.models import MediaKind, MediaRef
from mmsgate.settings import MediaSettings

if TYPE_CHECKING:
    from tests.unit.conftest import MediaHandler, MediaServer

pytestmark = pytest.mark.anyio

LOCAL = MediaSettings(allow_private_networks=True, total_timeout=5.0)
JPEG_BYTES = b"\xff\xd8\xff\xe0" + b"x" * 1000
MB = 1024 * 1024


def image(url: str) -> MediaRef:
    return MediaRef(MediaKind.IMAGE, url)


async def fetch_error(settings: MediaSettings, ref: MediaRef, slide: int = 1) -> MediaError:
    async with Fetcher(settings) as fetcher:
        with pytest.raises(MediaError) as caught:
            await fetcher.fetch(ref, slide)
    return caught.value


class MemoryCache:
    """An in-memory FetchCache."""

    def __init__(self) -> None:
        self.copies: dict[str, CachedCopy] = {}
        self.remembered: list[Fetched] = []

    async def lookup(self, url: str) -> CachedCopy | None:
        return self.copies.get(url)

    async def remember(self, fetched: Fetched) -> None:
        self.remembered.append(fetched)
        self.copies[fetched.url] = CachedCopy(
            fetched.data, fetched.content_type, fetched.etag, fetched.last_modified
        )


async def wait_for(event: threading.Event) -> None:
    """Wait for a server-side event without blocking the event loop."""
    assert await anyio.to_thread.run_sync(event.wait, 5.0)


# --- success and plain failures --------------------------------------------------------------


async def test_fetches_a_body_with_content_length(media_server: MediaServer) -> None:
    """A 200 with Content-Length gives the body, its declared type and its validators."""
    url = media_server.serve(
        "/a.jpg", JPEG_BYTES, "Image/JPEG; charset=binary", headers={"ETag": '"v1"'}
    )
    async with Fetcher(LOCAL) as fetcher:
        fetched = await fetcher.fetch(image(url), 1)
    assert fetched == Fetched(url, JPEG_BYTES, "image/jpeg", '"v1"', None, revalidated=False)
    headers = media_server.seen[0].headers
    assert headers["User-Agent"] == f"mmsgate/{mmsgate.__version__}"
    assert headers["Host"] == f"127.0.0.1:{media_server.port}"


async def test_missing_content_type_is_left_empty(media_server: MediaServer) -> None:
    """Without a Content-Type the declared type is the empty string, for sniffing to decide."""
    url = media_server.serve("/a", JPEG_BYTES, None)
    async with Fetcher(LOCAL) as fetcher:
        assert (await fetcher.fetch(image(url), 1)).content_type == ""


async def test_lenient_mode_takes_a_chunked_body(media_server: MediaServer) -> None:
    """By default a chunked response without Content-Length is read like any other."""
    url = media_server.serve("/a.jpg", JPEG_BYTES, "image/jpeg", chunked=True)
    async with Fetcher(LOCAL) as fetcher:
        assert (await fetcher.fetch(image(url), 1)).data == JPEG_BYTES


async def test_http_error_names_the_status(media_server: MediaServer) -> None:
    """A 404 is E351 for an image, naming the status, the slide and the URL."""
    url = media_server.url("/missing.jpg")
    error = await fetch_error(LOCAL, image(url), slide=3)
    assert error.code is ErrorCode.IMAGE_FETCH
    assert error.info == f"Could not copy image in slide 3: HTTP 404 from {url}"


async def test_fetch_code_follows_the_kind(media_server: MediaServer) -> None:
    """The 'could not copy' code is the kind's own: E355 for a vCard."""
    error = await fetch_error(LOCAL, MediaRef(MediaKind.VCARD, media_server.url("/no.vcf")))
    assert error.code is ErrorCode.VCARD_FETCH
    assert error.info.startswith("Could not copy vCard in slide 1:")


async def test_error_text_never_holds_the_response_body(media_server: MediaServer) -> None:
    """A failing response's body, which might hold anything, stays out of the error."""
    url = media_server.serve("/a", b"secret stack trace", "text/plain", status=500)
    error = await fetch_error(LOCAL, image(url))
    assert "HTTP 500" in error.info
    assert "secret" not in error.info


async def test_empty_body_is_refused(media_server: MediaServer) -> None:
    """A zero-byte body is a fetch error saying it is empty."""
    url = media_server.serve("/empty.jpg", b"", "image/jpeg")
    error = await fetch_error(LOCAL, image(url))
    assert error.code is ErrorCode.IMAGE_FETCH
    assert error.info.endswith(f"{url} is empty")


@pytest.mark.parametrize("url", ["ftp://example.com/a.jpg", "file:///etc/passwd", "not a url"])
async def test_only_http_and_https_are_fetched(url: str) -> None:
    """Any scheme but http and https is refused before anything is resolved."""
    error = await fetch_error(LOCAL, image(url))
    assert error.code is ErrorCode.IMAGE_FETCH
    assert "is not an http or https URL" in error.info


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port bound but not listening, so connecting to it is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


async def test_refused_connection_is_a_fetch_error(closed_port: int) -> None:
    """Nobody listening on the port is a fetch error, not an exception from the HTTP client."""
    error = await fetch_error(LOCAL, image(f"http://127.0.0.1:{closed_port}/a.jpg"))
    assert error.code is ErrorCode.IMAGE_FETCH
    assert "could not connect" in error.info


async def test_timeout_bounds_the_whole_fetch(media_server: MediaServer) -> None:
    """A server slower than total_timeout makes a fetch error, not a hang."""

    def stall(handler: MediaHandler) -> None:
        media_server.release.wait(10)

    url = media_server.route("/slow.jpg", stall)
    settings = dataclasses.replace(LOCAL, total_timeout=0.5)
    with anyio.fail_after(5):
        error = await fetch_error(settings, image(url))
    assert error.code is ErrorCode.IMAGE_FETCH
    assert "could not be fetched within 0.5 s" in error.info


# --- the address guard -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("93.184.215.14", True),
        ("2606:4700:4700::1111", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("100.64.0.1", False),
        ("169.254.169.254", False),
        ("0.0.0.0", False),  # noqa: S104 (an address under test, nothing binds it)
        ("224.0.0.1", False),
        ("240.0.0.1", False),
        ("255.255.255.255", False),
        ("::1", False),
        ("::", False),
        ("fe80::1%eth0", False),
        ("fd12:3456::1", False),
        ("ff02::1", False),
        ("::ffff:127.0.0.1", False),
        ("::ffff:10.0.0.1", False),
        ("2002:7f00:1::", False),
        ("64:ff9b::a00:1", False),
        ("64:ff9b::5db8:d70e", True),
        ("not-an-address", False),
    ],
)
def test_address_policy(address: str, allowed: bool) -> None:
    """Only globally routable unicast addresses are allowed, including inside IPv6 forms."""
    assert address_allowed(address) is allowed


async def test_loopback_is_refused_by_default(media_server: MediaServer) -> None:
    """Without allow_private_networks a loopback URL is refused and never requested."""
    url = media_server.serve("/a.jpg", JPEG_BYTES, "image/jpeg")
    error = await fetch_error(MediaSettings(), image(url))
    assert error.code is ErrorCode.IMAGE_FETCH
    assert error.info == f"Could not copy image in slide 1: the address of {url} is not allowed"
    assert media_server.seen == []


async def test_loopback_is_fetched_when_private_networks_are_allowed(
    media_server: MediaServer,
) -> None:
    """With allow_private_networks the same loopback URL is fetched."""
    url = media_server.serve("/a.jpg", JPEG_BYTES, "image/jpeg")
    async with Fetcher(MediaSettings(allow_private_networks=True)) as fetcher:
        assert (await fetcher.fetch(image(url), 1)).data == JPEG_BYTES


def named_fetcher(
    hosts: Mapping[str, Sequence[str]], settings: MediaSettings | None = None
) -> Fetcher:
    """A Fetcher on a small named network: names resolve from `hosts`, and the guard takes
    127.0.0.1 (where the test's media server is) for the one public address there is."""

    async def resolve(host: str, port: int) -> Sequence[str]:
        return hosts[host]

    return Fetcher(
        settings or MediaSettings(), resolver=resolve, allowed=lambda ip: ip == "127.0.0.1"
    )


async def test_connects_to_the_checked_address_with_the_name_for_host(
    media_server: MediaServer,
) -> None:
    """The request goes to the resolved address, with the name (and port) as Host."""
    media_server.serve("/a.jpg", JPEG_BYTES, "image/jpeg")
    url = f"http://media.example:{media_server.port}/a.jpg"
    async with named_fetcher({"media.example": ["127.0.0.1"]}) as fetcher:
        fetched = await fetcher.fetch(image(url), 1)
    assert fetched.data == JPEG_BYTES
    (seen,) = media_server.seen
    assert seen.headers["Host"] == f"media.example:{media_server.port}"


async def test_a_name_resolving_to_loopback_is_refused_unless_private_networks_are_allowed(
    media_server: MediaServer,
) -> None:
    """A name that resolves to 127.0.0.1 is refused by the real address policy, never
    connected to; with allow_private_networks it is fetched."""
    media_server.serve("/a.jpg", JPEG_BYTES, "image/jpeg")
    url = f"http://media.example:{media_server.port}/a.jpg"

    async def resolve(host: str, port: int) -> Sequence[str]:
        return ["127.0.0.1"]

    async with Fetcher(MediaSettings(), resolver=resolve) as fetcher:
        with pytest.raises(MediaError) as caught:
            await fetcher.fetch(image(url), 1)
    assert (
        caught.value.info == f"Could not copy image in slide 1: the address of {url} is not allowed"
    )
    assert media_server.seen == []
    allowing = MediaSettings(allow_private_networks=True)
    async with Fetcher(allowing, resolver=resolve) as fetcher:
        assert (await fetcher.fetch(image(url), 1)).data == JPEG_BYTES


async def test_a_name_that_does_not_resolve_says_so() -> None:
    """A host without addresses is a fetch error naming the URL, not an exception."""
    async with named_fetcher({"nowhere.example": []}) as fetcher:
        with pytest.raises(MediaError) as caught:
            await fetcher.fetch(image("http://nowhere.example/a.jpg"), 1)
    assert caught.value.info == (
        "Could not copy image in slide 1: the host of http://nowhere.example/a.jpg"
        " could not be resolved"
    )


async def test_every_resolved_address_is_checked(media_server: MediaServer) -> None:
    """A name with one public and one private address is refused as a whole."""
    hosts = {"mixed.example": ["127.0.0.1", "10.0.0.7"]}
    async with named_fetcher(hosts) as fetcher:
        with pytest.raises(MediaError, match="is not allowed"):
            await fetcher.fetch(image(f"http://mixed.example:{media_server.port}/a.jpg"), 1)
    assert media_server.seen == []


@pytest.mark.parametrize(
    "location",
    ["http://127.0.0.2/admin", "http://internal.example/a.jpg", "file:///etc/passwd"],
)
async def test_redirect_to_a_private_address_is_refused(
    media_server: MediaServer, location: str
) -> None:
    """Each redirect hop is checked again: a public URL cannot bounce into the inside."""
    media_server.serve("/a.jpg", b"", None, status=302, headers={"Location": location})
    hosts = {"media.example": ["127.0.0.1"], "internal.example": ["10.0.0.7"]}
    async with named_fetcher(hosts) as fetcher:
        with pytest.raises(MediaError) as caught:
            await fetcher.fetch(image(f"http://media.example:{media_server.port}/a.jpg"), 1)
    assert caught.value.code is ErrorCode.IMAGE_FETCH
    assert "not allowed" in caught.value.info or "not an http or https URL" in caught.value.info
    assert media_server.paths() == ["/a.jpg"]


async def test_redirects_are_followed(media_server: MediaServer) -> None:
    """A relative redirect is followed to the final body; the result keeps the first URL."""
    first = media_server.serve("/old.jpg", b"", None, status=301, headers={"Location": "/new.jpg"})
    media_server.serve("/new.jpg", JPEG_BYTES, "image/jpeg")
    async with Fetcher(LOCAL) as fetcher:
        fetched = await fetcher.fetch(image(first), 1)
    assert (fetched.url, fetched.data) == (first, JPEG_BYTES)
    assert media_server.paths() == ["/old.jpg", "/new.jpg"]


async def test_too_many_redirects(media_server: MediaServer) -> None:
    """A redirect loop ends after max_redirects hops with a fetch error."""
    url = media_server.serve("/loop", b"", None, status=302, headers={"Location": "/loop"})
    error = await fetch_error(dataclasses.replace(LOCAL, max_redirects=2), image(url))
    assert error.code is ErrorCode.IMAGE_FETCH
    assert "more than 2 redirects" in error.info
    assert media_server.paths() == ["/loop"] * 3


# --- byte caps -------------------------------------------------------------------------------


async def test_content_length_over_the_cap_fails_before_reading(media_server: MediaServer) -> None:
    """A declared length over the cap is E331 at once, naming the cap."""

    def huge(handler: MediaHandler) -> None:
        headers = {"Content-Type": "image/jpeg", "Content-Length": str(10 * MB)}
        handler.send(200, b"", headers)
        handler.shrink_send_buffer()
        handler.wfile.write(b"\0" * (10 * MB))

    url = media_server.route("/big.jpg", huge)
    settings = dataclasses.replace(LOCAL, image_max_bytes=100_000)
    error = await fetch_error(settings, image(url), slide=2)
    assert error.code is ErrorCode.IMAGE_TOO_BIG
    assert error.info == "Image in slide 2 is too big: more than 100000 bytes"


async def test_streamed_body_over_the_cap_stops_the_download(media_server: MediaServer) -> None:
    """Without a length the cap is enforced while streaming, and the rest is never downloaded."""
    total = 20 * MB
    written = [0]
    done = threading.Event()

    def endless(handler: MediaHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "image/jpeg")
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        handler.shrink_send_buffer()
        try:
            while written[0] < total:
                handler.write_chunk(b"\xff" * 65536)
                written[0] += 65536
            handler.end_chunks()
        finally:
            done.set()

    url = media_server.route("/endless.jpg", endless)
    settings = dataclasses.replace(LOCAL, image_max_bytes=100_000)
    error = await fetch_error(settings, image(url))
    assert error.code is ErrorCode.IMAGE_TOO_BIG
    await wait_for(done)
    # Socket buffers hold a few MB at most; the rest was never sent because nobody read it.
    assert written[0] < total


async def test_gif_has_its_own_smaller_cap(media_server: MediaServer) -> None:
    """A GIF is held to gif_max_bytes even when the server calls it something else."""
    body = b"GIF89a" + b"\0" * 5000
    url = media_server.serve("/anim.png", body, "image/png", chunked=True)
    settings = dataclasses.replace(LOCAL, image_max_bytes=100_000, gif_max_bytes=4000)
    error = await fetch_error(settings, image(url))
    assert error.code is ErrorCode.IMAGE_TOO_BIG
    assert error.info.endswith("more than 4000 bytes")


async def test_text_cap_is_four_bytes_a_character(media_server: MediaServer) -> None:
    """A text file is capped at text_max_chars * 4 bytes, with E334."""
    url = media_server.serve("/a.txt", b"a" * 401, "text/plain")
    settings = dataclasses.replace(LOCAL, text_max_chars=100)
    error = await fetch_error(settings, MediaRef(MediaKind.TEXT, url), slide=4)
    assert error.code is ErrorCode.TEXT_FILE_TOO_LONG
    assert error.info == "Text in slide 4 is too long: more than 400 bytes"


async def test_compressed_body_is_decoded(media_server: MediaServer) -> None:
    """A body served gzip-encoded although identity was asked for is decoded."""
    url = media_server.serve(
        "/a.jpg", gzip.compress(JPEG_BYTES), "image/jpeg", headers={"Content-Encoding": "gzip"}
    )
    async with Fetcher(LOCAL) as fetcher:
        assert (await fetcher.fetch(image(url), 1)).data == JPEG_BYTES
    assert media_server.seen[0].headers["Accept-Encoding"] == "identity"


async def test_compressed_body_is_capped_after_decoding(media_server: MediaServer) -> None:
    """A small gzip body that inflates past the cap is E331 (a decompression bomb)."""
    bomb = gzip.compress(b"\0" * (10 * MB))
    url = media_server.serve("/a.jpg", bomb, "image/jpeg", headers={"Content-Encoding": "gzip"})
    error = await fetch_error(dataclasses.replace(LOCAL, image_max_bytes=100_000), image(url))
    assert error.code is ErrorCode.IMAGE_TOO_BIG


# --- strict mode -----------------------------------------------------------------------------

STRICT = dataclasses.replace(LOCAL, strict=True)


async def test_strict_mode_refuses_chunked_responses(media_server: MediaServer) -> None:
    """Like Sinch, strict mode refuses a response served without Content-Length."""
    url = media_server.serve("/a.jpg", JPEG_BYTES, "image/jpeg", chunked=True)
    error = await fetch_error(STRICT, image(url))
    assert error.code is ErrorCode.IMAGE_FETCH
    assert error.info.endswith(f"{url} was served without Content-Length")


@pytest.mark.parametrize("content_type", [None, "application/octet-stream"])
async def test_strict_mode_needs_a_real_content_type(
    media_server: MediaServer, content_type: str | None
) -> None:
    """Strict mode refuses a missing or octet-stream Content-Type with E629."""
    url = media_server.serve("/a.jpg", JPEG_BYTES, content_type)
    error = await fetch_error(STRICT, image(url))
    assert error.code is ErrorCode.UNRECOGNIZED_CONTENT_TYPE
    assert error.info.startswith("Unrecognized content type in slide 1:")


async def test_strict_mode_takes_a_proper_response(media_server: MediaServer) -> None:
    """With Content-Length and a real type, strict mode fetches normally."""
    url = media_server.serve("/a.jpg", JPEG_BYTES, "image/jpeg")
    async with Fetcher(STRICT) as fetcher:
        assert (await fetcher.fetch(image(url), 1)).data == JPEG_BYTES


# --- revalidation ----------------------------------------------------------------------------


def conditional(
    media_server: MediaServer, path: str, validator: str, request_header: str, value: str
) -> str:
    """Serve `path` with a validator, answering 304 when the request carries it back."""

    def respond(handler: MediaHandler) -> None:
        if handler.headers.get(request_header) == value:
            handler.send(304, b"", {validator: value, "Content-Length": "0"})
        else:
            handler.send(200, JPEG_BYTES, {"Content-Type": "image/jpeg", validator: value})

    return media_server.route(path, respond)


async def test_etag_revalidation_reuses_the_cached_copy(media_server: MediaServer) -> None:
    """A second fetch sends If-None-Match; a 304 gives the cached body, marked revalidated."""
    url = conditional(media_server, "/e.jpg", "ETag", "If-None-Match", '"abc"')
    cache = MemoryCache()
    async with Fetcher(LOCAL, cache) as fetcher:
        first = await fetcher.fetch(image(url), 1)
        second = await fetcher.fetch(image(url), 1)
    assert not first.revalidated
    assert cache.remembered == [first]
    assert second == dataclasses.replace(first, revalidated=True)
    assert media_server.seen[1].headers["If-None-Match"] == '"abc"'


async def test_last_modified_revalidation_reuses_the_cached_copy(
    media_server: MediaServer,
) -> None:
    """A second fetch sends If-Modified-Since; a 304 gives the cached body, marked revalidated."""
    stamp = "Wed, 21 Oct 2015 07:28:00 GMT"
    url = conditional(media_server, "/m.jpg", "Last-Modified", "If-Modified-Since", stamp)
    cache = MemoryCache()
    async with Fetcher(LOCAL, cache) as fetcher:
        await fetcher.fetch(image(url), 1)
        second = await fetcher.fetch(image(url), 1)
    assert second.revalidated
    assert (second.data, second.last_modified) == (JPEG_BYTES, stamp)
    assert media_server.seen[1].headers["If-Modified-Since"] == stamp


async def test_responses_without_validators_are_not_cached(media_server: MediaServer) -> None:
    """Without ETag or Last-Modified there is nothing to revalidate, so nothing is cached."""
    url = media_server.serve("/a.jpg", JPEG_BYTES, "image/jpeg")
    cache = MemoryCache()
    async with Fetcher(LOCAL, cache) as fetcher:
        await fetcher.fetch(image(url), 1)
    assert cache.remembered == []


async def test_changed_content_replaces_the_cached_copy(media_server: MediaServer) -> None:
    """When the server answers 200 to a conditional request, the new body is returned."""
    url = media_server.serve("/a.jpg", JPEG_BYTES, "image/jpeg", headers={"ETag": '"new"'})
    cache = MemoryCache()
    cache.copies[url] = CachedCopy(b"old", "image/jpeg", '"old"', None)
    async with Fetcher(LOCAL, cache) as fetcher:
        fetched = await fetcher.fetch(image(url), 1)
    assert (fetched.data, fetched.revalidated) == (JPEG_BYTES, False)
    assert cache.copies[url].etag == '"new"'


# --- fetch_all -------------------------------------------------------------------------------


async def test_fetch_all_keeps_the_order(media_server: MediaServer) -> None:
    """Results come back in the order of the references."""
    urls = [media_server.serve(f"/{i}.jpg", JPEG_BYTES + bytes([i]), "image/jpeg") for i in (1, 2)]
    async with Fetcher(LOCAL) as fetcher:
        results = await fetch_all(fetcher, [(1, image(urls[0])), (2, image(urls[1]))])
    assert [r.data[-1] for r in results] == [1, 2]


async def test_fetch_all_reports_the_earliest_failing_slide(media_server: MediaServer) -> None:
    """When slides 2 and 3 fail, slide 2's error is raised even if slide 3 failed first."""
    slide3_failed = threading.Event()

    def late_404(handler: MediaHandler) -> None:
        slide3_failed.wait(5)
        handler.send(404, b"", {})

    def early_500(handler: MediaHandler) -> None:
        handler.send(500, b"", {})
        slide3_failed.set()

    refs = [
        (1, image(media_server.serve("/ok.jpg", JPEG_BYTES, "image/jpeg"))),
        (2, image(media_server.route("/late.jpg", late_404))),
        (3, MediaRef(MediaKind.AUDIO, media_server.route("/early.mp3", early_500))),
    ]
    async with Fetcher(LOCAL) as fetcher:
        with pytest.raises(MediaError) as caught:
            await fetch_all(fetcher, refs)
    assert caught.value.code is ErrorCode.IMAGE_FETCH
    assert "slide 2: HTTP 404" in caught.value.info


async def test_fetch_all_cancels_fetches_after_a_failure(media_server: MediaServer) -> None:
    """Once slide 1 fails, a stalled fetch for slide 2 is cancelled instead of awaited."""

    def stall(handler: MediaHandler) -> None:
        media_server.release.wait(10)

    refs = [
        (1, image(media_server.url("/missing.jpg"))),
        (2, image(media_server.route("/stalled.jpg", stall))),
    ]
    settings = dataclasses.replace(LOCAL, total_timeout=30.0)
    async with Fetcher(settings) as fetcher:
        with anyio.fail_after(5), pytest.raises(MediaError, match="slide 1: HTTP 404"):
            await fetch_all(fetcher, refs)
