"""Delivery end to end: `mmsgate run` (API, worker, built-in simulated MMSC) takes the seed
example to every scripted number; each number's postbacks arrive once per state, in order."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import re
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import httpx
import pytest

from tests import samples
from tests.api.test_send_mms import SEED
from tests.conftest import MediaServer
from tests.e2e.test_new_user import read_key, start_run, wait_up
from tests.pipeline.test_postbacks import Receiver, receiver  # noqa: F401 - fixture
from tests.ports import free_port

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

# What the simulator does for each ending (README table) → the postbacks the customer gets.
EXPECTED = {
    "0100": ["N101", "N102"],  # delivered
    "0002": ["E101"],  # address error at submit
    "0003": ["N101", "N103"],  # expired at the carrier
    "0004": ["N101", "N102"],  # Retrieved, Forwarded, Retrieved: one N102
    "0005": ["N101", "N202"],  # cannot receive MMS: the SMS with a link, delivered
    "0008": ["N101", "E202"],  # cannot receive MMS, and the SMS fails
    "0006": ["N101"],  # accepted, never reported
    "0007": ["N101", "N102"],  # HTTP 500 twice, then accepted
    "0009": ["N101", "E102"],  # rejected
}
FINAL_STATE = {
    "0100": "delivered",
    "0002": "failed",
    "0003": "expired",
    "0004": "delivered",
    "0005": "sms_delivered",
    "0008": "sms_failed",
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
    order = {"from": "17745550123", "to": "28444", "text": "Look! Café ☀", "image": True}
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
    text_part = await client.get(files[1])
    assert text_part.content == "Look! Café ☀".encode()
    assert text_part.headers["content-type"] == "text/plain; charset=utf-8"
    receiver.received[:] = [r for r in receiver.received if b"N401" not in r[1]]


async def hosted_page(
    client: httpx.AsyncClient,
    key: str,
    tracking_id: str,
    receiver: Receiver,  # noqa: F811
) -> None:
    """The fallback SMS went with the link; the link serves a page with every slide, and
    opening it shows on the status API."""
    n101 = next(
        body.decode()
        for _, body in receiver.received
        if b"<to>17745550005</to>" in body and b"<code>N101</code>" in body
    )
    assert "<sent-as>SMS</sent-as>" in n101
    assert "3001" in n101  # the reason, in status-details
    status = (await client.get(f"/v1/messages/{tracking_id}", headers={"x-api-key": key})).json()
    assert status["sent-as"] == "SMS"
    link = status["fallback"]["link"]
    assert status["fallback"]["sms_text"] == f"Your MMS is here {link}"
    page = await client.get(link)
    assert page.status_code == 200
    assert page.text.index("Here is some text") < page.text.index("Invitation")
    media = re.findall(r'(?:src|href)="\.\./media/([^"]+)"', page.text)
    assert len(media) >= 3, page.text  # image, audio, iCal
    for path in media:
        assert (await client.get(f"/media/{path}")).status_code == 200
    status = (await client.get(f"/v1/messages/{tracking_id}", headers={"x-api-key": key})).json()
    assert status["fallback"]["opened_at"] is not None


@contextlib.asynccontextmanager
async def demo_run(
    tmp_path: Path,
    media_server: MediaServer,
    receiver: Receiver,  # noqa: F811
) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    """`mmsgate run` in a fresh folder, the demo account posting back to `receiver`, the
    seed's media served: yields a client for it and the demo key."""
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
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            await wait_up(client)
            await asyncio.sleep(1.5)  # the account cache (1 s) picks up the postback URL
            yield client, key
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        out.close()
        log.close()


async def test_every_scripted_outcome_reaches_the_customer_once_per_state(
    tmp_path: Path,
    media_server: MediaServer,
    receiver: Receiver,  # noqa: F811
) -> None:
    """One send to nine scripted numbers: N101 then N102 for delivered ones, E101 for an
    address error, N103 for expiry, E102 for rejection, the SMS fallback (N101 sent-as SMS,
    then N202 or E202) where MMS cannot go, retries through HTTP 500, no second N102 for
    duplicate or out-of-order reports; states match on the status API, and the fallback's
    link serves the hosted page."""
    async with demo_run(tmp_path, media_server, receiver) as (client, key):
        numbers = [f"1774555{ending}" for ending in EXPECTED]
        seed = SEED.format(key=key, base=media_server.base).replace(
            "<to>12399471613</to>", f"<to>{','.join(numbers)}</to>"
        )
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
        await hosted_page(client, key, tracking["17745550005"], receiver)
        await mobile_originated(client, tmp_path / "server.log", receiver)
        headers, body = receiver.received[0]
        assert headers["x-mmsgate-signature"].startswith("v1=")
        assert b"<origin>MMS_MT</origin>" in body


async def test_the_fallback_link_expires(
    tmp_path: Path,
    media_server: MediaServer,
    receiver: Receiver,  # noqa: F811
) -> None:
    """A new user's send to a number without MMS gets N101 (sent-as SMS) then N202; the
    link shows the page until fallback-sms-link-expiration, then 410 for it and its media."""
    async with demo_run(tmp_path, media_server, receiver) as (client, key):
        expires = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=8)
        seed = SEED.format(key=key, base=media_server.base).replace(
            "<to>12399471613</to>",
            "<to>17745550005</to><fallback-sms-link-expiration>"
            f"{expires.isoformat(timespec='seconds')}</fallback-sms-link-expiration>",
        )
        response = await client.post("/ep/v1/", content=seed)
        tracking_id = response.text.split("<tracking-id>")[1].split("<")[0]
        deadline = time.monotonic() + 30
        while codes_by_number(receiver.received).get("0005") != ["N101", "N202"]:
            assert time.monotonic() < deadline, codes_by_number(receiver.received)
            await asyncio.sleep(0.05)
        status = await client.get(f"/v1/messages/{tracking_id}", headers={"x-api-key": key})
        link = status.json()["fallback"]["link"]
        page = await client.get(link)
        assert page.status_code == 200
        token = link.rsplit("/", 1)[1]
        assert (await client.get(f"/media/{token}/1")).status_code == 200
        left = (expires - dt.datetime.now(dt.UTC)).total_seconds()
        await asyncio.sleep(max(0.0, left) + 1.0)  # the link's own deadline, then past it
        gone = await client.get(link)
        assert gone.status_code == 410
        assert "expired" in gone.text
        media = await client.get(f"/media/{token}/1")
        assert media.status_code == 410
        assert not media.content.startswith(b"\xff\xd8")
