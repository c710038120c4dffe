"""Several processes on one embedded data dir: `accounts create` while `serve` is serving."""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_kill9 import cli, start_server, wait_healthy
from tests.ports import free_port

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


async def test_account_created_while_serving_works_at_once(tmp_path: Path) -> None:
    """An account created by another process while `serve` runs can send straight away."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MMSGATE_")}
    env["MMSGATE_DATA_DIR"] = str(tmp_path / "data")
    port = free_port()
    proc = start_server(env, port)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            await wait_healthy(client, proc)
            key = json.loads(cli(env, "accounts", "create", "late", "--sender", "28444", "--json"))[
                "api_key"
            ]
            save = (
                f"<request><action>saveMMS</action><api-key>{key}</api-key><name>n</name>"
                "<slide><message-text>hi</message-text></slide></request>"
            )
            response = await client.post("/ep/v1/", content=save)
            assert "<status>Success</status>" in response.text, response.text
            rotated = cli(env, "accounts", "rotate-key", "late")
            assert "new api-key" in rotated
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert proc.returncode in (0, -15)
