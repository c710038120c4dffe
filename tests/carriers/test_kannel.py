"""The Kannel SMS connector end to end: fallback SMS through a real Kannel (Debian's
bearerbox + smsbox) whose SMPP link goes to the simulated SMSC, with the receipts coming back
through Kannel's dlr-url to the gateway served on loopback; then the `/kannel/dlr` endpoint
on its own, in-process, with a fake Kannel in front of the connector. On SQLite and on
PostgreSQL, like the rest of the suite."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import time
import urllib.parse
import zlib
from collections.abc import AsyncIterator, Mapping

import httpx
import pytest
import sqlalchemy as sa
import uvicorn

from mmsgate import http_client, models
from mmsgate.api.app import build_services, create_app
from mmsgate.carriers.kannel import KannelConnector
from mmsgate.settings import Settings, SmsRoute
from mmsgate.sim.smsc import Smsc, Submitted
from mmsgate.sms_text import Concat
from mmsgate.store import accounts
from mmsgate.store.db import Database
from mmsgate.store.schema import jobs, sms_parts
from tests.api.test_send_mms import SEED
from tests.carriers import kannel_peer
from tests.conftest import Gateway, MediaServer
from tests.pipeline.test_deliver import FakeCarrier
from tests.pipeline.test_fallback import (
    REFUSED,
    FakeSms,
    deps_for,
    postbacks,
    run_all,
    send,
    state_and_codes,
    the_fallback,
)
from tests.ports import free_port

pytestmark = pytest.mark.anyio

SYSTEM_ID, SMPP_PASSWORD = "mmsgate", "kannelpw"  # SMPP 3.4 §5.2.2: 8 at most
DEADLINE_SECONDS = 20.0
LONG_TEXT = "Votre MMS est arrivé ✓ " * 8  # UCS-2, four parts with the link
FAKE_SENDSMS = "http://kannel.test/cgi-bin/sendsms"


LIVE_ROUTE = "kannel é"
ROUTES = {
    route.name: route
    for route in (
        SmsRoute(name="kannel", kind="kannel", url=FAKE_SENDSMS, password="sendsms-pw"),
        SmsRoute(name="other", kind="kannel", url=FAKE_SENDSMS, password="other-pw"),
        SmsRoute(name="sms é", kind="kannel", url=FAKE_SENDSMS, password="sendsms-pw"),
        # The real Kannel's sendsms password is new each run: this route sets its token.
        SmsRoute(name=LIVE_ROUTE, kind="kannel", dlr_token="live-route-dlr-token"),
    )
}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The suite's settings with this file's Kannel routes: /kannel/dlr checks their tokens."""
    return dataclasses.replace(settings, sms_routes=tuple(ROUTES.values()))


@pytest.fixture
async def smsc() -> AsyncIterator[Smsc]:
    sim = Smsc(SYSTEM_ID, SMPP_PASSWORD)
    await sim.start("127.0.0.1", 0)
    try:
        yield sim
    finally:
        await sim.stop()


@pytest.fixture
async def kannel(smsc: Smsc) -> AsyncIterator[kannel_peer.Kannel]:
    async with kannel_peer.running(
        smsc.port, system_id=SYSTEM_ID, smsc_password=SMPP_PASSWORD
    ) as running:
        yield running


async def test_kannel_starts_again_on_new_ports_when_one_is_taken(
    smsc: Smsc, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A port picked free but bound by someone else before bearerbox starts makes bearerbox
    PANIC; the test harness starts the pair again on new ports rather than fail the test."""
    picks: list[list[int]] = []
    pick = kannel_peer.free_ports

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        taken_port = taken.getsockname()[1]

        def first_one_taken(count: int) -> list[int]:
            ports = pick(count)
            if not picks:
                ports[1] = taken_port  # smsbox-port: bearerbox binds it after the admin port
            picks.append(ports)
            return ports

        monkeypatch.setattr(kannel_peer, "free_ports", first_one_taken)
        async with kannel_peer.running(
            smsc.port, system_id=SYSTEM_ID, smsc_password=SMPP_PASSWORD
        ) as kannel:
            assert len(picks) == 2
            assert f":{picks[1][0]}/" in kannel.status_url
            assert kannel.sendsms_url.startswith(f"http://127.0.0.1:{picks[1][2]}/")
            async with httpx.AsyncClient() as client:
                reply = await client.get(kannel.status_url)
            assert f"{kannel_peer.SMSC_ID}[" in reply.text


@pytest.fixture
async def live_gateway(settings: Settings) -> AsyncIterator[Gateway]:
    """The app served by uvicorn on a 127.0.0.1 port: Kannel fetches its dlr-urls from it."""
    db = Database(settings.db_url)
    await db.migrate()
    created = await accounts.create(db, "acme", senders=["28444"], service_ids=["32113"])
    assert created is not None
    services = build_services(settings, db)
    app = create_app(settings, services)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not server.started:
        assert not serving.done(), "uvicorn stopped during start-up"
        assert time.monotonic() < deadline, "uvicorn did not start"
        await asyncio.sleep(0.01)
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            yield Gateway(client, services, created.api_key, created.account)
    finally:
        server.should_exit = True
        await serving
        sock.close()


def kannel_route(kannel: kannel_peer.Kannel) -> SmsRoute:
    """A route to the running Kannel; its name percent-encodes to `%C3%A9`, which Kannel's
    dlr-url escapes (%C charset, %A reply) would mangle if the connector did not double `%`."""
    return dataclasses.replace(
        ROUTES[LIVE_ROUTE],
        url=kannel.sendsms_url,
        username=kannel.username,
        password=kannel.password,
        smsc=kannel.smsc_id,
        default=True,
    )


async def fall_back(
    gateway: Gateway,
    media_server: MediaServer,
    connector: KannelConnector,
    to: str = "12399471613",
    text: str = "Your MMS is here",
) -> str:
    """Accept a sendMMS to `to` with `text` as its fallback text; the MMSC refuses it (cannot
    receive MMS), so the worker sends the SMS through `connector`. Returns the tracking-id."""
    request = SEED.replace("<to>12399471613</to>", f"<to>{to}</to>")
    tracking_id = await send(gateway, media_server, request.replace("Your MMS is here", text))
    deps = dataclasses.replace(
        deps_for(gateway, FakeCarrier(REFUSED), FakeSms()),
        sms_routes=[connector.route],
        sms_connectors={connector.route.name: connector},
    )
    try:
        await run_all(deps)
    finally:
        await connector.close()
    return tracking_id


async def settled(
    gateway: Gateway, tracking_id: str, kannel: kannel_peer.Kannel
) -> tuple[str, list[str]]:
    """The recipient's state and postback codes once it reaches a final SMS state."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    while True:
        found = await state_and_codes(gateway, tracking_id)
        if found[0] in ("sms_delivered", "sms_failed"):
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"still {found}\n{kannel.logs()}")
        await asyncio.sleep(0.05)


def records(smsc: Smsc, number: str) -> list[Submitted]:
    return [s for s in smsc.submitted if s.recipient == number]


# --- through a real Kannel ----------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    "msg_id_type", [None, 1], ids=["ids-as-strings", "hex-submit-decimal-receipt"]
)
async def test_a_delivered_sms_is_n101_then_n202(
    live_gateway: Gateway, media_server: MediaServer, msg_id_type: int | None
) -> None:
    """Kannel submits the SMS over SMPP and relays the SMSC's DELIVRD receipt to the dlr-url:
    N101 (sent as SMS), then N202. The SMSC writes message ids as one string, or (Kannel's
    msg-id-type 1, set alike on both sides) hex in submit_sm_resp and decimal in receipts."""
    sim = Smsc(SYSTEM_ID, SMPP_PASSWORD, msg_id_type=msg_id_type)
    await sim.start("127.0.0.1", 0)
    try:
        async with kannel_peer.running(
            sim.port, system_id=SYSTEM_ID, smsc_password=SMPP_PASSWORD, msg_id_type=msg_id_type
        ) as kannel:
            connector = KannelConnector(kannel_route(kannel), str(live_gateway.client.base_url))
            tracking_id = await fall_back(live_gateway, media_server, connector)
            assert await settled(live_gateway, tracking_id, kannel) == (
                "sms_delivered",
                ["N101", "N202"],
            )
    finally:
        await sim.stop()
    [submitted] = records(sim, "12399471613")
    token = (await the_fallback(live_gateway, tracking_id)).token
    assert submitted.text == f"Your MMS is here https://mms.example/m/{token}"
    assert (submitted.coding, submitted.concat, submitted.sender) == ("gsm7", None, "28444")
    assert (submitted.dest_ton, submitted.dest_npi) == (1, 1)  # international, sent with '+'
    assert submitted.registered_delivery & 0x03 == 1  # dlr-mask 19: a receipt either way
    last = (await postbacks(live_gateway))[-1]
    assert "<status>Message Sent/Delivered</status>" in last
    assert "<sent-as>SMS</sent-as>" in last


@pytest.mark.slow
@pytest.mark.parametrize(
    ("number", "detail"),
    [
        ("12399470008", "SMS undeliverable (err 001)"),  # receipt UNDELIV: DLR type 2
        ("12399470003", "SMS expired (err 000)"),  # receipt EXPIRED: DLR type 34 (2 + 32)
        ("12399470002", "SMS rejected (err 0x0000000b)"),  # submit_sm refused: Kannel's type 16
    ],
    ids=["undeliverable", "expired", "refused-by-the-smsc"],
)
async def test_an_sms_that_fails_is_e202_naming_why(
    live_gateway: Gateway,
    media_server: MediaServer,
    smsc: Smsc,
    kannel: kannel_peer.Kannel,
    number: str,
    detail: str,
) -> None:
    """Kannel took the SMS (N101), then reports its failure through the dlr-url: the SMSC's
    UNDELIV or EXPIRED receipt, or its refusal of the submit (0x0B), which Kannel reports
    itself. The recipient ends in sms_failed, E202 saying why."""
    connector = KannelConnector(kannel_route(kannel), str(live_gateway.client.base_url))
    tracking_id = await fall_back(live_gateway, media_server, connector, number)
    assert await settled(live_gateway, tracking_id, kannel) == ("sms_failed", ["N101", "E202"])
    assert detail in (await postbacks(live_gateway))[-1]


@pytest.mark.slow
async def test_a_long_sms_goes_in_parts_and_n202_waits_for_every_receipt(
    live_gateway: Gateway, media_server: MediaServer, smsc: Smsc, kannel: kannel_peer.Kannel
) -> None:
    """A long UCS-2 text: each part reaches the SMSC as UCS-2 with its concatenation UDH
    (one reference, n of 4), the link whole in one part; N202 only once all four receipts
    came back through Kannel."""
    smsc.hold_receipts()
    connector = KannelConnector(kannel_route(kannel), str(live_gateway.client.base_url))
    number = "12399471613"
    tracking_id = await fall_back(live_gateway, media_server, connector, number, LONG_TEXT)
    await smsc.until(lambda: smsc.owed(SYSTEM_ID) == 4)
    assert await state_and_codes(live_gateway, tracking_id) == ("sms_submitted", ["N101"])
    smsc.hold_receipts(False)
    assert await settled(live_gateway, tracking_id, kannel) == (
        "sms_delivered",
        ["N101", "N202"],
    )
    found = await the_fallback(live_gateway, tracking_id)
    link = f"https://mms.example/m/{found.token}"
    parts = sorted(records(smsc, number), key=lambda s: s.concat.seq if s.concat else 0)
    ref = zlib.crc32(tracking_id.encode()) & 0xFF
    assert [s.concat for s in parts] == [Concat(ref, 4, seq) for seq in (1, 2, 3, 4)]
    assert {(s.coding, s.esm_class & 0x40) for s in parts} == {("ucs2", 0x40)}
    assert "".join(s.text for s in parts) == " ".join(LONG_TEXT.split()) + " " + link
    assert [link in s.text for s in parts] == [False, False, False, True]
    async with live_gateway.services.db.read() as conn:
        stats = list(await conn.execute(sa.select(sms_parts.c.seq, sms_parts.c.stat)))
    assert sorted(stats) == [(seq, "DELIVRD") for seq in (1, 2, 3, 4)]


@pytest.mark.slow
async def test_forged_receipts_are_refused_and_kannels_own_is_applied(
    live_gateway: Gateway, media_server: MediaServer, smsc: Smsc, kannel: kannel_peer.Kannel
) -> None:
    """While the SMSC holds the real receipt, receipts posted to the served /kannel/dlr
    without the token, with a wrong one or with another route's are refused and change
    nothing; the receipt Kannel then relays through the dlr-url we gave it ends in N202."""
    smsc.hold_receipts()
    connector = KannelConnector(kannel_route(kannel), str(live_gateway.client.base_url))
    tracking_id = await fall_back(live_gateway, media_server, connector)
    await smsc.until(lambda: smsc.owed(SYSTEM_ID) == 1)
    forged = {"route": LIVE_ROUTE, "id": f"{tracking_id}.1", "type": "2", "reply": "x"}
    for token, status in ((None, 401), ("guess", 403), (ROUTES["other"].receipt_token(), 403)):
        query = forged if token is None else {**forged, "token": token}
        assert (await live_gateway.client.get("/kannel/dlr", params=query)).status_code == status
    assert await state_and_codes(live_gateway, tracking_id) == ("sms_submitted", ["N101"])
    assert await part_stats(live_gateway, tracking_id) == [(1, None)]
    smsc.hold_receipts(False)
    assert await settled(live_gateway, tracking_id, kannel) == (
        "sms_delivered",
        ["N101", "N202"],
    )


@pytest.mark.slow
async def test_an_sms_queued_while_the_smsc_is_away_goes_when_it_is_back(
    live_gateway: Gateway, media_server: MediaServer
) -> None:
    """With its SMPP link down Kannel answers "3: Queued for later delivery": taken, N101;
    once the SMSC is back Kannel binds again, submits, and the receipt still ends in N202."""
    sim = Smsc(SYSTEM_ID, SMPP_PASSWORD)
    port = await sim.start("127.0.0.1", 0)
    back = Smsc(SYSTEM_ID, SMPP_PASSWORD)
    try:
        async with kannel_peer.running(
            port, system_id=SYSTEM_ID, smsc_password=SMPP_PASSWORD
        ) as kannel:
            await sim.stop()
            await kannel_peer.wait_link(kannel, online=False)
            client = Keeping()
            base = str(live_gateway.client.base_url)
            connector = KannelConnector(kannel_route(kannel), base, client)
            tracking_id = await fall_back(live_gateway, media_server, connector)
            assert client.replies == ["3: Queued for later delivery"]
            assert await state_and_codes(live_gateway, tracking_id) == ("sms_submitted", ["N101"])
            assert sim.submitted == []
            await back.start("127.0.0.1", port)
            assert await settled(live_gateway, tracking_id, kannel) == (
                "sms_delivered",
                ["N101", "N202"],
            )
    finally:
        await back.stop()
    assert [s.recipient for s in back.submitted] == ["12399471613"]


@pytest.mark.slow
async def test_wrong_kannel_credentials_keep_the_sms_for_a_retry(
    gateway: Gateway, media_server: MediaServer, kannel: kannel_peer.Kannel
) -> None:
    """A real Kannel refusing our sendsms password (403) fails nothing: the SMS job waits
    for another try, saying in words that Kannel refused our credentials."""
    route = dataclasses.replace(kannel_route(kannel), password="wrong")
    tracking_id = await fall_back(gateway, media_server, KannelConnector(route, "http://x"))
    assert await state_and_codes(gateway, tracking_id) == ("fallback", [])
    async with gateway.services.db.read() as conn:
        job = (
            await conn.execute(
                sa.select(jobs).where(jobs.c.kind == models.JobKind.FALLBACK_SMS.value)
            )
        ).one()
    assert job.state == "pending"
    assert "403 Kannel refused our credentials: Authorization failed" in job.last_error


async def test_kannel_unreachable_is_retried_not_failed(
    gateway: Gateway, media_server: MediaServer
) -> None:
    """Nothing listening at the sendsms URL: the SMS job is left to run again, the recipient
    stays on the fallback path, and the customer hears nothing yet."""
    route = dataclasses.replace(ROUTES["kannel"], url=f"http://127.0.0.1:{free_port()}/x")
    connector = KannelConnector(route, "http://127.0.0.1:1")
    tracking_id = await fall_back(gateway, media_server, connector)
    assert await state_and_codes(gateway, tracking_id) == ("fallback", [])
    async with gateway.services.db.read() as conn:
        job = (
            await conn.execute(
                sa.select(jobs).where(jobs.c.kind == models.JobKind.FALLBACK_SMS.value)
            )
        ).one()
    assert (job.state, job.attempts) == ("pending", 1)
    assert "ConnectError talking to Kannel" in job.last_error


# --- /kannel/dlr, in-process ---------------------------------------------------------------


class Keeping(http_client.HttpClient):
    """The real client, keeping the text of every answer."""

    def __init__(self) -> None:
        super().__init__()
        self.replies: list[str] = []

    async def request(
        self,
        method: str,
        url: str,
        body: bytes | None = b"",
        headers: Mapping[str, str] | None = None,
    ) -> http_client.Response:
        response = await super().request(method, url, body, headers)
        self.replies.append(response.body.decode())
        return response


class FakeKannel(http_client.HttpClient):
    """Kannel's sendsms, answering every request alike and keeping the URLs asked for."""

    def __init__(self, status: int = 202, text: str = "0: Accepted for delivery") -> None:
        super().__init__()
        self.status, self.text = status, text
        self.requests: list[str] = []

    def connector(self, route_name: str = "kannel") -> KannelConnector:
        return KannelConnector(ROUTES[route_name], "http://mmsgate.test", self)

    def params(self, n: int) -> dict[str, str]:
        """Request n's query, each value as its raw bytes in a latin-1 str (the UDH is
        bytes, the text UTF-8)."""
        query = urllib.parse.urlsplit(self.requests[n]).query
        return dict(urllib.parse.parse_qsl(query, encoding="latin-1", strict_parsing=True))

    async def request(
        self,
        method: str,
        url: str,
        body: bytes | None = b"",
        headers: Mapping[str, str] | None = None,
    ) -> http_client.Response:
        self.requests.append(url)
        return http_client.Response(self.status, {}, self.text.encode())


def signed(params: dict[str, str]) -> dict[str, str]:
    """The params with the token of their route, as the dlr-urls we hand Kannel carry it."""
    if "token" in params or params.get("route") not in ROUTES:
        return params
    return {**params, "token": ROUTES[params["route"]].receipt_token()}


async def dlr(gateway: Gateway, **params: str) -> httpx.Response:
    """GET /kannel/dlr with `params`, signed with their route's token unless one is given."""
    return await gateway.client.get("/kannel/dlr", params=signed(params))


async def test_each_part_is_one_sendsms_with_its_udh_coding_and_dlr_url(
    gateway: Gateway, media_server: MediaServer
) -> None:
    """Four UCS-2 parts → four sendsms requests: coding 2, the part's UDH as raw bytes, dlr
    mask 19, and a dlr-url naming the route and part, with our own `%` doubled so Kannel's
    escapes (%A, %C, ...) cannot touch it."""
    fake = FakeKannel()
    connector = fake.connector("sms é")
    tracking_id = await fall_back(gateway, media_server, connector, text=LONG_TEXT)
    sent = [fake.params(n) for n in range(len(fake.requests))]
    token = ROUTES["sms é"].receipt_token()
    ref = zlib.crc32(tracking_id.encode()) & 0xFF
    assert [p["udh"].encode("latin-1") for p in sent] == [
        bytes((5, 0, 3, ref, 4, seq)) for seq in (1, 2, 3, 4)
    ]
    assert {(p["coding"], p["charset"], p["dlr-mask"], p["to"], p["from"]) for p in sent} == {
        ("2", "UTF-8", "19", "+12399471613", "28444")
    }
    assert [p["dlr-url"] for p in sent] == [
        f"http://mmsgate.test/kannel/dlr?route=sms+%%C3%%A9&token={token}&id={tracking_id}.{seq}"
        "&type=%d&reply=%A"
        for seq in (1, 2, 3, 4)
    ]
    link = f"https://mms.example/m/{(await the_fallback(gateway, tracking_id)).token}"
    assert sent[-1]["text"].encode("latin-1").decode().endswith(link)


async def test_a_receipt_is_taken_once_and_only_when_final(
    gateway: Gateway, media_server: MediaServer
) -> None:
    """Types 4, 8 and 32 (queued, delivered to the SMSC, intermediate) change nothing; type 1
    gives N202; the same receipt again is answered OK and gives no second postback."""
    tracking_id = await fall_back(gateway, media_server, FakeKannel().connector())
    part = f"{tracking_id}.1"
    for kind in ("4", "8", "32"):
        response = await dlr(gateway, route="kannel", id=part, type=kind, reply="ACK/")
        assert response.status_code == 200
    assert await state_and_codes(gateway, tracking_id) == ("sms_submitted", ["N101"])
    for _ in range(2):
        response = await dlr(gateway, route="kannel", id=part, type="1", reply="stat:DELIVRD")
        assert response.status_code == 200
    assert await state_and_codes(gateway, tracking_id) == ("sms_delivered", ["N101", "N202"])


async def test_n202_waits_for_the_last_part(gateway: Gateway, media_server: MediaServer) -> None:
    """Receipts for three of four parts leave the SMS submitted; the fourth (sent as a POST
    form, which Kannel's dlr-url can also be) ends it in N202."""
    connector = FakeKannel().connector()
    tracking_id = await fall_back(gateway, media_server, connector, text=LONG_TEXT)
    for seq in (2, 1, 4):
        response = await dlr(gateway, route="kannel", id=f"{tracking_id}.{seq}", type="1")
        assert response.status_code == 200
    assert await state_and_codes(gateway, tracking_id) == ("sms_submitted", ["N101"])
    form = signed({"route": "kannel", "id": f"{tracking_id}.3", "type": "1"})
    assert (await gateway.client.post("/kannel/dlr", data=form)).status_code == 200
    assert await state_and_codes(gateway, tracking_id) == ("sms_delivered", ["N101", "N202"])


@pytest.mark.parametrize(
    ("kind", "reply", "detail"),
    [
        ("2", "id:1 sub:001 dlvrd:000 stat:EXPIRED err:000 text:x", "SMS expired (err 000)"),
        ("2", "", "SMS undeliverable"),
        ("2", "id:1 stat:DELIVRD err:000", "SMS undeliverable (err 000)"),
        ("34", "id:1 sub:001 dlvrd:000 stat:EXPIRED err:000 text:x", "SMS expired (err 000)"),
        ("16", "NACK/0x0000000b/Invalid Destination Address", "SMS rejected (err 0x0000000b)"),
    ],
)
async def test_a_failed_receipt_names_why(
    gateway: Gateway, media_server: MediaServer, kind: str, reply: str, detail: str
) -> None:
    """Type 2 (alone or with bit 32, as Kannel reports EXPIRED) takes the SMSC's failure
    `stat:` from the reply (never a DELIVRD: the type says not delivered), else UNDELIV;
    type 16 (the SMSC refused the submit) is REJECTD with the SMPP status."""
    tracking_id = await fall_back(gateway, media_server, FakeKannel().connector())
    response = await dlr(gateway, route="kannel", id=f"{tracking_id}.1", type=kind, reply=reply)
    assert response.status_code == 200
    assert await state_and_codes(gateway, tracking_id) == ("sms_failed", ["N101", "E202"])
    assert detail in (await postbacks(gateway))[-1]


@pytest.mark.parametrize(
    "params",
    [
        {"route": "kannel", "type": "1"},
        {"route": "kannel", "id": "x.1"},
        {"route": "kannel", "id": "x.1", "type": "%d"},
        {"route": "kannel", "id": "x.1", "type": "²"},
    ],
    ids=["no-id", "no-type", "type-not-expanded", "type-not-ascii"],
)
async def test_a_malformed_receipt_is_400(gateway: Gateway, params: dict[str, str]) -> None:
    """With the route's token, an id and a numeric type are required."""
    assert (await dlr(gateway, **params)).status_code == 400


async def test_a_receipt_naming_no_route_is_refused(gateway: Gateway) -> None:
    """Without a route no token can be right: 401 without one, 403 with any."""
    response = await dlr(gateway, id="x.1", type="1", token="anything")
    assert response.status_code == 403
    assert (await dlr(gateway, id="x.1", type="1")).status_code == 401


async def test_a_receipt_for_no_known_part_is_404(
    gateway: Gateway, media_server: MediaServer
) -> None:
    """An id we never sent, or ours under another route's name, is refused with 404 and
    changes nothing."""
    tracking_id = await fall_back(gateway, media_server, FakeKannel().connector())
    assert (await dlr(gateway, route="kannel", id="nope.1", type="1")).status_code == 404
    wrong = await dlr(gateway, route="other", id=f"{tracking_id}.1", type="1")
    assert wrong.status_code == 404
    assert await state_and_codes(gateway, tracking_id) == ("sms_submitted", ["N101"])


async def part_stats(gateway: Gateway, tracking_id: str) -> list[tuple[int, str | None]]:
    async with gateway.services.db.read() as conn:
        query = sa.select(sms_parts.c.seq, sms_parts.c.stat).where(
            sms_parts.c.tracking_id == tracking_id
        )
        return sorted((r.seq, r.stat) for r in await conn.execute(query))


@pytest.mark.parametrize(
    ("token", "status"),
    [
        (None, 401),
        ("", 401),
        ("0" * 32, 403),
        ("a-much-longer-guess-than-the-real-token", 403),
        ("café", 403),
        (ROUTES["other"].receipt_token(), 403),
    ],
    ids=["no-token", "empty-token", "wrong-token", "wrong-length", "not-ascii", "other-route"],
)
async def test_a_receipt_without_its_routes_token_is_refused(
    gateway: Gateway, media_server: MediaServer, token: str | None, status: int
) -> None:
    """No token is 401, a wrong one or another route's is 403, and neither moves the part or
    the recipient; the same receipt with the route's own token is then applied."""
    tracking_id = await fall_back(gateway, media_server, FakeKannel().connector())
    forged = {"route": "kannel", "id": f"{tracking_id}.1", "type": "2", "reply": "stat:UNDELIV"}
    query = forged if token is None else {**forged, "token": token}
    response = await gateway.client.get("/kannel/dlr", params=query)
    assert response.status_code == status
    assert "token" in response.text
    posted = await gateway.client.post("/kannel/dlr", data=query)
    assert posted.status_code == status
    assert await state_and_codes(gateway, tracking_id) == ("sms_submitted", ["N101"])
    assert await part_stats(gateway, tracking_id) == [(1, None)]
    assert (await dlr(gateway, **{**forged, "type": "1"})).status_code == 200
    assert await state_and_codes(gateway, tracking_id) == ("sms_delivered", ["N101", "N202"])


async def test_a_routes_token_does_not_reach_another_routes_parts(
    gateway: Gateway, media_server: MediaServer
) -> None:
    """A receipt signed for route "other" naming a part sent over route "kannel" finds
    nothing (404) and changes nothing."""
    tracking_id = await fall_back(gateway, media_server, FakeKannel().connector())
    token = ROUTES["other"].receipt_token()
    for route in ("other", "kannel"):
        params = {"route": route, "token": token, "id": f"{tracking_id}.1", "type": "2"}
        assert (await dlr(gateway, **params)).status_code == (404 if route == "other" else 403)
    assert await state_and_codes(gateway, tracking_id) == ("sms_submitted", ["N101"])
    assert await part_stats(gateway, tracking_id) == [(1, None)]


async def test_a_refusing_kannel_is_e202_and_a_busy_one_is_retried(
    gateway: Gateway, media_server: MediaServer
) -> None:
    """400 (a request Kannel refuses) ends the SMS in E202 with no N101; 503 leaves the job
    for another try."""
    refused = FakeKannel(400, "Invalid content")
    first = await fall_back(gateway, media_server, refused.connector())
    assert await state_and_codes(gateway, first) == ("sms_failed", ["E202"])
    assert "Invalid content" in (await postbacks(gateway))[-1]
    async with gateway.services.db.write() as conn:
        await conn.execute(jobs.delete())
    busy = FakeKannel(503, "Temporal failure, try again later.")
    second = await fall_back(gateway, media_server, busy.connector(), "12399471614")
    assert await state_and_codes(gateway, second) == ("fallback", [])
