"""Fairness benchmark: how long account B's sends take while account A's postback receiver
hangs (accepts the connection, never answers), against the same run with A's receiver
answering at once.

    .venv/bin/python bench/fairness/bench.py [--a-messages 300] [--b-messages 10] [--no-hang]

Starts `mmsgate run` on loopback (SQLite, the built-in simulator), creates accounts A and B
with the CLI, sends A's messages (100 numbers a request, text only), waits until A's
receiver holds postbacks, then sends B's messages one at a time. For each of B's messages it
measures the submit latency (accepted → `submitted` in the status API's history) and the
postback latency (`submitted` → its N101 arriving at B's receiver; `delivered` → its N102).
Everything listens on 127.0.0.1; the run gives up after --timeout seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import re
import signal
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
MMSGATE = [str(ROOT / ".venv" / "bin" / "mmsgate")]


class Receiver:
    """A postback endpoint on loopback: answers 200 at once, or holds every request."""

    def __init__(self, hang: bool) -> None:
        self.hang = hang
        self.arrived: dict[tuple[str, str], float] = {}  # (tracking-id, code) → wall time
        self.open = 0
        self.most_open = 0
        self.requests = 0
        self.server: asyncio.Server | None = None
        self.changed = asyncio.Event()
        self.serving: set[asyncio.Task[None]] = set()

    async def start(self) -> str:
        self.server = await asyncio.start_server(self.serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/hook"

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.serving.add(task)
        task.add_done_callback(self.serving.discard)
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
                body = (await reader.readexactly(length)).decode()
                self.requests += 1
                self.changed.set()
                if self.hang:
                    await reader.read()  # until the gateway gives up and closes
                    return
                self.record(body)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            self.open -= 1
            writer.close()

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for task in self.serving:
            task.cancel()
        await asyncio.gather(*self.serving, return_exceptions=True)

    def record(self, body: str) -> None:
        tracking = re.search(r"<tracking-id>([^<]+)</tracking-id>", body)
        code = re.search(r"<code>([^<]+)</code>", body)
        if tracking and code:
            self.arrived.setdefault((tracking.group(1), code.group(1)), time.time())
            self.changed.set()

    async def until(self, check: Callable[[], bool]) -> None:
        while not check():
            self.changed.clear()
            await self.changed.wait()


def send_body(key: str, sender: str, numbers: list[str]) -> str:
    return (
        f"<request><action>sendMMS</action><api-key>{key}</api-key>"
        f"<to>{','.join(numbers)}</to><from>{sender}</from><name>n</name>"
        "<fallback-sms-text>x</fallback-sms-text>"
        "<slide><message-text>hello</message-text></slide></request>"
    )


async def create_account(name: str, sender: str, url: str, env: dict[str, str]) -> str:
    proc = await asyncio.create_subprocess_exec(
        *MMSGATE, "accounts", "create", name, "--sender", sender, "--postback-url", url, "--json",
        env=env, stdout=subprocess.PIPE,
    )  # fmt: skip
    out, _ = await proc.communicate()
    return str(json.loads(out)["api_key"])


async def wait_ready(client: httpx.AsyncClient, deadline: float) -> None:
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.TransportError):
            if (await client.get("/readyz")).status_code == 200:
                return
        await asyncio.sleep(0.1)
    raise SystemExit("mmsgate run did not become ready")


async def history_at(client: httpx.AsyncClient, key: str, tracking: str, state: str) -> float:
    """When the status API says `tracking` entered `state` (wall time), polled until it has."""
    while True:
        status = (await client.get(f"/v1/messages/{tracking}", headers={"x-api-key": key})).json()
        for event in status.get("history", []):
            if event["state"] == state:
                return dt.datetime.fromisoformat(event["at"]).timestamp()
        await asyncio.sleep(0.05)


async def measure_b(
    client: httpx.AsyncClient, key: str, receiver: Receiver, count: int
) -> list[tuple[float, float, float]]:
    """(submit, N101, N102) latencies of `count` sends from B, one at a time."""
    found = []
    for i in range(count):
        accepted = time.time()
        answer = await client.post("/ep/v1/", content=send_body(key, "2222", [f"17746661{i:03d}"]))
        tracking = answer.text.split("<tracking-id>")[1].split("<")[0]
        submitted = await history_at(client, key, tracking, "submitted")
        delivered = await history_at(client, key, tracking, "delivered")
        await receiver.until(lambda t=tracking: (t, "N102") in receiver.arrived)
        n101 = receiver.arrived[(tracking, "N101")]
        n102 = receiver.arrived[(tracking, "N102")]
        found.append((submitted - accepted, n101 - submitted, n102 - delivered))
    return found


def main(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="mmsgate-bench-fair."))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MMSGATE_")}
    env |= {"MMSGATE_ALLOW_PRIVATE_NETWORKS": "1", "MMSGATE_DATA_DIR": str(work / "data")}
    log = (work / "run.log").open("wb")
    proc = subprocess.Popen(
        [*MMSGATE, "run", "--port", str(args.port)], env=env, cwd=work, stdout=log, stderr=log
    )
    try:
        asyncio.run(session(args, env))
    finally:
        proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=30)
        if proc.poll() is None:
            proc.kill()


async def session(args: argparse.Namespace, env: dict[str, str]) -> None:
    hanging, b_side = Receiver(hang=not args.no_hang), Receiver(hang=False)
    a_url, b_url = await hanging.start(), await b_side.start()
    deadline = time.monotonic() + args.timeout
    base = f"http://127.0.0.1:{args.port}"
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        await wait_ready(client, deadline)
        key_a = await create_account("a", "1111", a_url, env)
        key_b = await create_account("b", "2222", b_url, env)
        for n in range(0, args.a_messages, 100):
            numbers = [f"1774555{i:04d}" for i in range(n, min(n + 100, args.a_messages))]
            await client.post("/ep/v1/", content=send_body(key_a, "1111", numbers))
        async with asyncio.timeout(max(1.0, deadline - time.monotonic())):
            await hanging.until(lambda: hanging.requests >= min(16, args.a_messages))
            found = await measure_b(client, key_b, b_side, args.b_messages)
    report(args, found, hanging)
    for receiver in (hanging, b_side):
        await receiver.stop()


def report(args: argparse.Namespace, found: list[tuple[float, float, float]], a: Receiver) -> None:
    state = "answering at once" if args.no_hang else "hanging"
    print(f"A's receiver {state}; {args.a_messages} messages from A, {args.b_messages} from B")
    for name, values in zip(
        ("submit", "N101 postback", "N102 postback"), zip(*found, strict=True), strict=True
    ):
        ms = sorted(v * 1000 for v in values)
        print(f"  B {name:14} median {statistics.median(ms):8.0f} ms   max {ms[-1]:8.0f} ms")
    print(f"  A's receiver: {a.requests} requests, at most {a.most_open} connections at once")


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--a-messages", type=int, default=300)
    parser.add_argument("--b-messages", type=int, default=10)
    parser.add_argument("--no-hang", action="store_true", help="A's receiver answers at once")
    parser.add_argument("--port", type=int, default=18780)
    parser.add_argument("--timeout", type=float, default=180.0)
    return parser.parse_args()


if __name__ == "__main__":
    main(parse())
