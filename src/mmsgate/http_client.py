"""mmsgate's outbound HTTP: the calls, errors, limits and address guard every request
mmsgate sends goes through. `HttpClient` is aiohttp behind them (sendsms requests to Kannel,
media fetches); `http_lean.LeanClient` answers to the same calls and errors for the requests
sent for every message (MM7 submits, the simulated MMSC's reports, postbacks), where
aiohttp's CPU cost would show in the delivery rate (its docstring has the figures).

    client = HttpClient(timeout=30.0, connect_timeout=5.0)
    response = await client.post(url, body, {"Content-Type": "text/xml"})
    response.status, response.headers["content-type"], response.body
    async with client.stream(url, headers) as streamed:  # read as it arrives (media)
        async for chunk in streamed.chunks(): ...
    await client.aclose()

Why aiohttp rather than httpx: on loopback, 16 in flight, client CPU per 1 KB POST was about
85 µs against httpx 0.28's 1300 µs (request models, auth and redirect layers, a pool
rescanning its queue). What both clients do, for every caller alike:

- keep-alive connections, at most `max_connections` per origin; further requests wait for a
  free one in order, and that wait is not counted against the timeout. A connection idle
  longer than `keepalive` seconds is closed rather than reused (a firewall may have dropped
  it). No cookie jar, no proxies from the environment, no redirects (media fetch follows
  them itself, checking each hop), no decompression (the caller decides).
- a body always sent with Content-Length, never `Expect: 100-continue` (several MMSCs stall
  on it); interim 1xx answers skipped.
- a connect timeout and a timeout for the whole exchange; TLS (verified) for https URLs.
- `resolve`: an optional hook that names the addresses a new connection may use, called as
  the connection opens (in aiohttp's connector, through a custom `AbstractResolver`), so
  the address checked is the address connected to. `guarded` builds the hook that refuses
  private, loopback and link-local addresses (the SSRF guard).
- a cap on response bodies: a hostile server cannot make the gateway buffer without limit.
  With `truncate_body`, a longer body is cut at the cap instead of failing the request (the
  connection is then closed), and a timeout after the status line still returns it: for
  answers judged by their status alone, such as a customer's to a postback.

Every failure is an `HttpError`: `ConnectFailed` (with `Refused`, `Unresolved` and
`ConnectTimeout`), `Timeout`, `ProtocolError`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import ipaddress
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Protocol
from urllib.parse import urlsplit

import aiohttp
import aiohttp.abc
import yarl

from mmsgate import errors

__all__ = [
    "Client",
    "ConnectFailed",
    "ConnectTimeout",
    "HttpClient",
    "HttpError",
    "ProtocolError",
    "Refused",
    "Response",
    "Streamed",
    "Timeout",
    "Unresolved",
    "address_allowed",
    "basic_auth",
    "guarded",
    "resolve_host",
    "url_problem",
]

MAX_HEAD_LINE = 8190  # bytes in the status line or one header line (aiohttp's default)
MAX_HEAD_FIELD = 64 * 1024  # bytes in one header's value
_OWN_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "expect", "connection"})
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]
"""Turns a host name and port into the addresses to connect to, preferred first."""


class Client(Protocol):
    """What the callers of either client use: a POST read whole, and closing."""

    async def post(
        self, url: str, body: bytes, headers: Mapping[str, str] | None = None
    ) -> Response: ...

    async def aclose(self) -> None: ...


class HttpError(errors.MmsgateError):
    """The request got no usable HTTP response."""


class ConnectFailed(HttpError):
    """No connection to the server (refused, unreachable, TLS handshake failed)."""


class Timeout(HttpError):
    """The server took longer than the timeout to connect or to answer."""


class ConnectTimeout(Timeout, ConnectFailed):
    """No connection within the connect timeout: both a timeout and no connection."""


class Refused(ConnectFailed):
    """The host resolves to an address this client may not connect to."""


class Unresolved(ConnectFailed):
    """The host name has no address."""


class ProtocolError(HttpError):
    """The server closed the connection early or sent something that is not HTTP/1.x."""


@dataclasses.dataclass(frozen=True, slots=True)
class Response:
    """A complete response; header names are lower case, repeated headers joined by ", "."""

    status: int
    headers: Mapping[str, str]
    body: bytes


def basic_auth(username: str, password: str) -> str:
    """The Authorization header value for HTTP Basic (RFC 7617, UTF-8 credentials)."""
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode("ascii")


def url_problem(url: str) -> str | None:
    """Why this client can never request `url` (not http or https, no host, a bad port), or
    None when it can."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "has a bad port or host"
    if parts.scheme.lower() not in ("http", "https"):
        return "is not an http or https URL"
    if not parts.hostname:
        return "has no host"
    if port == 0:
        return "has a bad port or host"
    return None


# --- the address guard -------------------------------------------------------------------


async def resolve_host(host: str, port: int) -> list[str]:
    """Every address `host` resolves to, in the order the system prefers them."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host.encode("idna"), port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def address_allowed(address: str) -> bool:
    """Whether the guard lets a connection go to `address`: only globally routable unicast
    addresses."""
    try:
        ip = ipaddress.ip_address(address.partition("%")[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        if ip in _NAT64:
            # DNS64 hands out these for IPv4-only hosts; judge the IPv4 address inside.
            return address_allowed(str(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)))
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is not None and not address_allowed(str(embedded)):
            return False
    # is_global already excludes private, loopback, link-local (so 169.254.169.254 metadata),
    # unspecified, CGNAT 100.64/10 and ULA; multicast and reserved ranges count as global.
    return ip.is_global and not (ip.is_multicast or ip.is_reserved)


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return False
    return True


def guarded(
    resolve: Resolver = resolve_host,
    *,
    allow_private_networks: bool = False,
    allowed: Callable[[str], bool] = address_allowed,
    most: int = 8,
) -> Resolver:
    """A `resolve` hook for HttpClient: the host's addresses (at most `most`) when every one
    is `allowed` (or private networks are); `Refused` when one is not, `Unresolved` when
    there are none. An address in the URL itself is judged without a lookup."""

    async def checked(host: str, port: int) -> Sequence[str]:
        if _is_address(host):
            addresses: Sequence[str] = [host]
        else:
            try:
                addresses = await resolve(host, port)
            except (OSError, UnicodeError):
                raise Unresolved(f"{host} does not resolve") from None
        if not addresses:
            raise Unresolved(f"{host} does not resolve")
        if not allow_private_networks and not all(allowed(address) for address in addresses):
            # Say no more than this: which address it was would map the inside for a prober.
            raise Refused("points at an address that is not allowed")
        return addresses[:most]

    return checked


class _HookResolver(aiohttp.abc.AbstractResolver):
    """aiohttp's connector asks this for the addresses of each new connection: the hook's."""

    def __init__(self, resolve: Resolver) -> None:
        self._resolve = resolve

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[aiohttp.abc.ResolveResult]:
        addresses = await self._resolve(host, port)
        results: list[aiohttp.abc.ResolveResult] = []
        for address in addresses:
            if "%" in address:
                continue  # a scoped IPv6 address names no interface aiohttp can use
            kind = socket.AF_INET6 if ":" in address else socket.AF_INET
            if family not in (socket.AF_UNSPEC, kind):
                continue
            results.append(
                {"hostname": host, "host": address, "port": port, "family": kind,
                 "proto": 0, "flags": socket.AI_NUMERICHOST}
            )  # fmt: skip
        if not results:
            raise Unresolved(f"{host} has no address")
        return results

    async def close(self) -> None:
        """Nothing held."""


# --- the client --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class _Target:
    """A URL parsed once: what aiohttp requests, the origin its slots belong to."""

    url: yarl.URL
    origin: tuple[str, str, int]
    host: str
    port: int


class Streamed:
    """A response whose body is read as it arrives (`chunks`), as the server sent it."""

    def __init__(
        self, response: aiohttp.ClientResponse, fail: Callable[[BaseException], HttpError]
    ):
        self.status = response.status
        self.headers = _headers(response)
        self._response = response
        self._fail = fail

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body's bytes as they come (de-chunked, never decompressed)."""
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise self._fail(exc) from None


class HttpClient:
    """Keep-alive HTTP/1.1 requests with timeouts; one instance per purpose, closed at exit."""

    def __init__(
        self,
        *,
        timeout: float = 30.0,
        connect_timeout: float = 5.0,
        max_connections: int = 16,
        max_body: int = 16 * 1024 * 1024,
        truncate_body: bool = False,
        keepalive: float = 5.0,
        ssl_context: ssl.SSLContext | None = None,
        resolve: Resolver | None = None,
        user_agent: str = "mmsgate",
    ) -> None:
        self.timeout, self.connect_timeout = timeout, connect_timeout
        self.max_connections, self.max_body = max_connections, max_body
        self.truncate_body = truncate_body
        self.keepalive = keepalive
        self._ssl = ssl_context
        self._resolve = resolve
        self._user_agent = user_agent
        self._session: aiohttp.ClientSession | None = None
        self._slots: dict[tuple[str, str, int], asyncio.Semaphore] = {}
        self._targets: dict[str, _Target] = {}
        self._closed = False

    async def post(
        self, url: str, body: bytes, headers: Mapping[str, str] | None = None
    ) -> Response:
        """POST `body` (with Content-Length) and read the whole response."""
        return await self.request("POST", url, body, headers)

    async def get(self, url: str, headers: Mapping[str, str] | None = None) -> Response:
        """GET `url` and read the whole response."""
        return await self.request("GET", url, None, headers)

    async def request(
        self,
        method: str,
        url: str,
        body: bytes | None = b"",
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        """Send one request and read the whole response; raises `HttpError` on failure."""
        target = await self._checked(url)
        sent = self._headers(headers)
        async with self._slot(target.origin):
            try:
                async with self._open().request(
                    method, target.url, data=body, headers=sent, allow_redirects=False
                ) as response:
                    return await self._read(response)
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise self._failure(exc, target) from None

    @contextlib.asynccontextmanager
    async def stream(
        self, url: str, headers: Mapping[str, str] | None = None
    ) -> AsyncIterator[Streamed]:
        """GET `url` (parsed and percent-encoded as a browser would) and hand over the
        response once its head is in; the body is the caller's to read (no `max_body`)."""
        target = await self._checked(url, encoded=False)
        sent = self._headers(headers)
        async with self._slot(target.origin):
            try:
                async with self._open().get(
                    target.url, headers=sent, allow_redirects=False
                ) as response:
                    yield Streamed(response, lambda exc: self._failure(exc, target))
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise self._failure(exc, target) from None

    async def aclose(self) -> None:
        """Close every connection; requests still running fail."""
        self._closed = True
        if self._session is not None:
            await self._session.close()
        self._session = None

    # ----------------------------------------------------------------------------------------
    def _open(self) -> aiohttp.ClientSession:
        """The session, made on first use (aiohttp binds it to the running event loop)."""
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=0,  # the slots bound connections per origin
                limit_per_host=self.max_connections,
                keepalive_timeout=self.keepalive,
                use_dns_cache=False,  # looked up (and checked) for each new connection
                resolver=_HookResolver(self._resolve) if self._resolve else None,
                ssl=self._ssl if self._ssl is not None else True,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),
                timeout=aiohttp.ClientTimeout(
                    total=self.timeout, sock_connect=self.connect_timeout
                ),
                auto_decompress=False,
                headers={"User-Agent": self._user_agent},
                skip_auto_headers=("Accept", "Accept-Encoding", "Content-Type"),
                max_line_size=MAX_HEAD_LINE,
                max_field_size=MAX_HEAD_FIELD,
            )
        return self._session

    async def _checked(self, url: str, *, encoded: bool = True) -> _Target:
        """The URL parsed (once for each URL seen recently); with a `resolve` hook, an
        address written in the URL is put to the hook too, as aiohttp looks none up."""
        if self._closed:
            raise HttpError("client is closed")
        target = self._targets.get(url) if encoded else None
        if target is None:
            target = _target(url, encoded)
            if encoded:
                if len(self._targets) >= 256:
                    self._targets.clear()
                self._targets[url] = target
        if self._resolve is not None and _is_address(target.host):
            await self._resolve(target.host, target.port)
        return target

    def _slot(self, origin: tuple[str, str, int]) -> asyncio.Semaphore:
        slot = self._slots.get(origin)
        if slot is None:
            slot = self._slots[origin] = asyncio.Semaphore(self.max_connections)
        return slot

    @staticmethod
    def _headers(headers: Mapping[str, str] | None) -> Mapping[str, str] | None:
        for name, value in (headers or {}).items():
            if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
                raise HttpError(f"line break in header {name!r}")
            if name.lower() in _OWN_HEADERS:
                raise HttpError(f"{name} is the client's to send")
        return headers

    async def _read(self, response: aiohttp.ClientResponse) -> Response:
        """The whole body, within the cap; with `truncate_body`, what came before the cap,
        the end or the timeout."""
        cap, body = self.max_body, bytearray()
        length = response.content_length
        if not self.truncate_body and length is not None and length > cap:
            raise ProtocolError(f"response body over {cap} bytes")
        try:
            if length is not None and length <= cap and not self.truncate_body:
                body += await response.read()
            else:
                while len(body) <= cap and (chunk := await response.content.read(cap + 1)):
                    body += chunk
        except TimeoutError:
            if not self.truncate_body:
                raise
            response.close()  # the status line is in: that is the answer
        if len(body) > cap:
            if not self.truncate_body:
                raise ProtocolError(f"response body over {cap} bytes")
            del body[cap:]
            response.close()  # the rest is never read: the connection cannot be reused
        return Response(response.status, _headers(response), bytes(body))

    def _failure(self, exc: BaseException, target: _Target) -> HttpError:
        """The HttpError an aiohttp failure is, in words that name what went wrong."""
        if isinstance(exc, HttpError):
            return exc  # the resolve hook's, as it was raised
        where = f"{target.host}:{target.port}"
        if isinstance(exc, aiohttp.ConnectionTimeoutError):
            return ConnectTimeout(
                f"no connection to {target.host} within {self.connect_timeout:g} s"
            )
        if isinstance(exc, TimeoutError):
            return Timeout(f"no complete response within {self.timeout:g} s")
        if isinstance(exc, aiohttp.ClientConnectorError):
            cause = exc.os_error
            if isinstance(cause, ssl.SSLError):  # told apart, as its fix differs
                reason = getattr(cause, "verify_message", None) or cause.reason or cause
                return ConnectFailed(f"TLS handshake with {where} failed: {reason}")
            return ConnectFailed(f"cannot connect to {where}: {cause}")
        if isinstance(exc, aiohttp.InvalidURL | aiohttp.NonHttpUrlClientError):
            return HttpError(f"{target.url} is not a URL this client can request")
        if isinstance(exc, aiohttp.ClientResponseError):
            return ProtocolError(f"not an HTTP/1.x answer: {exc.message}"[:200])
        return ProtocolError(f"connection lost: {exc or 'closed by the server'}"[:200])


def _target(url: str, encoded: bool) -> _Target:
    problem = url_problem(url)
    if problem is not None:
        raise HttpError(f"{url} {problem}")
    try:
        # `encoded`: the URL goes as written (MM7, postbacks, Kannel's pre-encoded query)
        parsed = yarl.URL(url, encoded=encoded and url.isascii())
    except (ValueError, UnicodeError):
        raise HttpError(f"{url} has a bad port or host") from None
    host, port = parsed.raw_host or "", parsed.port or 0
    return _Target(parsed, (parsed.scheme, host, port), host, port)


def _headers(response: aiohttp.ClientResponse) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, value in response.headers.items():
        name = name.lower()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers
