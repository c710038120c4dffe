"""A route whose MMSC refuses our credentials, with `mmsgate serve` and `mmsgate worker` as
separate processes on one database: the worker finds the route unhealthy, the serve
process's /readyz and /metrics say so, and once the MMSC accepts, the message is delivered
and the route healthy again."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_delivery_faults import start
from tests.e2e.test_kill9 import cli, wait_healthy
from tests.pipeline.test_route_health import Peer, peer  # noqa: F401 - fixture
from tests.ports import free_ports

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


async def until(check: Callable[[], object], limit: float = 30.0) -> None:
    deadline = time.monotonic() + limit
    while not await check():  # type: ignore[misc]
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.1)


async def test_serve_tells_of_a_route_the_worker_found_refusing_our_credentials(
    db_url: str,
    tmp_path: Path,
    peer: Peer,  # noqa: F811
) -> None:
    """HTTP 401 from the MMSC: the message stays queued, the serve process's /readyz is 503
    naming the route and why, mmsgate_route_healthy is 0; the MMSC accepts: delivered
    (submitted), /readyz 200, the route 1 again; the worker logged each change once."""
    peer.listen()
    peer.mode = "401"
    [api_port] = free_ports(1)
    config = tmp_path / "mmsgate.toml"
    config.write_text(
        f'[[routes]]\nname = "att"\nkind = "mm7"\nurl = "{peer.url}"\nusername = "vasp"\n'
        'password = "wrong"\ninbound_username = "mmsc"\ninbound_password = "pw"\ndefault = true\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MMSGATE_")}
    env |= {
        "MMSGATE_DATA_DIR": str(tmp_path / "data"),
        "MMSGATE_DATABASE_URL": db_url,
        "MMSGATE_CONFIG": str(config),
    }
    cli(env, "migrate")
    key = json.loads(cli(env, "accounts", "create", "shop", "--sender", "28444", "--json"))
    log = tmp_path / "worker.log"
    serve = start(env, tmp_path / "serve.log", "serve", "--port", str(api_port))
    worker = start(env, log, "worker")
    procs: list[subprocess.Popen[bytes]] = [serve, worker]
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{api_port}", timeout=10) as client:
            await wait_healthy(client, serve)
            answer = await client.post(
                "/ep/v1/",
                content=(
                    f"<request><action>sendMMS</action><api-key>{key['api_key']}</api-key>"
                    "<to>12399471613</to><from>28444</from><name>x</name>"
                    "<disable-fallback-sms>yes</disable-fallback-sms>"
                    "<slide><message-text>Hello</message-text></slide></request>"
                ),
            )
            tracking_id = re.findall(r"<tracking-id>([^<]+)<", answer.text)[0]

            async def unready() -> bool:
                return (await client.get("/readyz")).status_code == 503

            await until(unready)
            ready = (await client.get("/readyz")).json()
            assert ready["routes"]["att"]["reason"] == "MMSC refused our credentials (HTTP 401)"
            metrics = (await client.get("/metrics")).text
            assert 'mmsgate_route_healthy{route="att"} 0' in metrics
            headers = {"x-api-key": key["api_key"]}
            status = (await client.get(f"/v1/messages/{tracking_id}", headers=headers)).json()
            assert status["state"] == "queued"

            peer.mode = "accept"

            async def submitted() -> bool:
                found = await client.get(f"/v1/messages/{tracking_id}", headers=headers)
                return bool(found.json()["state"] == "submitted")

            await until(submitted)
            await until(lambda: _ready(client))
            metrics = (await client.get("/metrics")).text
            assert 'mmsgate_route_healthy{route="att"} 1' in metrics
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)
    text = log.read_text()
    assert text.count("route.unhealthy") == 1
    assert text.count("route.healthy") == 1


async def _ready(client: httpx.AsyncClient) -> bool:
    return (await client.get("/readyz")).status_code == 200
