"""Fuzzing the lean client (and aiohttp's beside it) with hostile answers over loopback:
broken framing, truncated chunks, huge heads, invalid lengths, slow bytes. Whatever the
server sends, a request ends, within its timeout, in a Response or an HttpError."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmsgate import http_client
from mmsgate.http_client import HttpClient
from mmsgate.http_lean import LeanClient

pytestmark = pytest.mark.anyio

TIMEOUT = 0.3  # seconds a request may take; a stalling answer ends at it
CAP = 4096  # max_body of the clients under test

status_lines = st.one_of(
    st.sampled_from(
        [b"HTTP/1.1 200 OK", b"HTTP/1.0 500 Oops", b"HTTP/1.1 204 No Content", b"HTTP/1.1 100 Go"]
    ),
    st.binary(max_size=40).map(lambda junk: b"HTTP/1.1 " + junk.replace(b"\r\n", b"")),
    st.binary(max_size=60),
)
header_values = st.one_of(
    st.sampled_from([b"0", b"5", b"-1", b"99999999999999999999", b"3, 9", b"chunked", b"x"]),
    st.binary(max_size=30).map(lambda raw: raw.replace(b"\r", b"").replace(b"\n", b"")),
    st.integers(0, 200_000).map(lambda size: b"v" * size),  # up to a huge header
)
header_lines = st.lists(
    st.tuples(
        st.sampled_from([b"Content-Length", b"Transfer-Encoding", b"Connection", b"X-Any", b""]),
        header_values,
    ).map(lambda pair: pair[0] + b": " + pair[1]),
    max_size=6,
)
chunk_sizes = st.lists(
    st.one_of(st.integers(0, 5000).map(lambda n: f"{n:x}".encode()), st.binary(max_size=8)),
    max_size=4,
)


@st.composite
def answers(draw: st.DrawFn) -> tuple[bytes, bool]:
    """Raw bytes of an answer, cut anywhere, and whether the server then hangs up (else it
    falls silent and keeps the connection open)."""
    head = draw(status_lines) + b"\r\n" + b"".join(line + b"\r\n" for line in draw(header_lines))
    body = b"".join(size + b"\r\n" + b"d" * 64 + b"\r\n" for size in draw(chunk_sizes))
    raw = head + b"\r\n" + body + draw(st.binary(max_size=100))
    cut = draw(st.integers(0, len(raw)))
    return raw[:cut] if draw(st.booleans()) else raw, draw(st.booleans())


@contextlib.asynccontextmanager
async def answering(raw: bytes, hang_up: bool, trickle: bool) -> AsyncIterator[str]:
    """A server that reads a request head and sends `raw` (a byte at a time when
    `trickle`), then hangs up or stays silent until the client leaves."""

    handlers: set[asyncio.Task[None]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        try:
            await reader.readuntil(b"\r\n\r\n")
            if trickle:
                for index in range(min(len(raw), 64)):
                    writer.write(raw[index : index + 1])
                    await writer.drain()
                    await asyncio.sleep(0.01)  # slow bytes are what is being sent
            else:
                writer.write(raw)
                await writer.drain()
            if not hang_up:
                await reader.read()  # silent until the client closes
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    listener = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{listener.sockets[0].getsockname()[1]}/"
    finally:
        listener.close()
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        await listener.wait_closed()


async def exchange(kind: type[HttpClient] | type[LeanClient], raw: bytes, hang_up: bool) -> None:
    """One POST against the answer: a Response within the cap, or an HttpError, in time."""
    for trickle in (False, True):
        async with answering(raw, hang_up, trickle) as url:
            client = kind(timeout=TIMEOUT, connect_timeout=1.0, max_body=CAP)
            try:
                async with asyncio.timeout(TIMEOUT + 5):  # a hang fails the test here
                    response = await client.post(url, b"hello", {"Content-Type": "text/plain"})
                assert len(response.body) <= CAP
                assert 100 <= response.status <= 999
            except http_client.HttpError:
                pass
            finally:
                await client.aclose()


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(answer=answers())
async def test_the_lean_client_ends_every_hostile_exchange_cleanly(
    answer: tuple[bytes, bool],
) -> None:
    """Random, cut and trickled answers end the lean client's request in a Response or an
    HttpError within its timeout; nothing else escapes and nothing hangs."""
    await exchange(LeanClient, *answer)


@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(answer=answers())
async def test_the_aiohttp_client_ends_every_hostile_exchange_cleanly(
    answer: tuple[bytes, bool],
) -> None:
    """The same answers end aiohttp's request as cleanly."""
    await exchange(HttpClient, *answer)
