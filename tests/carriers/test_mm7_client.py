"""The MM7 client against a real HTTP server on loopback: auth, headers, outcomes."""

from __future__ import annotations

import base64
import dataclasses
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from mmsgate import http_client
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
    answers: list[tuple[int, bytes] | tuple[int, bytes, str]]


@pytest.fixture
def mmsc() -> Iterator[Mmsc]:
    requests: list[tuple[dict[str, str], bytes]] = []
    answers: list[tuple[int, bytes] | tuple[int, bytes, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
            status, answer, *typed = answers.pop(0)
            self.send_response(status)
            self.send_header("Content-Type", typed[0] if typed else "text/xml; charset=utf-8")
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


HTML = b"<!DOCTYPE html><html><body><h1>Unauthorized</h1></body></html>"


@pytest.mark.parametrize(
    ("answer", "words", "transient", "working"),
    [
        ((401, b""), "MMSC refused our credentials (HTTP 401)", True, False),
        ((401, HTML, "text/html"), "MMSC refused our credentials (HTTP 401)", True, False),
        ((403, HTML, "text/html"), "MMSC refused access (HTTP 403)", True, False),
        (
            (404, HTML, "text/html"),
            "no MM7 service at the url (HTTP 404 from the MMSC, no MM7 status: an HTML page)",
            True,
            False,
        ),
        (
            (500, b"<html><body>Internal error</body></html>", "text/html"),
            "HTTP 500 from the MMSC, no MM7 status: an HTML page",
            True,
            None,
        ),
        (
            (200, b"hello there", "text/plain"),
            "HTTP 200 from the MMSC, no MM7 status: text/plain body 'hello there'",
            False,
            None,
        ),
        ((503, b""), "HTTP 503 from the MMSC, no MM7 status: empty body", True, None),
        ((500, FAULT_4006), "HTTP 500, MM7 4006 Service unavailable", True, True),
        (
            (200, mm7.encode_response("SubmitRsp", "tx-1", status=2002, text="Address Error")),
            "HTTP 200, MM7 2002 Address Error",
            False,
            True,
        ),
        (
            (500, mm7.encode_fault("tx-1", 4001, "Improper identification")),
            "MMSC refused our set-up (HTTP 500, MM7 4001 Improper identification)",
            True,
            False,
        ),
        (
            (200, mm7.encode_response("SubmitRsp", "tx-1")),
            "HTTP 200, MM7 1000 Success, but no MessageID",
            True,
            True,
        ),
        (
            (200, b"<SubmitRsp><Status>"),
            "HTTP 200 from the MMSC, no MM7 status: not well-formed XML: no element found",
            False,
            None,
        ),
    ],
    ids=[
        "401-empty",
        "401-html",
        "403-html",
        "404-html",
        "500-html",
        "200-text",
        "503-empty",
        "500-fault-4006",
        "200-2002",
        "500-fault-4001",
        "200-no-message-id",
        "200-broken-xml",
    ],
)
async def test_failure_texts_name_http_and_mm7_status(
    mmsc: Mmsc,
    answer: tuple[int, bytes] | tuple[int, bytes, str],
    words: str,
    transient: bool,
    working: bool | None,
) -> None:
    """Each failure says in words what happened, with the HTTP status and the MM7 status
    code (or that there was none), and "XML" only when the MMSC's XML was broken; a
    credentials or set-up refusal is the route's fault and retried."""
    mmsc.answers.append(answer)
    carrier = Mm7Carrier(route(mmsc.url))
    try:
        result = await carrier.submit(SUBMIT)
    finally:
        await carrier.close()
    assert result.status_text == words
    assert (result.accepted, result.transient, result.route_working) == (False, transient, working)
    assert ("XML" in words) == (answer[1] == b"<SubmitRsp><Status>")


async def test_unreachable_mmsc_is_the_routes_fault() -> None:
    """A closed port says the MMSC is unreachable, and marks the route at fault."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        carrier = Mm7Carrier(route(f"http://127.0.0.1:{closed.getsockname()[1]}/mm7"))
        try:
            result = await carrier.submit(SUBMIT)
        finally:
            await carrier.close()
    assert result.status_text.startswith("MMSC unreachable: cannot connect to 127.0.0.1:")
    assert (result.transient, result.route_working) == (True, False)


async def test_a_silent_mmsc_is_a_timeout_of_the_route() -> None:
    """An MMSC that takes the request and never answers is a timeout, the route's fault."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)  # the kernel completes the handshake; nobody ever reads or answers
        client = http_client.HttpClient(timeout=0.2, connect_timeout=1.0)
        carrier = Mm7Carrier(route(f"http://127.0.0.1:{silent.getsockname()[1]}/mm7"), client)
        try:
            result = await carrier.submit(SUBMIT)
        finally:
            await carrier.close()
    assert result.status_text == "MMSC did not answer: no complete response within 0.2 s"
    assert (result.transient, result.route_working) == (True, False)


async def test_a_failed_tls_handshake_says_so(mmsc: Mmsc) -> None:
    """An https route to a peer that speaks no TLS fails the handshake, named as such."""
    carrier = Mm7Carrier(route(mmsc.url.replace("http://", "https://")))
    try:
        result = await carrier.submit(SUBMIT)
    finally:
        await carrier.close()
    assert result.status_text.startswith("MMSC unreachable: TLS handshake with 127.0.0.1:")
    assert (result.transient, result.route_working) == (True, False)
