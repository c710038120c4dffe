"""Delivery end to end: `mmsgate run` (API, worker, built-in simulated MMSC) takes the seed
example to every scripted number; each number's postbacks arrive once per state, in order."""

from __future__ import annotations

import asyncio
import os
import re
import sys
import time
from pathlib import Path

import anyio
import httpx
import pytest

from tests import samples
from tests.api.test_send_mms import SEED
from tests.conftest import MediaServer
from tests.e2e.test_kill9 import free_port
from tests.e2e.test_new_user import read_key, start_run, wait_up
from tests.pipeline.test_postbacks import Receiver, receiver  # noqa: F401 - fixture

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

# What the simulator does for each ending (README table) → the postbacks the customer gets.
EXPECTED = {
    "0100": ["N101", "N102"],  # delivered
    "0002": ["E101"],  # address error at submit
    "0003": ["N101", "N103"],  # expired at the carrier
    "0004": ["N101", "N102"],  # Retrieved, Forwarded, Retrieved: one N102
    "0005": ["E102"],  # cannot receive MMS (the SMS fallback takes this over)
    "0006": ["N101"],  # accepted, never reported
    "0007": ["N101", "N102"],  # HTTP 500 twice, then accepted
    "0009": ["N101", "E102"],  # rejected
}
FINAL_STATE = {
    "0100": "delivered",
    "0002": "failed",
    "0003": "expired",
    "0004": "delivered",
    "0005": "rejected",
    "0006": "submitted",
    "0007": "delivered",
    "0009": "rejected",
}


def codes_by_number(received: list[tuple[dict[str, str], bytes]]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for _headers, body in received:
        text = body.decode()
        to = re.search(r"<to>(\d+)</to>", text)
        code = re.search(r"<code>(\w+)</code>", text)
        assert to is not None
        assert code is not None
        found.setdefault(to.group(1)[-4:], []).append(code.group(1))
    return found


async def mobile_originated(
    client: httpx.AsyncClient,
    log: Path,
    receiver: Receiver,  # noqa: F811
) -> None:
    """The simulator sends a handset's MMS (photo + text) to the demo number: N401 arrives
    with content URLs, and they serve the photo."""
    text = await anyio.Path(log).read_text()
    found = re.search(r"simulated MMSC on http://127.0.0.1:(\d+)/mm7", text)
    assert found is not None, text
    mo = f"http://127.0.0.1:{found.group(1)}/mo"
    order = {"from": "17745550123", "to": "28444", "text": "Look!", "image": True}
    answer = await client.post(mo, json=order)
    assert answer.json()["status"] == 1000, answer.text
    deadline = time.monotonic() + 30
    while not any(b"<code>N401</code>" in body for _, body in receiver.received):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    body = next(body for _, body in receiver.received if b"<code>N401</code>" in body)
    files = re.findall(r"<file>([^<]+)</file>", body.decode())
    photo = await client.get(files[0])
    assert photo.status_code == 200
    assert photo.headers["content-type"] == "image/jpeg"
    assert photo.content.startswith(b"\xff\xd8")
    assert (await client.get(files[1])).content == b"Look!"
    receiver.received[:] = [r for r in receiver.received if b"N401" not in r[1]]


async def test_every_scripted_outcome_reaches_the_customer_once_per_state(
    tmp_path: Path,
    media_server: MediaServer,
    receiver: Receiver,  # noqa: F811
) -> None:
    """One send to eight scripted numbers: N101 then N102 for delivered ones, E101 for an
    address error, N103 for expiry, E102 for rejection or no MMS, retries through HTTP 500,
    no second N102 for duplicate or out-of-order reports; states match on the status API."""
    media_server.add("/images/1.jpg", "image/jpeg", samples.jpeg())
    media_server.add("/audio/1.mp3", "audio/mpeg", samples.mp3())
    media_server.add("/cal/2.ics", "text/calendar", samples.ICAL)
    port = free_port()
    out, log = (tmp_path / "stdout.txt").open("w"), (tmp_path / "server.log").open("w")
    proc = start_run(tmp_path, port, out, log)
    try:
        key = read_key(tmp_path / "stdout.txt")
        env = {k: v for k, v in os.environ.items() if not k.startswith("MMSGATE_")}
        env["MMSGATE_ALLOW_PRIVATE_NETWORKS"] = "1"
        await anyio.run_process(
            [sys.executable, "-m", "mmsgate", "accounts", "update", "demo", "--postback-url",
             receiver.url],
            cwd=tmp_path, env=env,
        )  # fmt: skip
        numbers = [f"1774555{ending}" for ending in EXPECTED]
        seed = SEED.format(key=key, base=media_server.base).replace(
            "<to>12399471613</to>", f"<to>{','.join(numbers)}</to>"
        )
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            await wait_up(client)
            await asyncio.sleep(1.5)  # the account cache (1 s) picks up the postback URL
            response = await client.post("/ep/v1/", content=seed)
            assert response.text.count("<tracking-id>") == len(numbers), response.text
            tracking = {
                to: tracking_id
                for block in response.text.split("<sending>")[1:]
                for to, tracking_id in re.findall(
                    r"<to>(\d+)</to>.*?<tracking-id>([^<]+)</tracking-id>", block, re.S
                )
            }
            assert sorted(tracking) == sorted(numbers)
            deadline = time.monotonic() + 60
            while codes_by_number(receiver.received) != EXPECTED:
                assert time.monotonic() < deadline, codes_by_number(receiver.received)
                await asyncio.sleep(0.1)
            await asyncio.sleep(1.0)  # a late duplicate would arrive now
            assert codes_by_number(receiver.received) == EXPECTED
            for number, tracking_id in tracking.items():
                status = await client.get(f"/v1/messages/{tracking_id}", headers={"x-api-key": key})
                assert status.json()["state"] == FINAL_STATE[number[-4:]], number
            await mobile_originated(client, tmp_path / "server.log", receiver)
        headers, body = receiver.received[0]
        assert headers["x-mmsgate-signature"].startswith("v1=")
        assert b"<origin>MMS_MT</origin>" in body
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        out.close()
        log.close()
