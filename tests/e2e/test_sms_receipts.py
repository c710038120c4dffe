"""SMS receipts across restarts: two `mmsgate run` lifetimes on one data dir, whose
simulated SMSC starts its message ids from the same number each time, each deliver the
fallback SMS of a send to a number without MMS, with its N202."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.startup import env, mmsgate
from tests.e2e.test_new_user import wait_up
from tests.pipeline.test_postbacks import Receiver, receiver  # noqa: F401 - fixture
from tests.ports import free_port

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

NO_MMS = "17745550005"  # the simulator: cannot receive MMS, the fallback SMS is delivered
SEND = """<request><action>sendMMS</action><api-key>{key}</api-key><to>{to}</to>
<from>28444</from><service-id>32113</service-id><name>Hello</name>
<fallback-sms-text>Your MMS is here</fallback-sms-text>
<slide><message-text>{text}</message-text></slide></request>"""


@contextlib.asynccontextmanager
async def lifetime(data_dir: Path, log: Path) -> AsyncIterator[httpx.AsyncClient]:
    """One `mmsgate run --data-dir DATA_DIR` until the block ends, then SIGTERM and its
    exit awaited; yields a client for its API."""
    port = free_port()
    environment = env(MMSGATE_ALLOW_PRIVATE_NETWORKS="1")  # postbacks go to loopback
    command = [sys.executable, "-m", "mmsgate", "run", "--data-dir", str(data_dir)]
    with log.open("a") as err:
        proc = subprocess.Popen(  # noqa: ASYNC220 - started once, waited for below
            [*command, "--port", str(port)],
            cwd=data_dir.parent,
            env=environment,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
                await wait_up(client)
                yield client
        finally:
            proc.terminate()
            proc.wait(timeout=60)


def codes_of(received: list[tuple[dict[str, str], bytes]], tracking_id: str) -> list[str]:
    """The postback codes for one tracking id, in the order they arrived."""
    bodies = [body.decode() for _, body in received]
    return [
        re.findall(r"<code>(\w+)</code>", body)[0]
        for body in bodies
        if f"<tracking-id>{tracking_id}</tracking-id>" in body
    ]


async def send_and_deliver(
    client: httpx.AsyncClient,
    key: str,
    received: list[tuple[dict[str, str], bytes]],
    text: str,
) -> str:
    """Send to the number without MMS; wait (60 s at most) for its N202 postback and its
    `sms_delivered` state; return its tracking id."""
    response = await client.post("/ep/v1/", content=SEND.format(key=key, to=NO_MMS, text=text))
    assert "<status>Success</status>" in response.text, response.text
    tracking_id = response.text.split("<tracking-id>")[1].split("<")[0]
    deadline = time.monotonic() + 60
    status: dict[str, object] = {}
    while codes_of(received, tracking_id) != ["N101", "N202"] or status.get("state") != (
        "sms_delivered"
    ):
        assert time.monotonic() < deadline, (codes_of(received, tracking_id), status)
        await asyncio.sleep(0.1)
        answer = await client.get(f"/v1/messages/{tracking_id}", headers={"x-api-key": key})
        status = answer.json()
    return tracking_id


async def test_a_restart_reusing_smsc_ids_still_delivers_the_new_sms(
    tmp_path: Path,
    receiver: Receiver,  # noqa: F811
) -> None:
    """After a restart the simulated SMSC gives the new SMS the id of the old one; its
    receipt goes to the new SMS, which ends `sms_delivered` with N202, and the old one
    keeps its own state and postbacks."""
    data_dir, log = tmp_path / "data", tmp_path / "server.log"
    created = mmsgate(
        *("accounts", "create", "shop", "--sender", "28444", "--service-id", "32113"),
        *("--postback-url", receiver.url, "--json", "--data-dir", str(data_dir)),
        cwd=tmp_path,
        environment=env(MMSGATE_ALLOW_PRIVATE_NETWORKS="1"),
    )
    assert created.returncode == 0, created.stderr
    key = json.loads(created.stdout)["api_key"]
    async with lifetime(data_dir, log) as client:
        first = await send_and_deliver(client, key, receiver.received, "first lifetime")
    async with lifetime(data_dir, log) as client:
        second = await send_and_deliver(client, key, receiver.received, "second lifetime")
        old = await client.get(f"/v1/messages/{first}", headers={"x-api-key": key})
        assert old.json()["state"] == "sms_delivered"
    assert codes_of(receiver.received, first) == ["N101", "N202"]
    assert codes_of(receiver.received, second) == ["N101", "N202"]
    with contextlib.closing(sqlite3.connect(data_dir / "mmsgate.db")) as db:
        query = "SELECT tracking_id, smsc_message_id, stat FROM sms_parts ORDER BY id"
        parts = db.execute(query).fetchall()
    assert [(t, stat) for t, _, stat in parts] == [(first, "DELIVRD"), (second, "DELIVRD")]
    assert parts[0][1] == parts[1][1]  # the restarted SMSC gave the new SMS the old id
