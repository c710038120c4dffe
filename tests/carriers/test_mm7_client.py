"""The MM7 client against a real HTTP server on loopback: auth, headers, outcomes."""

from __future__ import annotations

import base64
import dataclasses
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from mmsgate import mm7_codec as mm7
from mmsgate.carriers.mm7 import Mm7Carrier
from mmsgate.settings import Route
from tests.carriers.test_mm7_codec import SUBMIT

pytestmark = pytest.mark.anyio
FAULT_4006 = (
    mm7.encode_response("RSErrorRsp", "tx-1", status=4006, text="Service unavailable")
    .replace(
        b"<env:Body>",
        b"<env:Body><env:Fault><faultcode>env:Server</faultcode><faultstring>busy</faultstring><detail>",
    )
    .replace(b"</env:Body>", b"</detail></env:Fault></env:Body>")
)


@dataclasses.dataclass
class Mmsc:
    """An MMSC stand-in: records requests, answers (status, body) from a script."""

    url: str
    requests: list[tuple[dict[str, str], bytes]]
    answers: list[tuple[int, bytes]]


@pytest.fixture
def mmsc() -> Iterator[Mmsc]:
    requests: list[tuple[dict[str, str], bytes]] = []
    answers: list[tuple[int, bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
            status, answer = answers.pop(0)
            self.send_response(status)
            self.send_header("Content-Type", "text/xml; charset=utf-8")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield Mmsc(f"http://127.0.0.1:{server.server_address[1]}/mm7", requests, answers)
    finally:
        server.shutdown()
        server.server_close()


def route(url: str) -> Route:
    return Route(name="att", kind="mm7", url=url, username="vasp", password="secret")


async def test_accepted_submit_returns_message_id(mmsc: Mmsc) -> None:
    """A 1000 SubmitRsp gives the MessageID; the request has Basic auth, a length, no Expect."""
    mmsc.answers.append((200, mm7.encode_response("SubmitRsp", "tx-1", message_id="msg-1")))
    carrier = Mm7Carrier(route(mmsc.url))
    try:
        result = await carrier.submit(SUBMIT)
    finally:
        await carrier.close()
    assert (result.accepted, result.message_id, result.status_code) == (True, "msg-1", 1000)
    [(headers, body)] = mmsc.requests
    assert headers["authorization"] == "Basic " + base64.b64encode(b"vasp:secret").decode()
    assert headers["content-length"] == str(len(body))
    assert "expect" not in headers
    assert headers["soapaction"] == '""'
    assert mm7.decode_request(headers["content-type"], body).kind == "SubmitReq"


@pytest.mark.parametrize(
    ("status", "answer", "transient", "code"),
    [
        (500, FAULT_4006, True, 4006),
        (
            200,
            mm7.encode_response("SubmitRsp", "tx-1", status=2002, text="Address Error"),
            False,
            2002,
        ),
        (500, b"<html>oops</html>", True, 0),
        (503, b"", True, 0),
        (200, mm7.encode_response("SubmitRsp", "tx-1"), True, 1000),
    ],
    ids=["fault-4006", "address-error", "html-500", "empty-503", "no-message-id"],
)
async def test_refusals_are_classified(
    mmsc: Mmsc, status: int, answer: bytes, transient: bool, code: int
) -> None:
    """Faults, permanent codes, unreadable 5xx and a Success without MessageID are sorted
    into final and retryable results."""
    mmsc.answers.append((status, answer))
    carrier = Mm7Carrier(route(mmsc.url))
    try:
        result = await carrier.submit(SUBMIT)
    finally:
        await carrier.close()
    assert (result.accepted, result.transient, result.status_code) == (False, transient, code)


async def test_unreachable_mmsc_is_transient() -> None:
    """A refused connection is a transient failure, not an exception."""
    carrier = Mm7Carrier(route("http://127.0.0.1:9/mm7"))
    try:
        result = await carrier.submit(SUBMIT)
    finally:
        await carrier.close()
    assert (result.accepted, result.transient) == (False, True)
