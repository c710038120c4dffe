"""`mmsgate run`'s demo account: its key and postback secret are printed by a start that
serves, never spent on one that fails; the built-in simulator listens where it is told."""

from __future__ import annotations

import queue
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from mmsgate.pipeline.postbacks import SIGNATURE_HEADER, TIMESTAMP_HEADER, signature
from tests.api.test_send_mms import SEED, seed_media
from tests.conftest import MediaServer
from tests.e2e.startup import assert_clean_failure, env, mmsgate
from tests.ports import HOST, free_ports

pytestmark = pytest.mark.slow
Postback = tuple[dict[str, str], bytes]


@pytest.fixture
def postback_receiver() -> Iterator[tuple[str, queue.Queue[Postback]]]:
    """A real HTTP endpoint on loopback that keeps every POST (headers, body)."""
    received: queue.Queue[Postback] = queue.Queue()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            received.put((dict(self.headers.items()), body))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            return

    server = ThreadingHTTPServer((HOST, 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{HOST}:{server.server_address[1]}/hook", received
    finally:
        server.shutdown()
        server.server_close()


def banner(path: Path, proc: subprocess.Popen[str]) -> tuple[str, str]:
    """The demo api-key and postback secret from the banner of a serving `mmsgate run`."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        text = path.read_text()
        key, secret = re.search(r"api-key (\S+)", text), re.search(r"secret ([0-9a-f]{64})", text)
        if key and secret:
            return key.group(1), secret.group(1)
        time.sleep(0.05)
    raise AssertionError(f"no demo key and secret printed: {path.read_text()!r}")


def wait_ready(base: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/readyz").status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.05)
    raise AssertionError("mmsgate run did not become ready")


def test_key_survives_a_failed_start_and_secret_signs_postbacks(
    tmp_path: Path,
    media_server: MediaServer,
    postback_receiver: tuple[str, queue.Queue[Postback]],
) -> None:
    """A first `run` on a taken port prints no key and exits non-zero; the next on free
    ports (the simulator's chosen with --sim-mm7-port/--sim-smpp-port) prints a key that
    sends the seed example, and a postback secret that verifies the postbacks' signature."""
    seed_media(media_server)
    hook, received = postback_receiver
    environment = env(MMSGATE_ALLOW_PRIVATE_NETWORKS="1")
    port, mm7_port, smpp_port = free_ports(3)
    with socket.socket() as taken:
        taken.bind((HOST, port))
        taken.listen()
        failed = mmsgate("run", "--port", str(port), cwd=tmp_path, environment=environment)
    assert_clean_failure(failed, "already in use")
    assert "api-key" not in failed.stdout
    args = ["--port", str(port), "--sim-mm7-port", str(mm7_port)]
    args += ["--sim-smpp-port", str(smpp_port)]
    out_path, log_path = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    with out_path.open("w") as out, log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mmsgate", "run", *args],
            cwd=tmp_path, env=environment, stdout=out, stderr=log, text=True,
        )  # fmt: skip
    try:
        key, secret = banner(out_path, proc)
        base = f"http://{HOST}:{port}"
        wait_ready(base)
        log_text = log_path.read_text()
        assert f"simulated MMSC on http://127.0.0.1:{mm7_port}/mm7" in log_text
        assert f"simulated SMSC on 127.0.0.1:{smpp_port}" in log_text
        socket.create_connection((HOST, mm7_port), timeout=5).close()
        socket.create_connection((HOST, smpp_port), timeout=5).close()
        update = ["accounts", "update", "demo", "--postback-url", hook]
        assert mmsgate(*update, cwd=tmp_path, environment=environment).returncode == 0
        sent = httpx.post(f"{base}/ep/v1/", content=SEED.format(key=key, base=media_server.base))
        assert "<status>Success</status>" in sent.text, sent.text
        headers, body = received.get(timeout=60)
        stamp = int(headers[TIMESTAMP_HEADER])
        assert headers[SIGNATURE_HEADER] == signature(secret, stamp, body)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    assert "Traceback" not in log_path.read_text()
