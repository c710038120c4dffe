"""What a new user does: `mmsgate run` on a fresh machine, the seed example, the status API,
then Ctrl-C/SIGTERM while clients are sending, losing nothing."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import httpx
import pytest

from tests import samples
from tests.api.test_send_mms import SEED
from tests.conftest import MediaServer
from tests.e2e.load import send_through_signal
from tests.ports import free_port

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


def start_run(cwd: Path, port: int, out: IO[str], log: IO[str]) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MMSGATE_")}
    env["MMSGATE_ALLOW_PRIVATE_NETWORKS"] = "1"  # the media server of this test is on loopback
    return subprocess.Popen(
        [sys.executable, "-m", "mmsgate", "run", "--port", str(port)],
        cwd=cwd,
        env=env,
        stdout=out,
        stderr=log,
        text=True,
    )


def read_key(path: Path) -> str:
    """The demo key, from the banner `mmsgate run` prints once on a fresh data dir."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if found := re.search(r"api-key (\S+)", path.read_text()):
            return found.group(1)
        time.sleep(0.05)
    raise AssertionError("mmsgate run printed no demo api-key")


async def test_fresh_run_accepts_the_seed_example_and_stops_cleanly(
    tmp_path: Path, media_server: MediaServer
) -> None:
    """A fresh `mmsgate run` creates the demo account, accepts the seed example, shows it
    queued, and on SIGTERM finishes in-flight requests: every Success is on disk."""
    media_server.add("/images/1.jpg", "image/jpeg", samples.jpeg())
    media_server.add("/audio/1.mp3", "audio/mpeg", samples.mp3())
    media_server.add("/cal/2.ics", "text/calendar", samples.ICAL)
    port = free_port()
    out, log = (tmp_path / "stdout.txt").open("w"), (tmp_path / "server.log").open("w")
    proc = start_run(tmp_path, port, out, log)
    try:
        key = read_key(tmp_path / "stdout.txt")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            await wait_up(client)
            seed = SEED.format(key=key, base=media_server.base)
            response = await client.post("/ep/v1/", content=seed)
            assert "<status>Success</status>" in response.text, response.text
            tracking_id = response.text.split("<tracking-id>")[1].split("<")[0]
            status = await client.get(f"/v1/messages/{tracking_id}", headers={"x-api-key": key})
            assert status.json()["state"] in ("queued", "submitted", "delivered")
            accepted = await load_then_terminate(client, proc, key)
        # After its graceful shutdown the server re-raises SIGTERM (uvicorn does, so that a
        # supervisor sees why it stopped): -SIGTERM is a clean stop here, like 0.
        assert proc.wait(timeout=60) in (0, -signal.SIGTERM)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        out.close()
        log.close()
    assert "Traceback" not in (tmp_path / "server.log").read_text()
    assert (tmp_path / "mmsgate-data" / "mmsgate.db").exists()
    conn = sqlite3.connect(tmp_path / "mmsgate-data" / "mmsgate.db")
    try:
        stored = {row[0] for row in conn.execute("SELECT tracking_id FROM recipients")}
    finally:
        conn.close()
    assert tracking_id in stored
    assert set(accepted) <= stored
    assert len(accepted) >= 50


async def wait_up(client: httpx.AsyncClient) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if (await client.get("/readyz")).status_code == 200:
                return
        except httpx.TransportError:
            await asyncio.sleep(0.05)
    raise AssertionError("mmsgate run did not become ready")


async def load_then_terminate(
    client: httpx.AsyncClient, proc: subprocess.Popen[str], key: str
) -> list[str]:
    save = (
        f"<request><action>saveMMS</action><api-key>{key}</api-key><name>t</name>"
        "<slide><message-text>hi</message-text></slide></request>"
    )
    mms_id = (await client.post("/ep/v1/", content=save)).text.split("<mms-id>")[1].split("<")[0]
    return await send_through_signal(
        client, proc, key=key, mms_id=mms_id, senders=8, signal_after=100, signum=signal.SIGTERM
    )
