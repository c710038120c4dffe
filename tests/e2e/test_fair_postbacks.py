"""Accounts cannot starve each other through `mmsgate run`: while account A's postback
receiver hangs on its postbacks, account B's MMS is submitted and its postbacks arrive."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from pathlib import Path

import httpx
import pytest

from tests.e2e.startup import env
from tests.e2e.test_new_user import wait_up
from tests.pipeline.test_postback_shares import DEADLINE, hook
from tests.ports import free_port

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

# A worker of 16 slots, and a postback timeout longer than the test's deadline: were A's
# hanging postbacks to hold B's work back, nothing would free it before the deadline.
CONFIG = """
worker_concurrency = 16
[postbacks]
timeout = 120.0
"""


async def mmsgate(*args: str, environment: dict[str, str]) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mmsgate", *args, env=environment, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await proc.communicate()
    assert proc.returncode == 0, out
    return out.decode()


def send(key: str, sender: str, numbers: list[str]) -> str:
    return (
        f"<request><action>sendMMS</action><api-key>{key}</api-key><to>{','.join(numbers)}</to>"
        f"<from>{sender}</from><name>n</name><fallback-sms-text>x</fallback-sms-text>"
        "<slide><message-text>hello</message-text></slide></request>"
    )


async def test_a_hanging_receiver_leaves_another_accounts_sends_alone(tmp_path: Path) -> None:
    """Account A's receiver holds its postbacks unanswered; account B's message, sent after
    A's 40, is submitted and B gets N101 and N102 while A's postbacks still hang."""
    (tmp_path / "mmsgate.toml").write_text(CONFIG)
    port = free_port()
    environment = env(
        MMSGATE_DATA_DIR=str(tmp_path / "data"),
        MMSGATE_CONFIG=str(tmp_path / "mmsgate.toml"),
        MMSGATE_ALLOW_PRIVATE_NETWORKS="1",
    )
    log = (tmp_path / "run.log").open("wb")
    run = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mmsgate", "run", "--port", str(port),
        env=environment, stdout=log, stderr=log,
    )  # fmt: skip
    try:
        async with (
            hook("hang") as slow,
            hook("ok") as fine,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client,
        ):
            await wait_up(client)
            keys = {}
            for name, sender, url in (("a", "1111", slow.url), ("b", "2222", fine.url)):
                created = await mmsgate(
                    "accounts", "create", name, "--sender", sender, "--postback-url", url,
                    "--json", environment=environment,
                )  # fmt: skip
                keys[name] = json.loads(created)["api_key"]
            numbers = [f"17745551{i:03d}" for i in range(40)]
            answer = await client.post("/ep/v1/", content=send(keys["a"], "1111", numbers))
            assert "<status>Success</status>" in answer.text
            await slow.until(lambda: len(slow.bodies) >= 1)  # A's postbacks hang from now
            answer = await client.post("/ep/v1/", content=send(keys["b"], "2222", ["17746661000"]))
            assert "<status>Success</status>" in answer.text
            await fine.until(lambda: len(fine.bodies) >= 2)
            codes = [re.findall(rb"<code>(\w+)</code>", body)[0] for body in fine.bodies]
            assert codes == [b"N101", b"N102"]
            assert slow.given_up == 0  # every one of A's postbacks was still hanging
            assert slow.open >= 1
    finally:
        run.terminate()
        async with asyncio.timeout(DEADLINE):
            await run.wait()
        log.close()
