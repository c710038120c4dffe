"""Fetch slide media by URL at accept time, as Sinch does before it answers (API reference §9).

This is the one place where a client makes mmsgate open connections, so it is guarded
(the SSRF guard, `http_client.guarded`): http and https only; every address the host resolves
to is checked as the connection is opened (a resolver inside the HTTP client's connector), and
the connection goes to a checked address rather than through a second lookup, so DNS
rebinding cannot swap it; redirects are followed by hand and each hop is checked again; the
byte cap is enforced while streaming; connect and total timeouts bound every fetch.

Fetches share the connections fairly: at most `max_fetches_per_account` in flight for one
account and `max_fetches_per_host` to one media host (of `max_concurrent_fetches` in all), so
an account whose media server hangs waits on its own fetches only. A fetch waiting for its
share counts against its total timeout: the request that made it still ends in time.

    fetch_all ─▶ Fetcher.fetch ─▶ GET per hop (resolve + check on connect) ─▶ capped read
              ─▶ Fetched
"""

from __future__ import annotations

import contextlib
import dataclasses
import zlib
from collections.abc import AsyncIterator, Callable, Hashable, Mapping, Sequence
from typing import Protocol

import anyio
import yarl

from mmsgate import __version__, http_client
from mmsgate.codes import ErrorCode
from mmsgate.errors import MediaError
from mmsgate.media.kinds import FETCH_CODES, TOO_BIG_CODES, byte_cap, noun, subject
from mmsgate.models import MediaKind, MediaRef
from mmsgate.settings import MediaSettings

Resolver = http_client.Resolver

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
# Connection attempts per hop: enough to get past an unreachable IPv6 address to an IPv4 one.
_MAX_ADDRESSES = 4
_MAX_URL_IN_TEXT = 200


@dataclasses.dataclass(frozen=True, slots=True)
class Fetched:
    """The body of one media URL and what its server said about it."""

    url: str
    data: bytes
    content_type: str
    etag: str | None
    last_modified: str | None
    revalidated: bool


@dataclasses.dataclass(frozen=True, slots=True)
class CachedCopy:
    """A copy fetched earlier, with the validators to ask the server whether it is current."""

    data: bytes
    content_type: str
    etag: str | None
    last_modified: str | None


class FetchCache(Protocol):
    """Copies of earlier fetches, keyed by the URL the client named."""

    async def lookup(self, url: str) -> CachedCopy | None: ...

    async def remember(self, fetched: Fetched) -> None: ...


@dataclasses.dataclass(frozen=True, slots=True)
class _Slot:
    """The media element being fetched; it words the errors about it."""

    ref: MediaRef
    slide: int

    def failed(self, reason: str) -> MediaError:
        kind = self.ref.kind
        return MediaError(
            FETCH_CODES[kind], f"Could not copy {noun(kind)} in slide {self.slide}: {reason}"
        )

    def too_big(self, cap: int) -> MediaError:
        kind = self.ref.kind
        verb = "too long" if kind is MediaKind.TEXT else "too big"
        return MediaError(
            TOO_BIG_CODES[kind],
            f"{subject(kind)} in slide {self.slide} is {verb}: more than {cap} bytes",
        )


def shown(url: yarl.URL | str) -> str:
    """A URL as error texts show it: without user info, cut short if very long."""
    try:
        text = str((yarl.URL(url) if isinstance(url, str) else url).with_user(None))
    except (ValueError, TypeError):
        text = str(url)
    return text if len(text) <= _MAX_URL_IN_TEXT else text[: _MAX_URL_IN_TEXT - 1] + "…"


class _Shares:
    """A semaphore per key (an account, a host), made when first needed and dropped once no
    fetch holds or waits for it, so idle keys cost nothing."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.gates: dict[Hashable, tuple[anyio.Semaphore, list[int]]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: Hashable) -> AsyncIterator[None]:
        gate, users = self.gates.setdefault(key, (anyio.Semaphore(self.size), [0]))
        users[0] += 1
        try:
            async with gate:
                yield
        finally:
            users[0] -= 1
            if not users[0]:
                del self.gates[key]


class Fetcher:
    """Fetches media URLs through one shared HTTP client; close it with `aclose`."""

    def __init__(
        self,
        settings: MediaSettings,
        cache: FetchCache | None = None,
        *,
        resolver: Resolver | None = None,
        allowed: Callable[[str], bool] = http_client.address_allowed,
    ) -> None:
        """`resolver` names a host's addresses (the system's lookup by default), `allowed`
        the addresses a fetch may connect to unless private networks are allowed."""
        self._settings = settings
        self._cache = cache
        self._accounts = _Shares(settings.max_fetches_per_account)
        self._hosts = _Shares(settings.max_fetches_per_host)
        self._all = anyio.Semaphore(settings.max_concurrent_fetches)
        self._client = http_client.HttpClient(
            timeout=settings.total_timeout,
            connect_timeout=settings.connect_timeout,
            max_connections=settings.max_concurrent_fetches,
            resolve=http_client.guarded(
                resolver or http_client.resolve_host,
                allow_private_networks=settings.allow_private_networks,
                allowed=allowed,
                most=_MAX_ADDRESSES,
            ),
            user_agent=f"mmsgate/{__version__}",
        )

    async def __aenter__(self) -> Fetcher:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the pooled connections."""
        await self._client.aclose()

    async def fetch(
        self, ref: MediaRef, slide: int, account: int | None = None, *, use_cache: bool = True
    ) -> Fetched:
        """Fetch `ref` for 1-based `slide`, or raise the MediaError a Sinch client expects;
        within `account`'s share of the fetches when one is named. With `use_cache` false
        (a request's cache-content false) the cache is neither read nor written: the URL is
        fetched anew, unconditionally."""
        cache = self._cache if use_cache else None
        slot = _Slot(ref, slide)
        cached = await cache.lookup(ref.url) if cache is not None else None
        total = self._settings.total_timeout
        share = self._accounts.hold(account) if account is not None else contextlib.nullcontext()
        try:
            with anyio.fail_after(total):
                async with share:
                    fetched = await self._follow(slot, cached)
        except (TimeoutError, http_client.Timeout):
            raise slot.failed(f"{shown(ref.url)} could not be fetched within {total:g} s") from None
        except http_client.HttpError:
            raise slot.failed(f"the connection to {shown(ref.url)} failed") from None
        has_validator = fetched.etag is not None or fetched.last_modified is not None
        if cache is not None and not fetched.revalidated and has_validator:
            await cache.remember(fetched)
        return fetched

    async def _follow(self, slot: _Slot, cached: CachedCopy | None) -> Fetched:
        url = _checked_url(slot, slot.ref.url, None)
        for _ in range(self._settings.max_redirects + 1):
            host = (url.scheme, url.host, url.port)
            async with self._hosts.hold(host), self._all, self._hop(slot, url, cached) as response:
                location = response.headers.get("location")
                if response.status not in _REDIRECTS or not location:
                    return await self._receive(slot, url, response, cached)
            url = _checked_url(slot, location, url)
        raise slot.failed(
            f"more than {self._settings.max_redirects} redirects from {shown(slot.ref.url)}"
        )

    @contextlib.asynccontextmanager
    async def _hop(
        self, slot: _Slot, url: yarl.URL, cached: CachedCopy | None
    ) -> AsyncIterator[http_client.Streamed]:
        """One GET, its failures to reach the host worded for the client."""
        try:
            async with self._client.stream(str(url), _request_headers(cached)) as response:
                yield response
        except http_client.Refused:
            raise slot.failed(f"the address of {shown(url)} is not allowed") from None
        except http_client.Unresolved:
            raise slot.failed(f"the host of {shown(url)} could not be resolved") from None
        except http_client.ConnectFailed:
            raise slot.failed(f"could not connect to {shown(url)}") from None

    async def _receive(
        self,
        slot: _Slot,
        url: yarl.URL,
        response: http_client.Streamed,
        cached: CachedCopy | None,
    ) -> Fetched:
        headers = response.headers
        if response.status == 304 and cached is not None:
            return Fetched(
                url=slot.ref.url,
                data=cached.data,
                content_type=cached.content_type,
                etag=headers.get("etag", cached.etag),
                last_modified=headers.get("last-modified", cached.last_modified),
                revalidated=True,
            )
        if not 200 <= response.status < 300:
            raise slot.failed(f"HTTP {response.status} from {shown(url)}")
        declared = media_type(headers.get("content-type", ""))
        if self._settings.strict:
            _check_strictly(slot, url, headers, declared)
        data = await _read_capped(slot, url, response, declared, self._settings)
        if not data:
            raise slot.failed(f"{shown(url)} is empty")
        return Fetched(
            url=slot.ref.url,
            data=data,
            content_type=declared,
            etag=headers.get("etag"),
            last_modified=headers.get("last-modified"),
            revalidated=False,
        )


def _request_headers(cached: CachedCopy | None) -> dict[str, str]:
    # Asking for identity keeps Content-Length comparable with the byte cap.
    headers = {"Accept-Encoding": "identity"}
    if cached is not None and cached.etag is not None:
        headers["If-None-Match"] = cached.etag
    if cached is not None and cached.last_modified is not None:
        headers["If-Modified-Since"] = cached.last_modified
    return headers


def media_type(header: str) -> str:
    """The media type of a Content-Type value, lower-cased and without parameters."""
    return header.partition(";")[0].strip().lower()


def _checked_url(slot: _Slot, text: str, base: yarl.URL | None) -> yarl.URL:
    """Parse a URL (a redirect's Location relative to `base`) and accept only http and https."""
    try:
        url: yarl.URL | None = yarl.URL(text) if base is None else base.join(yarl.URL(text))
        usable = url is not None and http_client.url_problem(str(url)) is None
    except (ValueError, TypeError, UnicodeError):
        url, usable = None, False
    if url is None or not usable or url.scheme not in ("http", "https") or not url.raw_host:
        raise slot.failed(f"{shown(text)} is not an http or https URL")
    return url


def _check_strictly(slot: _Slot, url: yarl.URL, headers: Mapping[str, str], declared: str) -> None:
    """Refuse what Sinch refuses (API reference §9): no Content-Length, no usable type."""
    chunked = "chunked" in headers.get("transfer-encoding", "").lower()
    if chunked or _content_length(headers) is None:
        raise slot.failed(f"{shown(url)} was served without Content-Length")
    if declared in ("", "application/octet-stream"):
        served = f"as {declared}" if declared else "without Content-Type"
        raise MediaError(
            ErrorCode.UNRECOGNIZED_CONTENT_TYPE,
            f"Unrecognized content type in slide {slot.slide}: {shown(url)} was served {served}",
        )


def _content_length(headers: Mapping[str, str]) -> int | None:
    try:
        return int(headers["content-length"])
    except (KeyError, ValueError):
        return None


def _decoder(slot: _Slot, url: yarl.URL, response: http_client.Streamed) -> zlib._Decompress | None:
    """A decompressor for a body served compressed although we asked for identity."""
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding in ("", "identity"):
        return None
    if encoding in ("gzip", "x-gzip", "deflate"):
        # 32 + MAX_WBITS accepts both gzip and zlib framing.
        return zlib.decompressobj(32 + zlib.MAX_WBITS)
    raise slot.failed(f"{shown(url)} was served with Content-Encoding {encoding}")


async def _read_capped(
    slot: _Slot,
    url: yarl.URL,
    response: http_client.Streamed,
    declared: str,
    settings: MediaSettings,
) -> bytes:
    """Read the body, holding at most cap + 1 bytes, and stop as soon as it is over the cap."""
    kind = slot.ref.kind
    cap = byte_cap(kind, settings, gif=declared == "image/gif")
    decoder = _decoder(slot, url, response)
    length = _content_length(response.headers)
    if decoder is None and length is not None and length > cap:
        raise slot.too_big(cap)
    body = bytearray()
    async for raw in response.chunks():
        room = cap + 1 - len(body)
        try:
            # max_length bounds what one compressed chunk may expand to.
            chunk = raw if decoder is None else decoder.decompress(raw, room)
        except zlib.error:
            raise slot.failed(f"{shown(url)} has a corrupt compressed body") from None
        body += chunk[:room]
        if kind is MediaKind.IMAGE and body.startswith(b"GIF8"):
            # A GIF has its own, smaller cap, whatever type the server declared.
            cap = byte_cap(kind, settings, gif=True)
        if len(body) > cap:
            raise slot.too_big(cap)
    return bytes(body)


async def fetch_all(
    fetcher: Fetcher,
    refs: Sequence[tuple[int, MediaRef]],
    *,
    account: int | None = None,
    use_cache: bool = True,
) -> list[Fetched]:
    """Fetch `(slide, ref)` pairs concurrently, for `account`; results keep their order.

    When several fail, the error raised is that of the earliest (slide, position), so a
    request gets the same answer however the fetches race. Once one fails, the fetches after
    it can no longer change the answer and are cancelled.
    """
    order = sorted(range(len(refs)), key=lambda index: (refs[index][0], index))
    scopes = {index: anyio.CancelScope() for index in order}
    results: dict[int, Fetched] = {}
    failures: dict[int, MediaError] = {}

    async def fetch_one(rank: int, index: int) -> None:
        slide, ref = refs[index]
        with scopes[index]:
            try:
                results[index] = await fetcher.fetch(ref, slide, account, use_cache=use_cache)
            except MediaError as exc:
                failures[rank] = exc
                for later in order[rank + 1 :]:
                    scopes[later].cancel()

    async with anyio.create_task_group() as group:
        for rank, index in enumerate(order):
            group.start_soon(fetch_one, rank, index)
    if failures:
        raise failures[min(failures)]
    return [results[index] for index in range(len(refs))]
