"""JSON postbacks end to end: `mmsgate run` with its simulated MMSC and SMSC, the demo
account switched to JSON by `mmsgate accounts update --postback-format json`, a second
account left on XML. The seed example with a client-reference gets N101 and N102 as signed
JSON naming it, the fallback SMS's N101 and N202 too; saveMMS's N003 and an MO's N401 come
as JSON; the XML account's postbacks carry `<client-reference>`."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from tests import samples
from tests.api.test_send_mms import SEED
from tests.conftest import MediaServer
from tests.e2e.startup import env, mmsgate
from tests.e2e.test_new_user import read_key, wait_up
from tests.pipeline.test_postbacks import Receiver, receiver
from tests.ports import free_port

pytestmark = [pytest.mark.anyio, pytest.mark.slow]
__all__ = ["receiver"]  # the fixture, for these tests
DELIVERED, NO_MMS = "17745550100", "17745550005"  # the simulator's scripted endings
Received = list[tuple[dict[str, str], bytes]]


def signed(secret: str, headers: dict[str, str], raw: bytes) -> bool:
    """A customer's check: HMAC-SHA256 of the timestamp header, ".", the raw body."""
    message = headers["x-mmsgate-timestamp"].encode() + b"." + raw
    expected = "v1=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, headers["x-mmsgate-signature"])


def json_bodies(received: Received, secret: str) -> list[dict[str, Any]]:
    """The JSON postbacks received so far, each checked for its type and signature."""
    found = []
    for headers, raw in list(received):
        if headers["content-type"] == "application/json":
            assert signed(secret, headers, raw), raw
            found.append(json.loads(raw))
    return found


async def until(what: str, check: Any) -> Any:
    """Poll `check()` until it gives something truthy, or fail naming `what` after 60 s."""
    deadline = time.monotonic() + 60
    while not (found := check()):
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)
    return found


def cli(cwd: Path, *args: str) -> str:
    result = mmsgate(*args, cwd=cwd, environment=env(MMSGATE_ALLOW_PRIVATE_NETWORKS="1"))
    assert result.returncode == 0, result.stderr
    return result.stdout


@contextlib.asynccontextmanager
async def running(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    """`mmsgate run` in a fresh folder: a client for it and the demo key."""
    port = free_port()
    out, log = (tmp_path / "stdout.txt").open("w"), (tmp_path / "server.log").open("w")
    proc = subprocess.Popen(  # noqa: ASYNC220 - started once, waited for below
        [sys.executable, "-m", "mmsgate", "run", "--port", str(port)],
        cwd=tmp_path,
        env=env(MMSGATE_ALLOW_PRIVATE_NETWORKS="1"),
        stdout=out,
        stderr=log,
        text=True,
    )
    try:
        key = read_key(tmp_path / "stdout.txt")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            await wait_up(client)
            yield client, key
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        out.close()
        log.close()


def seed(key: str, base: str, sender: str, reference: str) -> str:
    """The seed example to the two scripted numbers, from `sender`, with a reference."""
    return (
        SEED.format(key=key, base=base)
        .replace("<to>12399471613</to>", f"<to>{DELIVERED},{NO_MMS}</to>")
        .replace("<from>28444</from>", f"<from>{sender}</from>")
        .replace("<name>", f"<client-reference>{reference}</client-reference><name>")
    )


async def test_json_and_xml_accounts_get_their_postbacks_with_the_client_reference(
    tmp_path: Path, media_server: MediaServer, receiver: Receiver
) -> None:
    """The JSON account's sends, saves and MO come as signed JSON naming its reference;
    the XML account's as XML with `<client-reference>`."""
    for path, kind, data in (
        ("/images/1.jpg", "image/jpeg", samples.jpeg()),
        ("/audio/1.mp3", "audio/mpeg", samples.mp3()),
        ("/cal/2.ics", "text/calendar", samples.ICAL),
    ):
        media_server.add(path, kind, data)
    async with running(tmp_path) as (client, key):
        hook = ("--postback-url", receiver.url)
        cli(tmp_path, "accounts", "update", "demo", *hook, "--postback-format", "json")
        demo = json.loads(cli(tmp_path, "accounts", "show", "demo", "--json"))
        other = json.loads(
            cli(tmp_path, "accounts", "create", "shop", "--sender", "28445", *hook, "--json")
        )
        assert other["postback_format"] == "xml"
        await json_send(client, seed(key, media_server.base, "28444", "order-42"), demo, receiver)
        await json_save_and_mo(client, key, tmp_path / "server.log", demo, receiver)
        await xml_send(client, seed(other["api_key"], media_server.base, "28445", "x-1"), receiver)


async def json_send(
    client: httpx.AsyncClient, body: str, account: dict[str, Any], receiver: Receiver
) -> None:
    """N101 and N102 for the delivered number, N101 (sent-as SMS) and N202 for the one
    without MMS: JSON, signed, naming the client-reference and the tracking-ids answered."""
    answer = await client.post("/ep/v1/", content=body)
    tracking = dict(re.findall(r"<to>(\d+)</to>\s*<tracking-id>([^<]+)</tracking-id>", answer.text))
    assert sorted(tracking) == sorted([DELIVERED, NO_MMS]), answer.text
    secret = account["postback_secret"]

    def mt() -> list[dict[str, Any]]:
        return [b for b in json_bodies(receiver.received, secret) if b["origin"] == "MMS_MT"]

    await until("four MT postbacks", lambda: len(mt()) >= 4)
    got = {(b["to"], b["code"]): b for b in mt()}
    assert len(mt()) == len(got)  # one postback per state
    assert sorted(got) == sorted([(DELIVERED, "N101"), (DELIVERED, "N102"), (NO_MMS, "N101"),
                                  (NO_MMS, "N202")])  # fmt: skip
    for (to, code), postback in got.items():
        assert postback["client-reference"] == "order-42"
        assert postback["tracking-id"] == tracking[to]
        assert (postback["from"], postback["operator-id"]) == ("28444", "31062")
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00", postback["timestamp"])
        assert postback["mms-id"].isdigit()
        assert postback["sent-as"] == ("MMS" if to == DELIVERED else "SMS"), (to, code)
    statuses = {key: b["status"] for key, b in got.items()}
    assert statuses == {(DELIVERED, "N101"): "Sent", (DELIVERED, "N102"): "Delivered",
                        (NO_MMS, "N101"): "Sent", (NO_MMS, "N202"): "Delivered"}  # fmt: skip
    assert "handset" in got[(DELIVERED, "N102")]
    receiver.received.clear()


async def json_save_and_mo(
    client: httpx.AsyncClient,
    key: str,
    log: Path,
    account: dict[str, Any],
    receiver: Receiver,
) -> None:
    """saveMMS with a client-reference gets N003 as JSON naming it; a handset's MMS to the
    demo number gets N401 as JSON listing its content URLs, which serve the parts."""
    save = (
        f"<request><action>saveMMS</action><api-key>{key}</api-key><name>t</name>"
        "<client-reference>tpl-1</client-reference>"
        "<slide><message-text>hi</message-text></slide></request>"
    )
    mms_id = (await client.post("/ep/v1/", content=save)).text.split("<mms-id>")[1].split("<")[0]
    secret = account["postback_secret"]
    [n003] = await until("N003", lambda: json_bodies(receiver.received, secret))
    assert n003 == {
        "origin": "MMS_MT",
        "code": "N003",
        "mms-id": mms_id,
        "client-reference": "tpl-1",
    }
    receiver.received.clear()
    found = re.search(
        r"simulated MMSC on http://127.0.0.1:(\d+)/mm7", await anyio.Path(log).read_text()
    )
    assert found is not None
    order = {"from": "17745550123", "to": "28444", "text": "Look! Café ☀", "image": True}
    sent = await client.post(f"http://127.0.0.1:{found.group(1)}/mo", json=order)
    assert sent.json()["status"] == 1000, sent.text
    [n401] = await until("N401", lambda: json_bodies(receiver.received, secret))
    assert (n401["origin"], n401["code"], n401["from"], n401["to"]) == (
        "MMS_MO", "N401", "17745550123", "28444",
    )  # fmt: skip
    assert n401["tracking-id"].startswith("MMS_MO_")
    assert [set(part) for part in n401["content"]] == [{"file"}, {"file"}]
    text = await client.get(n401["content"][1]["file"])
    assert text.content == "Look! Café ☀".encode()
    receiver.received.clear()


async def xml_send(client: httpx.AsyncClient, body: str, receiver: Receiver) -> None:
    """The XML account's four postbacks are XML, each with `<client-reference>` after
    `<tracking-id>`."""
    answer = await client.post("/ep/v1/", content=body)
    assert answer.text.count("<tracking-id>") == 2, answer.text
    await until("four XML postbacks", lambda: len(receiver.received) >= 4)
    for headers, raw in receiver.received:
        assert headers["content-type"] == "application/xml"
        text = raw.decode()
        assert re.search(
            r"<tracking-id>[^<]+</tracking-id>\n\s*<client-reference>x-1</client-reference>", text
        ), text
