"""The outbound HTTP clients (aiohttp's `HttpClient` and the `LeanClient`): what they send,
how they read answers, keep-alive, the address guard, and failures, hostile answers among
them, against scripted HTTP servers on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from mmsgate import http_client
from mmsgate.http_client import HttpClient
from mmsgate.http_lean import LeanClient

pytestmark = pytest.mark.anyio


@dataclasses.dataclass
class Server:
    """A loopback HTTP server: records each request (head, body), answers from a script."""

    url: str
    requests: list[tuple[str, bytes]]
    connections: int = 0


Answer = Callable[[str, bytes], bytes]  # request head and body -> the raw answer


def ok(body: bytes = b"fine", extra: str = "") -> bytes:
    return f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n{extra}\r\n".encode() + body


@contextlib.asynccontextmanager
async def serving(*answers: bytes | Answer) -> AsyncIterator[Server]:
    """Serve the answers in turn, one per request (the last one repeats); after an HTTP/1.0
    answer or one saying `Connection: close`, hang up."""
    script = list(answers)
    server = Server("", [])

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        server.connections += 1
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
                length = next(
                    (int(line.split(":")[1]) for line in head.split("\r\n")
                     if line.lower().startswith("content-length:")),
                    0,
                )  # fmt: skip
                body = await reader.readexactly(length)
                server.requests.append((head, body))
                answer = script.pop(0) if len(script) > 1 else script[0]
                raw = answer(head, body) if callable(answer) else answer
                writer.write(raw)
                await writer.drain()
                if raw.startswith(b"HTTP/1.0") or b"Connection: close" in raw:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    listener = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    server.url = f"http://127.0.0.1:{port}/path?q=1"
    try:
        yield server
    finally:
        listener.close()
        await listener.wait_closed()


Client = HttpClient | LeanClient
Kind = type[HttpClient] | type[LeanClient]


@pytest.fixture(params=[HttpClient, LeanClient], ids=["aiohttp", "lean"])
def kind(request: pytest.FixtureRequest) -> Kind:
    """Every test runs against both clients: one contract, two implementations."""
    return request.param  # type: ignore[no-any-return]


@contextlib.asynccontextmanager
async def client(kind: Kind, **options: object) -> AsyncIterator[Client]:
    http = kind(**options)  # type: ignore[arg-type]
    try:
        yield http
    finally:
        await http.aclose()


# --- what goes out ---------------------------------------------------------------------------


async def test_post_sends_length_host_and_headers_never_expect(kind: Kind) -> None:
    """A POST carries Host, Content-Length and the caller's headers, and no Expect."""
    async with serving(ok()) as server, client(kind) as http:
        auth = http_client.basic_auth("vasp", "sécret")
        await http.post(server.url, b"<xml/>", {"Content-Type": "text/xml", "Authorization": auth})
    [(head, body)] = server.requests
    lines = head.split("\r\n")
    assert lines[0] == "POST /path?q=1 HTTP/1.1"
    assert f"Host: {server.url.split('/')[2]}" in lines
    assert "Content-Length: 6" in lines
    assert "Authorization: Basic dmFzcDpzw6ljcmV0" in lines  # UTF-8, RFC 7617
    assert "expect" not in head.lower()
    assert body == b"<xml/>"


async def test_header_injection_and_own_headers_are_refused(kind: Kind) -> None:
    """Line breaks in a header, or a header the client writes itself, raise before sending."""
    async with serving(ok()) as server, client(kind) as http:
        with pytest.raises(http_client.HttpError):
            await http.post(server.url, b"", {"X-A": "1\r\nX-B: 2"})
        with pytest.raises(http_client.HttpError):
            await http.post(server.url, b"", {"Content-Length": "99"})
    assert server.requests == []


# --- reading answers ---------------------------------------------------------------------------


async def test_chunked_answer_after_an_interim_100_is_read_whole(kind: Kind) -> None:
    """A 100 Continue is skipped; a chunked body (with extensions and trailer) is joined."""
    chunked = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\nX-Two: a\r\nX-Two: b\r\n\r\n"
        b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: x\r\n\r\n"
    )
    async with serving(chunked) as server, client(kind) as http:
        response = await http.post(server.url, b"")
    assert (response.status, response.body) == (201, b"hello world")
    assert response.headers["x-two"] == "a, b"


async def test_body_to_end_of_connection_when_no_length(kind: Kind) -> None:
    """Without Content-Length or chunking the body runs to the close, and the connection
    is not reused."""
    async with (
        serving(b"HTTP/1.0 500 Oops\r\n\r\nsomething broke", ok()) as server,
        client(kind) as http,
    ):
        first = await http.post(server.url, b"")
        second = await http.post(server.url, b"")
    assert (first.status, first.body) == (500, b"something broke")
    assert second.status == 200
    assert server.connections == 2


async def test_oversized_answer_is_refused(kind: Kind) -> None:
    """A body over max_body is an error, not a buffer without end."""
    async with serving(ok(b"x" * 2000)) as server, client(kind, max_body=1000) as http:
        with pytest.raises(http_client.ProtocolError):
            await http.post(server.url, b"")


async def test_truncated_body_is_cut_at_the_cap_and_the_connection_dropped(kind: Kind) -> None:
    """With truncate_body, a body over max_body comes back cut at the cap (not an error),
    and its connection is not reused: the rest of the body is never read."""
    async with (
        serving(ok(b"x" * 4_000_000), ok(b"small")) as server,
        client(kind, max_body=1000, truncate_body=True) as http,
    ):
        response = await http.post(server.url, b"")
        assert (response.status, len(response.body)) == (200, 1000)
        assert (await http.post(server.url, b"")).body == b"small"
    assert server.connections == 2


async def test_truncated_body_stalling_after_the_status_line_is_an_answer(kind: Kind) -> None:
    """With truncate_body, a server that sends its status line and then stalls is answered
    at the timeout with that status; without it, that is a Timeout."""
    stall = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nab"
    async with serving(stall) as server:
        async with client(kind, timeout=0.2, truncate_body=True) as http:
            response = await http.post(server.url, b"")
            assert (response.status, response.body) == (200, b"ab")
        async with client(kind, timeout=0.2) as http:
            with pytest.raises(http_client.Timeout):
                await http.post(server.url, b"")


async def test_garbage_answer_is_a_protocol_error(kind: Kind) -> None:
    """Bytes that are not HTTP/1.x fail the request."""
    async with serving(b"SSH-2.0-OpenSSH\r\n\r\n") as server, client(kind) as http:
        with pytest.raises(http_client.ProtocolError):
            await http.post(server.url, b"")


@pytest.mark.parametrize(
    "answer",
    [
        "HTTP/1.1 ²00 OK\r\nContent-Length: 0\r\n\r\n".encode("latin-1"),
        "HTTP/1.1 200 OK\r\nContent-Length: ³\r\n\r\n".encode("latin-1"),
        b"HTTP/1.1 200 OK\r\nContent-Length: " + b"9" * 5000 + b"\r\n\r\n",
    ],
    ids=["superscript-status", "superscript-length", "5000-digit-length"],
)
async def test_numbers_in_the_head_take_ascii_digits_only(answer: bytes, kind: Kind) -> None:
    """A status or Content-Length of non-ASCII digits or thousands of digits is a protocol
    error, not a ValueError from int()."""
    async with serving(answer) as server, client(kind) as http:
        with pytest.raises(http_client.ProtocolError):
            await http.post(server.url, b"")


# --- connections -------------------------------------------------------------------------------


async def test_keep_alive_reuses_one_connection(kind: Kind) -> None:
    """Sequential requests to one origin share a connection."""
    async with serving(ok()) as server, client(kind) as http:
        for _ in range(5):
            assert (await http.post(server.url, b"x")).status == 200
    assert (len(server.requests), server.connections) == (5, 1)


async def test_connection_the_server_closed_is_not_reused(kind: Kind) -> None:
    """`Connection: close`, or a server hanging up while idle, means a new connection next."""
    async with serving(ok(extra="Connection: close\r\n"), ok()) as server, client(kind) as http:
        await http.post(server.url, b"")
        await http.post(server.url, b"")
    assert server.connections == 2


async def test_idle_connection_past_keepalive_is_replaced(kind: Kind) -> None:
    """A connection idle longer than `keepalive` is closed rather than reused."""
    async with serving(ok()) as server, client(kind, keepalive=0.0) as http:
        await http.post(server.url, b"")
        await asyncio.sleep(0.01)  # idle time is what this test is about
        await http.post(server.url, b"")
    assert server.connections == 2


async def test_concurrent_requests_stay_within_max_connections(kind: Kind) -> None:
    """Twenty requests at once over at most three connections."""
    async with serving(ok()) as server, client(kind, max_connections=3) as http:
        answers = await asyncio.gather(*(http.post(server.url, b"") for _ in range(20)))
    assert all(a.status == 200 for a in answers)
    assert server.connections <= 3


# --- failures ----------------------------------------------------------------------------------


async def test_refused_connection_is_connect_failed(kind: Kind) -> None:
    """Nothing listening: ConnectFailed, an HttpError."""
    async with serving(ok()) as server:
        url = server.url
    async with client(kind) as http:
        with pytest.raises(http_client.ConnectFailed):
            await http.post(url, b"")


async def test_silent_server_times_out_and_the_connection_is_dropped(kind: Kind) -> None:
    """No answer within the timeout: Timeout; the next request gets a fresh connection."""
    async with serving(lambda head, body: b"", ok()) as server, client(kind, timeout=0.2) as http:
        with pytest.raises(http_client.Timeout):
            await http.post(server.url, b"")
        assert (await http.post(server.url, b"")).status == 200
    assert server.connections == 2


async def test_server_hanging_up_mid_answer_is_a_protocol_error(kind: Kind) -> None:
    """A close before the promised Content-Length arrives fails the request."""
    cut = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nConnection: close\r\n\r\nabc"
    async with serving(cut) as server, client(kind) as http:
        with pytest.raises(http_client.ProtocolError):
            await http.post(server.url, b"")


async def test_resolve_hook_chooses_the_address_and_may_refuse(kind: Kind) -> None:
    """New connections go to the addresses the hook gives; its error fails the request."""
    looked_up: list[tuple[str, int]] = []

    async def loopback(host: str, port: int) -> list[str]:
        looked_up.append((host, port))
        return ["127.0.0.1"]

    async def refuse(host: str, port: int) -> list[str]:
        raise http_client.HttpError("not allowed")

    async with serving(ok()) as server:
        port = int(server.url.split(":")[2].split("/")[0])
        async with client(kind, resolve=loopback) as http:
            await http.post(f"http://customer.invalid:{port}/hook", b"")
        async with client(kind, resolve=refuse) as http:
            with pytest.raises(http_client.HttpError, match="not allowed"):
                await http.post(server.url, b"")
    assert looked_up == [("customer.invalid", port)]
    assert "Host: customer.invalid:" in server.requests[0][0]


async def test_https_url_speaks_tls(kind: Kind) -> None:
    """An https URL starts a TLS handshake (a plain-HTTP peer makes it fail to connect)."""
    async with serving(ok()) as server, client(kind, connect_timeout=2.0) as http:
        with pytest.raises(http_client.HttpError):
            await http.post(server.url.replace("http://", "https://"), b"")
    assert server.requests == []


# --- the address guard ---------------------------------------------------------------------


def named(names: dict[str, list[str]]) -> Callable[[str, int], Awaitable[list[str]]]:
    """A resolver over a fixed table of names."""

    async def resolve(host: str, port: int) -> list[str]:
        return names[host]

    return resolve


async def test_guard_refuses_a_name_resolving_to_loopback_unless_allowed(kind: Kind) -> None:
    """A name that resolves to 127.0.0.1 is refused before any connection, unless private
    networks are allowed; an address written in the URL is judged the same way."""
    resolve = named({"customer.example": ["127.0.0.1"]})
    async with serving(ok()) as server:
        port = server.url.split(":")[2].split("/")[0]
        url = f"http://customer.example:{port}/hook"
        async with client(kind, resolve=http_client.guarded(resolve)) as http:
            with pytest.raises(http_client.Refused, match="not allowed"):
                await http.post(url, b"")
            with pytest.raises(http_client.Refused):
                await http.post(server.url, b"")
        assert server.connections == 0
        allowing = http_client.guarded(resolve, allow_private_networks=True)
        async with client(kind, resolve=allowing) as http:
            assert (await http.post(url, b"")).status == 200
    assert server.connections == 1


async def test_guard_checks_each_new_connection_as_it_is_opened(kind: Kind) -> None:
    """The guard runs when a connection opens, on the addresses it then uses: a name whose
    answer turns private after a first, allowed, connection is refused on the next one."""
    names = {"customer.example": ["127.0.0.1"]}
    public = http_client.guarded(named(names), allowed=lambda ip: ip == "127.0.0.1")
    async with serving(ok()) as server, client(kind, resolve=public, keepalive=0.0) as http:
        url = f"http://customer.example:{server.url.split(':')[2]}"
        assert (await http.post(url, b"")).status == 200
        names["customer.example"] = ["127.0.0.2"]  # the DNS answer changes
        await asyncio.sleep(0.01)  # past keepalive: the next request needs a new connection
        with pytest.raises(http_client.Refused):
            await http.post(url, b"")
    assert server.connections == 1


async def test_guard_names_a_host_that_does_not_resolve(kind: Kind) -> None:
    """No address for the name is Unresolved, a ConnectFailed."""
    async with client(kind, resolve=http_client.guarded(named({"gone.example": []}))) as http:
        with pytest.raises(http_client.Unresolved, match=r"gone\.example does not resolve"):
            await http.post("http://gone.example/hook", b"")


# --- hostile servers -------------------------------------------------------------------------


HOSTILE = {
    "truncated-chunk": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n10\r\nonly five"
    ),
    "bad-chunk-size": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n",
    "endless-chunk-size-line": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"1" * 200_000
    ),
    "huge-header": b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n",
    "endless-head": b"HTTP/1.1 200 OK\r\n" + b"X-A: b\r\n" * 100_000,
    "negative-length": b"HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\nabc",
    "conflicting-lengths": b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 9\r\n\r\nabc",
    "length-and-chunked": (
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc"
    ),
    "header-without-colon": b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
    "status-word": b"HTTP/1.1 OK 200\r\nContent-Length: 0\r\n\r\n",
    "http-2-preface": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    "nul-bytes": b"\x00" * 1000,
    "cut-in-the-head": b"HTTP/1.1 200 OK\r\nContent-Len",
}


@pytest.mark.parametrize("answer", HOSTILE.values(), ids=HOSTILE.keys())
async def test_hostile_answers_are_typed_errors_never_a_hang(answer: bytes, kind: Kind) -> None:
    """Broken framing, oversized or endless heads and invalid lengths fail the request with
    an HttpError, within its timeout, and the client still works afterwards."""
    async with (
        serving(answer) as server,
        client(kind, timeout=2.0, max_body=64 * 1024) as http,
    ):
        async with asyncio.timeout(10):
            with pytest.raises(http_client.HttpError):
                await http.post(server.url, b"")
    async with serving(ok()) as good, client(kind) as http:
        assert (await http.post(good.url, b"")).status == 200


async def test_slow_bytes_end_at_the_timeout(kind: Kind) -> None:
    """A server that trickles its answer a byte at a time is a Timeout at the whole
    exchange's timeout, however steadily the bytes come."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        try:
            for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 1000:
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(0.01)  # the trickle itself is what this test is about
        except ConnectionError:
            pass
        finally:
            writer.close()

    listener = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        async with client(kind, timeout=0.5) as http, asyncio.timeout(10):
            with pytest.raises(http_client.Timeout, match=r"within 0\.5 s"):
                await http.post(f"http://127.0.0.1:{port}/", b"")
    finally:
        listener.close()
        await listener.wait_closed()
