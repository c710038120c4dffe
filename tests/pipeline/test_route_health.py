"""Faults of the route itself against an MM7 peer on loopback: an MMSC refusing our
credentials (HTTP 401, 403) or not listening keeps the messages queued and retried with
backoff, marks the route unhealthy (in the database, for `/readyz` and `/metrics` of any
process; logged once), until a submit is accepted again. Also the recipient's number
format per route, as the MMSC receives it."""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import sqlalchemy as sa
import structlog.testing

from mmsgate import errors, models, settings
from mmsgate import mm7_codec as mm7
from mmsgate.carriers.base import SmsResult, SubmitResult
from mmsgate.carriers.mm7 import Mm7Carrier
from mmsgate.pipeline import deliver
from mmsgate.pipeline.deps import Deps
from mmsgate.pipeline.health import RouteWatch
from mmsgate.pipeline.postback_sender import PostbackSender
from mmsgate.pipeline.worker import Worker
from mmsgate.profiles import PROFILES
from mmsgate.settings import Route
from mmsgate.store import route_health
from mmsgate.store.db import Database
from mmsgate.store.schema import jobs, recipient_events, recipients
from tests.conftest import Gateway, MediaServer
from tests.pipeline import test_fallback
from tests.pipeline.test_deliver import FakeCarrier, accept, run_deliveries

pytestmark = pytest.mark.anyio


class Peer:
    """An MM7 MMSC on loopback whose answer is set by `mode`: "401", "403", "accept"; it
    starts bound but not listening (connections refused) until `listen()`."""

    def __init__(self) -> None:
        self.mode = "accept"
        self.bodies: list[bytes] = []
        peer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                peer.bodies.append(body)
                if peer.mode in ("401", "403"):
                    page = b"<html><body>No</body></html>"
                    self.send_response(int(peer.mode))
                    self.send_header("WWW-Authenticate", 'Basic realm="mmsc"')
                    self.send_header("Content-Type", "text/html")
                    self.send_header("Content-Length", str(len(page)))
                    self.end_headers()
                    self.wfile.write(page)
                    return
                tx = mm7.decode_request(self.headers["Content-Type"], body).transaction_id
                answer = mm7.encode_response("SubmitRsp", tx, message_id=f"m-{len(peer.bodies)}")
                self.send_response(200)
                self.send_header("Content-Type", "text/xml")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler, bind_and_activate=False)
        self.server.server_bind()  # bound, not listening: connecting is refused
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/mm7"
        self.thread: threading.Thread | None = None

    def listen(self) -> None:
        self.server.server_activate()
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        if self.thread is not None:
            self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def peer() -> Iterator[Peer]:
    found = Peer()
    try:
        yield found
    finally:
        found.close()


@dataclasses.dataclass
class Pipeline:
    """A worker of its own (its own Database, as a separate `mmsgate worker` would have)
    on one route to the peer, on a clock the test moves."""

    worker: Worker
    db: Database
    now: list[dt.datetime]

    async def run(self) -> None:
        assert await self.worker.run_once() == 1

    async def job(self) -> Any:
        async with self.db.read() as conn:
            return (
                await conn.execute(
                    sa.select(jobs).where(jobs.c.kind == models.JobKind.DELIVER.value)
                )
            ).one()


def att(url: str, **changes: Any) -> Route:
    route = Route(name="att", kind="mm7", url=url, username="vasp", password="pw", default=True)
    return dataclasses.replace(route, **changes)


@pytest.fixture
async def pipeline(gateway: Gateway, peer: Peer) -> Any:
    db = Database(gateway.services.db.url)
    now = [dt.datetime.now(dt.UTC)]
    route = att(peer.url)
    deps = Deps(
        db,
        gateway.services.blobs,
        PostbackSender(),
        profiles=[PROFILES["default"]],
        routes=[route],
        carriers={"att": Mm7Carrier(route)},
        clock=lambda: now[0],
    )
    worker = Worker(db, {models.JobKind.DELIVER: deliver.deliver}, deps, clock=lambda: now[0])
    try:
        yield Pipeline(worker, db, now)
    finally:
        await deps.carriers["att"].close()
        await deps.http.aclose()
        await db.close()


async def state_of(db: Database, tracking_id: str) -> str:
    async with db.read() as conn:
        found = await conn.scalar(
            sa.select(recipients.c.state).where(recipients.c.tracking_id == tracking_id)
        )
    return str(found)


@pytest.mark.parametrize(
    ("fault", "words"),
    [
        ("401", "MMSC refused our credentials (HTTP 401)"),
        ("403", "MMSC refused access (HTTP 403)"),
        ("closed", "MMSC unreachable: cannot connect to 127.0.0.1:"),
    ],
)
async def test_a_route_fault_keeps_the_message_queued_until_the_route_works(
    gateway: Gateway,
    media_server: MediaServer,
    peer: Peer,
    pipeline: Pipeline,
    fault: str,
    words: str,
) -> None:
    """Refused credentials or a closed port: the message stays queued and backs off, the
    job and the log say why in words, the route is unhealthy (logged once) and /readyz
    names it with 503; once the peer accepts, it is delivered and the route healthy again."""
    if fault != "closed":
        peer.listen()
        peer.mode = fault
    tracking_id = await accept(gateway, media_server)
    pipeline.now[0] = dt.datetime.now(dt.UTC)
    delays = []
    with structlog.testing.capture_logs() as logs:
        for _ in range(2):
            started = pipeline.now[0]
            await pipeline.run()
            job = await pipeline.job()
            assert (job.state, await state_of(pipeline.db, tracking_id)) == ("pending", "queued")
            assert job.last_error.startswith(f"att: {words}")
            delays.append((job.run_at - started).total_seconds())
            pipeline.now[0] = job.run_at
    assert 2 <= delays[0] < delays[1]  # 2 s, then 4 s (each with up to 20 % jitter)
    assert job.attempts == 2
    errors_logged = [e for e in logs if e["log_level"] == "error"]
    assert [e["event"] for e in errors_logged] == ["route.unhealthy"]
    assert errors_logged[0]["reason"].startswith(words)
    ready = await gateway.client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["routes"]["att"]["reason"].startswith(words)
    metrics = (await gateway.client.get("/metrics")).text
    assert 'mmsgate_route_healthy{route="att"} 0' in metrics

    if fault == "closed":
        peer.listen()
    peer.mode = "accept"
    with structlog.testing.capture_logs() as logs:
        await pipeline.run()
    assert await state_of(pipeline.db, tracking_id) == "submitted"
    assert [e["event"] for e in logs if e["event"].startswith("route.")] == ["route.healthy"]
    assert (await route_health.get(pipeline.db, "att")).healthy
    ready = await gateway.client.get("/readyz")
    assert (ready.status_code, ready.json()) == (200, {"status": "ok"})
    metrics = (await gateway.client.get("/metrics")).text
    assert 'mmsgate_route_healthy{route="att"} 1' in metrics


async def test_a_message_that_expires_on_an_unhealthy_route_says_why(
    gateway: Gateway, media_server: MediaServer, peer: Peer, pipeline: Pipeline
) -> None:
    """A message that never got through a route refusing our credentials ends N103, its
    history naming the route's fault."""
    peer.listen()
    peer.mode = "401"
    tracking_id = await accept(gateway, media_server)
    pipeline.now[0] = dt.datetime.now(dt.UTC)
    await pipeline.run()
    pipeline.now[0] += dt.timedelta(days=4)
    await pipeline.run()
    assert await state_of(pipeline.db, tracking_id) == "expired"
    async with pipeline.db.read() as conn:
        detail = await conn.scalar(
            sa.select(recipient_events.c.detail).where(
                recipient_events.c.tracking_id == tracking_id,
                recipient_events.c.state == "expired",
            )
        )
    assert detail == (
        "expired before it could be sent: att: MMSC refused our credentials (HTTP 401)"
    )


async def test_workers_write_route_health_only_when_it_changes(gateway: Gateway) -> None:
    """Of two workers seeing the same fault, one changes the row; the same fault again,
    or health on a route never unhealthy, changes nothing."""
    db = gateway.services.db
    now = dt.datetime.now(dt.UTC)
    first = await route_health.change(db, "att", healthy=False, reason="HTTP 401", now=now)
    again = await route_health.change(db, "att", healthy=False, reason="HTTP 401", now=now)
    other = await route_health.change(db, "att", healthy=False, reason="refused", now=now)
    fine = await route_health.change(db, "sms", healthy=True, reason=None, now=now)
    back = await route_health.change(db, "att", healthy=True, reason=None, now=now)
    assert [first, again, other, fine, back] == [
        route_health.Change.HEALTH,
        route_health.Change.NONE,
        route_health.Change.REASON,
        route_health.Change.NONE,
        route_health.Change.HEALTH,
    ]
    assert await route_health.unhealthy(db) == []


@pytest.mark.parametrize(
    ("number_format", "written"),
    [("digits", b"<Number>12399471613</Number>"), ("e164", b"<Number>+12399471613</Number>")],
)
async def test_the_route_number_format_reaches_the_mmsc(
    gateway: Gateway,
    media_server: MediaServer,
    peer: Peer,
    number_format: str,
    written: bytes,
) -> None:
    """A route's `number_format` decides how the SubmitReq the MMSC receives writes the
    recipient: international digits by default, +E.164 when asked."""
    peer.listen()
    route = att(peer.url, number_format=number_format)
    carrier = Mm7Carrier(route)
    deps = Deps(
        gateway.services.db,
        gateway.services.blobs,
        PostbackSender(),
        profiles=[PROFILES["default"]],
        routes=[route],
        carriers={"att": carrier},
    )
    tracking_id = await accept(gateway, media_server)
    worker = Worker(gateway.services.db, {models.JobKind.DELIVER: deliver.deliver}, deps)
    try:
        await worker.run_once()
    finally:
        await carrier.close()
        await deps.http.aclose()
    [body] = peer.bodies
    assert written in body
    assert await state_of(gateway.services.db, tracking_id) == "submitted"


@pytest.mark.parametrize("value", ["E164", "plus", ""])
def test_a_bad_number_format_is_refused_naming_the_route(tmp_path: Any, value: str) -> None:
    """A `number_format` other than digits or e164 stops the start, naming the route."""
    path = tmp_path / "c.toml"
    path.write_text(
        "[[routes]]\nname = 'vodafone'\nkind = 'mm7'\nurl = 'http://mmsc/mm7'\n"
        f"number_format = '{value}'\n"
    )
    with pytest.raises(errors.ConfigError, match=r"routes\[0\]\.number_format: route 'vodafone'"):
        settings.load(path, {})


def test_number_format_defaults_to_digits(tmp_path: Any) -> None:
    """Without `number_format` a route writes digits; e164 is taken as given."""
    path = tmp_path / "c.toml"
    path.write_text(
        "[[routes]]\nname = 'a'\nkind = 'simulator'\n"
        "[[routes]]\nname = 'b'\nkind = 'simulator'\nnumber_format = 'e164'\n"
    )
    assert [r.number_format for r in settings.load(path, {}).routes] == ["digits", "e164"]


@pytest.mark.parametrize(
    ("result", "retry"),
    [
        (SubmitResult(False, None, 2002, "HTTP 200, MM7 2002 Address Error"), False),
        (SubmitResult(False, None, 4006, "HTTP 500, MM7 4006 Busy", transient=True), True),
        (SubmitResult(False, None, 0, "HTTP 500 from the MMSC, no MM7 status", True, None), True),
    ],
)
async def test_a_failed_submit_is_logged_as_a_warning(
    gateway: Gateway, media_server: MediaServer, result: SubmitResult, retry: bool
) -> None:
    """A refused or retried submit that is the message's own failure logs
    carrier.submit_failed at warning level, with the words and whether it is retried."""
    await accept(gateway, media_server)
    with structlog.testing.capture_logs() as logs:
        await run_deliveries(gateway, FakeCarrier(result))
    [failed] = [e for e in logs if e["event"] == "carrier.submit_failed"]
    assert (failed["log_level"], failed["said"], failed["retry"]) == (
        "warning",
        result.status_text,
        retry,
    )


@pytest.mark.parametrize("transient", [False, True])
async def test_a_failed_fallback_sms_is_logged_as_a_warning(
    gateway: Gateway, media_server: MediaServer, transient: bool
) -> None:
    """An SMSC refusing the fallback SMS, for good or for now, logs fallback.sms_failed at
    warning level with what it said."""
    await test_fallback.send(gateway, media_server)
    sms = test_fallback.FakeSms(SmsResult(False, (), 0x58, "throttled", transient=transient))
    deps = test_fallback.deps_for(gateway, test_fallback.FakeCarrier(test_fallback.REFUSED), sms)
    with structlog.testing.capture_logs() as logs:
        await test_fallback.run_all(deps)
    [failed] = [e for e in logs if e["event"] == "fallback.sms_failed"]
    assert (failed["log_level"], failed["retry"]) == ("warning", transient)
    assert failed["said"].endswith("88 throttled")


async def test_a_fault_while_the_route_answered_others_is_not_the_routes(
    gateway: Gateway,
) -> None:
    """A submit that timed out while the MMSC answered a later one leaves the route healthy;
    a fault after the last answer marks it unhealthy, and only that one is logged."""
    db, watch, now = gateway.services.db, RouteWatch(), dt.datetime.now(dt.UTC)
    timed_out_sent = time.monotonic()
    with structlog.testing.capture_logs() as logs:
        await watch.observe(
            db, "att", True, "HTTP 200, MM7 1000 Success", sent=time.monotonic(), now=now
        )
        await watch.observe(db, "att", False, "MMSC did not answer", sent=timed_out_sent, now=now)
        assert (await route_health.get(db, "att")).healthy
        await watch.observe(db, "att", False, "MMSC did not answer", sent=time.monotonic(), now=now)
    assert not (await route_health.get(db, "att")).healthy
    assert [e["event"] for e in logs] == ["route.unhealthy"]
