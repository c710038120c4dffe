"""Postbacks: Sinch XML bodies, HMAC signatures, retries, the 24 h window, address guard."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import tempfile
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from mmsgate import models, postback_xml
from mmsgate.pipeline import postbacks
from mmsgate.pipeline.deps import Deps
from mmsgate.pipeline.postback_sender import PostbackSender
from mmsgate.pipeline.worker import Worker
from mmsgate.store import accounts
from mmsgate.store.blobs import FileBlobStore
from mmsgate.store.db import Database
from mmsgate.store.jobs import new_job
from mmsgate.store.schema import jobs
from tests.api.helpers import GOLDEN
from tests.pipeline.conftest import T0, Clock

pytestmark = pytest.mark.anyio


@dataclasses.dataclass
class Receiver:
    """A client's postback endpoint on loopback: records requests, answers scripted codes."""

    url: str
    received: list[tuple[dict[str, str], bytes]]
    statuses: list[int]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    received: list[tuple[dict[str, str], bytes]] = []
    statuses: list[int] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append(({k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(statuses.pop(0) if statuses else 200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield Receiver(f"http://127.0.0.1:{server.server_address[1]}/hook", received, statuses)
    finally:
        server.shutdown()
        server.server_close()


def earlier_job(account_id: int, body: bytes, content_type: str = "application/xml") -> Any:
    """A postback job as earlier versions queued it: the body rendered, not the event."""
    payload = {"account_id": account_id, "body": body.decode(), "content_type": content_type}
    return new_job(models.JobKind.POSTBACK, T0, payload=payload)


async def setup(
    db: Database,
    url: str | None,
    body: bytes | Callable[[int], models.PostbackEvent],
    allow_private: bool = True,
) -> tuple[Worker, Clock, str]:
    """A worker for an account posting to `url`, with one postback queued: an event made
    for the account's id, or a body as an earlier version queued it."""
    created = await accounts.create(db, "acme", senders=["28444"], postback_url=url)
    assert created is not None
    account_id = created.account.id
    job = (
        earlier_job(account_id, body)
        if isinstance(body, bytes)
        else postbacks.postback_job(body(account_id), T0)
    )
    async with db.write() as conn:
        await conn.execute(jobs.insert(), [job])
    clock = Clock()
    deps = Deps(
        db,
        FileBlobStore(Path(tempfile.mkdtemp())),
        PostbackSender(allow_private_networks=allow_private),
        clock=clock,
    )
    worker = Worker(db, {models.JobKind.POSTBACK: postbacks.send_postback}, deps, clock=clock)
    return worker, clock, created.postback_secret


async def job_row(db: Database) -> Any:
    async with db.read() as conn:
        return (await conn.execute(sa.select(jobs))).one()


def test_template_postback_shapes_are_golden() -> None:
    """N003 and E002 postbacks have Sinch's lower-case XML shape."""
    ok = postbacks.template_postback("N003", 42)
    failed = postbacks.template_postback(
        "E002", 42, (models.MediaKind.AUDIO, "http://x/a.mp3?a=1&b=2")
    )
    assert ok == (GOLDEN / "postback_n003.xml").read_bytes()
    assert failed == (GOLDEN / "postback_e002.xml").read_bytes()


def n003(account_id: int) -> models.PostbackEvent:
    return models.PostbackEvent(models.PostbackKind.TEMPLATE, account_id, "N003", mms_id=7)


async def test_postback_is_signed_and_delivered_once(db: Database, receiver: Receiver) -> None:
    """The queued event arrives rendered, with a timestamp and a valid HMAC-SHA256 signature."""
    body = postbacks.template_postback("N003", 7)
    worker, _clock, secret = await setup(db, receiver.url, n003)
    assert await worker.run_once() == 1
    assert await worker.run_once() == 0
    [(headers, got)] = receiver.received
    assert got == body
    timestamp = int(headers["x-mmsgate-timestamp"])
    assert timestamp == int(T0.timestamp())
    assert headers["x-mmsgate-signature"] == postbacks.signature(secret, timestamp, body)
    assert headers["x-mmsgate-signature"].startswith("v1=")
    assert (await job_row(db)).state == "done"
    await worker.deps.http.aclose()


async def test_a_queued_event_is_sent_as_the_golden_bytes(db: Database, receiver: Receiver) -> None:
    """A saveMMS failure queued as an event is sent as the golden E002 body, signed over it."""

    def e002(account_id: int) -> models.PostbackEvent:
        kind, url = models.MediaKind.AUDIO, "http://x/a.mp3?a=1&b=2"
        return models.PostbackEvent(
            models.PostbackKind.TEMPLATE, account_id, "E002", mms_id=42, failed=kind, failed_url=url
        )

    worker, _clock, secret = await setup(db, receiver.url, e002)
    assert await worker.run_once() == 1
    [(headers, got)] = receiver.received
    assert got == (GOLDEN / "postback_e002.xml").read_bytes()
    assert headers["content-type"] == "application/xml"
    timestamp = int(headers["x-mmsgate-timestamp"])
    assert headers["x-mmsgate-signature"] == postbacks.signature(secret, timestamp, got)
    await worker.deps.http.aclose()


async def test_a_job_queued_by_an_earlier_version_is_sent_as_stored(
    db: Database, receiver: Receiver
) -> None:
    """A job holding a rendered body (as earlier versions queued them) is sent byte for
    byte with its stored Content-Type, signed over those bytes."""
    body = "<postback>\n    <code>N102</code> é\n</postback>\n".encode()
    worker, _clock, secret = await setup(db, receiver.url, body)
    assert await worker.run_once() == 1
    [(headers, got)] = receiver.received
    assert (got, headers["content-type"]) == (body, "application/xml")
    timestamp = int(headers["x-mmsgate-timestamp"])
    assert headers["x-mmsgate-signature"] == postbacks.signature(secret, timestamp, body)
    assert (await job_row(db)).state == "done"
    await worker.deps.http.aclose()


def test_events_survive_the_queue_and_render_as_the_postback_they_name() -> None:
    """A delivery and an MO event, through JSON and back, render as delivery_postback and
    mo_postback would render the same facts."""
    at = dt.datetime(2026, 11, 25, 10, 0, 0, 123456, tzinfo=dt.UTC)
    delivery = models.PostbackEvent(
        models.PostbackKind.DELIVERY, 3, "N102", at=at, tracking_id="t-1", mms_id=9,
        sender="28444", to="12399471613", sent_as="MMS", status=None, operator_id=31062,
        handset="http://ua/h.xml", details="Retrieved & read",
    )  # fmt: skip
    mo = models.PostbackEvent(
        models.PostbackKind.MO, 3, "N401", at=at, tracking_id="MMS_MO_1", sender="17745550100",
        to="28444", subject=None, files=("https://gw/media/tok/1", "https://gw/media/tok/2"),
    )  # fmt: skip
    queued = [
        models.PostbackEvent.from_data(json.loads(json.dumps(e.to_data()))) for e in (delivery, mo)
    ]
    assert queued == [delivery, mo]
    facts = ("N102", "t-1", 9, "28444", "12399471613", at, "MMS", None, 31062)
    more = ("http://ua/h.xml", "Retrieved & read")
    expected = postback_xml.delivery_postback(postback_xml.Delivery(*facts, *more))
    assert postbacks.body_of(postbacks.postback_job(delivery, T0)["payload"])[0] == expected
    files = ["https://gw/media/tok/1", "https://gw/media/tok/2"]
    expected_mo = postback_xml.mo_postback("MMS_MO_1", "17745550100", "28444", at, None, files)
    assert postbacks.body_of(postbacks.postback_job(mo, T0)["payload"])[0] == expected_mo


async def test_failures_are_retried_then_delivered(db: Database, receiver: Receiver) -> None:
    """A 500 and a 404 are retried later; the first 2xx ends the job."""
    receiver.statuses.extend([500, 404])
    worker, clock, _ = await setup(db, receiver.url, b"<postback/>")
    for _ in range(3):
        await worker.run_once()
        clock.now += dt.timedelta(hours=1)
    assert len(receiver.received) == 3
    row = await job_row(db)
    assert (row.state, row.attempts) == ("done", 3)
    await worker.deps.http.aclose()


async def test_gives_up_after_the_window(db: Database, receiver: Receiver) -> None:
    """Still failing 24 h after it was made, a postback is left dead for replay."""
    receiver.statuses.extend([503] * 10)
    worker, clock, _ = await setup(db, receiver.url, b"<postback/>")
    await worker.run_once()
    clock.now = T0 + dt.timedelta(hours=25)
    await worker.run_once()
    row = await job_row(db)
    assert row.state == "dead"
    assert "gave up" in row.last_error
    await worker.deps.http.aclose()


async def test_private_address_is_refused_without_permission(
    db: Database, receiver: Receiver
) -> None:
    """A postback URL on loopback is not posted to unless private networks are allowed."""
    worker, _clock, _ = await setup(db, receiver.url, b"<postback/>", allow_private=False)
    await worker.run_once()
    assert receiver.received == []
    row = await job_row(db)
    assert row.state == "pending"
    assert "not allowed" in row.last_error
    await worker.deps.http.aclose()


async def test_account_without_url_needs_nothing_sent(db: Database) -> None:
    """Without a postback URL the job simply ends."""
    worker, _clock, _ = await setup(db, None, b"<postback/>")
    await worker.run_once()
    assert (await job_row(db)).state == "done"
    await worker.deps.http.aclose()


def test_a_postback_job_naming_no_account_is_a_clear_error() -> None:
    """A postback job whose payload names no account (or not as a number) raises an MmsgateError naming it."""
    from mmsgate.errors import MmsgateError

    for payload in ({}, {"account_id": "7"}, {"account_id": True}):
        with pytest.raises(MmsgateError, match="names no account"):
            postbacks.account_of(payload)
    assert postbacks.account_of({"account_id": 7}) == 7
