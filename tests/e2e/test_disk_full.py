"""`mmsgate run` on a data dir whose disk fills up: sends are refused with E503, the worker
loop's claims fail and /readyz and /metrics say the queue is stalled; once space is freed,
the same process (no restart) is ready again and delivers what is sent."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.startup import env, mmsgate
from tests.ports import free_port

pytestmark = [pytest.mark.anyio, pytest.mark.slow]
DEADLINE = 60.0  # seconds each step may take


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB tmpfs mounted for the test (the suite runs as root), unmounted after."""
    mount = tmp_path / "disk"
    mount.mkdir()
    command = ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)]
    mounted = subprocess.run(command, capture_output=True, text=True, check=False)
    if mounted.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs (this test needs root): {mounted.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


@dataclasses.dataclass(frozen=True)
class Hook:
    """A postback URL on loopback and the bodies posted to it."""

    url: str
    seen: list[bytes]


@pytest.fixture
def down_hook() -> Iterator[Hook]:
    """A postback receiver that answers 503 to every postback (and keeps them): the
    postbacks stay queued, retried, so jobs fall due while the disk is full."""
    seen: list[bytes] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            seen.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Hook(f"http://127.0.0.1:{server.server_address[1]}/hook", seen)
    finally:
        server.shutdown()
        server.server_close()


def fill(path: Path) -> None:
    """Write zeros to `path` until the file system has no byte left."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    chunk = bytes(1 << 20)
    try:
        while True:
            os.write(fd, chunk)  # a short write takes the last bytes; the next one fails
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
    finally:
        os.close(fd)


def start_run(log: Path, environment: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    """`mmsgate run ARGS` in a process of its own, its output (the log) in `log`."""
    with log.open("wb") as out:
        command = [sys.executable, "-m", "mmsgate", "run", *args]
        return subprocess.Popen(command, cwd=log.parent, env=environment, stdout=out, stderr=out)


def free(path: Path) -> None:
    """Give the space `fill` took back."""
    path.unlink()


def send(key: str, text: str) -> str:
    return (
        f"<request><action>sendMMS</action><api-key>{key}</api-key><to>12399471613</to>"
        "<from>28444</from><name>disk</name><disable-fallback-sms>yes</disable-fallback-sms>"
        f"<slide><message-text>{text}</message-text></slide></request>"
    )


def tracking_id(answer: httpx.Response) -> str:
    found = re.search(r"<tracking-id>([^<]+)</tracking-id>", answer.text)
    assert found, answer.text
    return found.group(1)


async def until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"not within {DEADLINE} s: {what}")


async def test_a_full_disk_stalls_the_queue_and_freeing_it_delivers_without_a_restart(
    small_disk: Path, tmp_path: Path, down_hook: Hook
) -> None:
    """With the disk full a send answers E503, the worker's claims fail (logged at error)
    and /readyz is 503 "worker stalled" with mmsgate_worker_stalled 1; with the space freed
    /readyz is ok again and a new message is delivered by the same process."""
    data = small_disk / "data"
    environment = env(MMSGATE_ALLOW_PRIVATE_NETWORKS="1")
    config = tmp_path / "mmsgate.toml"
    config.write_text("worker_stall_seconds = 1\n")
    created = mmsgate(
        "accounts", "create", "acme", "--sender", "28444", "--postback-url", down_hook.url,
        "--json",
        "--data-dir", str(data), cwd=tmp_path, environment=environment,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    key = json.loads(created.stdout)["api_key"]
    port = free_port()
    log = tmp_path / "run.log"
    proc = start_run(log, environment, "--data-dir", str(data), "--port", str(port),
                     "--config", str(config), "--log-format", "json")  # fmt: skip
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            await _through_a_full_disk(client, key, small_disk / "fill", down_hook)
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=30)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    events = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    failed = [e for e in events if e["event"] == "worker.claim_failed"]
    assert failed, "the worker's claims did not fail while the disk was full"
    assert {e["level"] for e in failed} == {"error"}
    assert not [e for e in events if e["event"] == "worker.loop_failed"]


async def _through_a_full_disk(
    client: httpx.AsyncClient, key: str, filler: Path, hook: Hook
) -> None:
    await until(lambda: _answers(client, "/healthz", 200), "the API listens")
    first = tracking_id(await client.post("/ep/v1/", content=send(key, "before")))
    await until(lambda: _state(client, key, first, "delivered"), "the first message delivered")
    await until(_async(lambda: len(hook.seen) >= 1), "a postback attempt, retried later")

    fill(filler)
    refused = await client.post("/ep/v1/", content=send(key, "while full"))
    assert "<error-code>E503</error-code>" in refused.text, refused.text
    await until(lambda: _stalled(client), "/readyz says the worker is stalled")
    scraped = (await client.get("/metrics")).text
    assert "mmsgate_worker_stalled 1" in scraped
    assert re.search(r'mmsgate_worker_healthy\{worker="[^"]+"\} 0\.0', scraped), scraped

    free(filler)
    await until(lambda: _answers(client, "/readyz", 200), "/readyz ok once space is free")
    after = tracking_id(await client.post("/ep/v1/", content=send(key, "after")))
    await until(lambda: _state(client, key, after, "delivered"), "the new message delivered")
    scraped = (await client.get("/metrics")).text
    assert "mmsgate_worker_stalled 0" in scraped
    assert re.search(r'mmsgate_worker_healthy\{worker="[^"]+"\} 1\.0', scraped), scraped


async def _answers(client: httpx.AsyncClient, path: str, status: int) -> bool:
    try:
        return (await client.get(path)).status_code == status
    except httpx.TransportError:
        return False


async def _stalled(client: httpx.AsyncClient) -> bool:
    ready = await client.get("/readyz")
    return ready.status_code == 503 and ready.json()["status"] == "worker stalled"


async def _state(client: httpx.AsyncClient, key: str, tracking: str, state: str) -> bool:
    found = await client.get(f"/v1/messages/{tracking}", headers={"x-api-key": key})
    return found.status_code == 200 and found.json()["state"] == state


def _async(check: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    async def checked() -> bool:
        return check()

    return checked
