"""Outbound HTTP benchmark: the client CPU one POST costs mmsgate, for each of its two clients
(`http_lean.LeanClient`, used for MM7 submits, simulator reports and postbacks;
`http_client.HttpClient`, aiohttp, used for Kannel and media fetches) and for httpx when
it is installed, against one keep-alive HTTP/1.1 server on loopback in a child process.

    .venv/bin/python bench/http/bench.py [--requests N] [--in-flight N] [--rounds N]

Each round sends N POSTs of 1 KB from every client in turn (the order rotating each round),
`--in-flight` at once, and measures this process's CPU time, so the server's work is not
counted. Prints each client's median µs of CPU and of wall time a POST, and its ratio
against the lean client.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import socket
import statistics
import time
from collections.abc import Awaitable, Callable

from mmsgate.http_client import HttpClient
from mmsgate.http_lean import LeanClient

ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: 64\r\n\r\n" + b"x" * 64
BODY = b"<x>" + b"a" * 1017 + b"</x>"
Post = Callable[[str, bytes], Awaitable[int]]


class _Server(asyncio.Protocol):
    """Answers every request on the connection with ANSWER, keeping it open."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport, self.buffer = transport, b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head = self.buffer[:end].lower()
            start = head.find(b"content-length:")
            length = int(head[start + 15 :].split(b"\r\n", 1)[0]) if start >= 0 else 0
            if len(self.buffer) < end + 4 + length:
                return
            self.buffer = self.buffer[end + 4 + length :]
            self.transport.write(ANSWER)


def _serve(sock: socket.socket) -> None:
    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(_Server, sock=sock)
        await server.serve_forever()

    asyncio.run(main())


async def _run(post: Post, url: str, requests: int, in_flight: int) -> tuple[float, float]:
    """CPU and wall seconds for `requests` POSTs, `in_flight` at once."""
    left = iter(range(requests))

    async def lane() -> None:
        for _ in left:
            status = await post(url, BODY)
            assert status == 200, status

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(in_flight)))
    return time.process_time() - cpu, time.perf_counter() - wall


async def _clients() -> dict[str, tuple[Post, Callable[[], Awaitable[None]]]]:
    lean, aio = LeanClient(), HttpClient()

    async def lean_post(url: str, body: bytes) -> int:
        return (await lean.post(url, body, {"Content-Type": "text/xml"})).status

    async def aio_post(url: str, body: bytes) -> int:
        return (await aio.post(url, body, {"Content-Type": "text/xml"})).status

    clients = {"lean": (lean_post, lean.aclose), "aiohttp": (aio_post, aio.aclose)}
    try:
        import httpx
    except ImportError:
        return clients
    limits = httpx.Limits(max_connections=16, max_keepalive_connections=16)
    hx = httpx.AsyncClient(limits=limits, trust_env=False)

    async def hx_post(url: str, body: bytes) -> int:
        return (await hx.post(url, content=body, headers={"Content-Type": "text/xml"})).status_code

    clients["httpx"] = (hx_post, hx.aclose)
    return clients


async def bench(url: str, requests: int, in_flight: int, rounds: int) -> None:
    clients = await _clients()
    names = list(clients)
    for name in names:  # warm each client's pool and code paths
        await _run(clients[name][0], url, 200, in_flight)
    cpu: dict[str, list[float]] = {n: [] for n in names}
    wall: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            c, w = await _run(clients[name][0], url, requests, in_flight)
            cpu[name].append(c / requests * 1e6)
            wall[name].append(w / requests * 1e6)
    for _, close in clients.values():
        await close()
    base = statistics.median(cpu["lean"])
    print(f"{requests} POSTs of {len(BODY)} B, {in_flight} in flight, {rounds} rounds (medians)")
    for name in names:
        c, w = statistics.median(cpu[name]), statistics.median(wall[name])
        print(f"{name:8} {c:8.1f} µs CPU a POST {w:8.1f} µs wall   {c / base:5.2f}× lean's CPU")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--in-flight", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = multiprocessing.get_context("spawn").Process(target=_serve, args=(sock,))
    server.start()
    try:
        url = f"http://127.0.0.1:{port}/mm7"
        asyncio.run(bench(url, args.requests, args.in_flight, args.rounds))
    finally:
        server.terminate()
        server.join(5)


if __name__ == "__main__":
    main()
