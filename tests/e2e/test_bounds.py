"""What a real `mmsgate run` takes from a client: every body bounded while it is read, the
request head and body timed out, connections per address capped, and a send whose client
left before the commit stopped."""

from __future__ import annotations

import base64
import sqlite3
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import samples
from tests.e2e.bounded import SIM_PAIR, Server, read_until_closed, running, upload

pytestmark = pytest.mark.slow

MIB = 1024 * 1024
AUTH = base64.b64encode(":".join(SIM_PAIR).encode()).decode()
# path, extra headers, the limit the route applies, how it refuses (status line, text)
ROUTES = {
    "/ep/v1/": ("", 1 * MIB, b"HTTP/1.1 200", b"<error-code>E100</error-code>"),
    "/v1/preview": ("x-api-key: {key}\r\n", 1 * MIB, b"HTTP/1.1 413", b'"E100"'),
    "/mm7": (f"authorization: Basic {AUTH}\r\n", 8 * MIB, b"HTTP/1.1 400", b"2008"),
    "/kannel/dlr": (
        "content-type: application/x-www-form-urlencoded\r\n",
        64 * 1024,
        b"HTTP/1.1 413",
        b"larger than",
    ),
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One `mmsgate run` with the default limits; a media fetch may take minutes (so only a
    client that leaves can end one early)."""
    config = "[media]\ntotal_timeout = 300\n"
    with running(tmp_path_factory.mktemp("bounds"), config) as server:
        yield server


def _head(server: Server, path: str, length: str) -> bytes:
    extra = ROUTES[path][0].format(key=server.key)
    return (f"POST {path} HTTP/1.1\r\nhost: mmsgate\r\n{extra}{length}\r\n").encode()


@pytest.mark.parametrize("path", list(ROUTES))
def test_a_chunked_upload_over_the_limit_is_cut_off_early_in_little_memory(
    server: Server, path: str
) -> None:
    """A 64 MiB chunked upload is refused in the route's own way once it passes the route's
    limit, the connection is closed well before the client has sent it all, and the
    server's peak memory grows by the limit and a few MiB at most."""
    _extra, limit, status, text = ROUTES[path]
    before = server.peak_rss_kib()
    with server.connect() as sock:
        result = upload(
            sock, _head(server, path, "transfer-encoding: chunked\r\n"), 64 * MIB, chunked=True
        )
    grown = (server.peak_rss_kib() - before) * 1024
    assert result.closed, result.answer[:300]
    assert result.sent < 32 * MIB, result.sent
    if result.answer:  # the answer may be lost to the reset of a connection closed mid-upload
        assert result.answer.startswith(status), result.answer[:300]
        assert text in result.answer, result.answer[:500]
        assert b"connection: close" in result.answer.lower()
    assert grown < limit + 6 * MIB, f"peak memory grew by {grown / MIB:.1f} MiB"


@pytest.mark.parametrize("path", list(ROUTES))
def test_a_content_length_over_the_limit_is_refused_before_the_body_is_sent(
    server: Server, path: str
) -> None:
    """A request declaring 1 GiB is answered from its head alone, with the route's refusal,
    no `100 Continue`, and the connection closed: the client never has to send the body."""
    head = _head(server, path, f"content-length: {1024 * MIB}\r\nexpect: 100-continue\r\n")
    with server.connect() as sock:
        sock.sendall(head)
        answer, _took = read_until_closed(sock, within=30)
    _extra, _limit, status, text = ROUTES[path]
    assert answer.startswith(status), answer[:300]
    assert b"100 Continue" not in answer
    assert text in answer, answer[:500]
    assert b"connection: close" in answer.lower()


@pytest.mark.parametrize("head", [b"GET /", b"GET / HTTP/1.1\r\nx-long: "])
def test_an_endless_request_head_is_refused_early(server: Server, head: bytes) -> None:
    """A request line or header that never ends is answered 431 once the head passes
    64 KiB, and the connection closed long before the client has sent 64 MiB of it."""
    before = server.peak_rss_kib()
    with server.connect() as sock:
        result = upload(sock, head, 64 * MIB, chunked=False)
    assert result.closed
    assert result.sent < 32 * MIB, result.sent
    if result.answer:
        assert result.answer.startswith(b"HTTP/1.1 431"), result.answer[:300]
    assert (server.peak_rss_kib() - before) * 1024 < 6 * MIB


@pytest.fixture(scope="module")
def impatient(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`mmsgate run` with short read timeouts (1 s between bytes and for the head, 3 s for
    a body)."""
    config = "[api]\nread_timeout = 1\nbody_timeout = 3\n"
    with running(tmp_path_factory.mktemp("timeouts"), config) as server:
        yield server


SLOW = {
    "silent": b"",
    "partial request line": b"POST /ep/v1/ HT",
    "partial head": b"POST /ep/v1/ HTTP/1.1\r\nhost: mmsgate\r\ncontent-le",
    "partial body": b"POST /ep/v1/ HTTP/1.1\r\nhost: mmsgate\r\ncontent-length: 100\r\n\r\n<req",
    "partial chunked body": (
        b"POST /mm7 HTTP/1.1\r\nhost: mmsgate\r\ntransfer-encoding: chunked\r\n"
        + f"authorization: Basic {AUTH}\r\n\r\n4\r\n<env".encode()
    ),
}


@pytest.mark.parametrize("sent", list(SLOW))
def test_a_request_that_stops_arriving_is_timed_out(impatient: Server, sent: str) -> None:
    """A connection that sends nothing, or part of a request and then nothing, is closed
    after the read timeout: with 408 when it had begun a request, silently when not."""
    with impatient.connect() as sock:
        sock.sendall(SLOW[sent])
        answer, _took = read_until_closed(sock, within=20)
    if SLOW[sent]:
        assert answer.startswith(b"HTTP/1.1 408"), answer
    else:
        assert answer == b""


def test_a_body_that_trickles_in_is_timed_out_as_a_whole(impatient: Server) -> None:
    """A body sent one byte at a time, each within the read timeout, is cut off once the
    whole body has taken longer than body_timeout."""
    with impatient.connect() as sock:
        sock.sendall(b"POST /ep/v1/ HTTP/1.1\r\nhost: mmsgate\r\ncontent-length: 1000\r\n\r\n")
        sock.settimeout(0.4)  # the pace of the trickle, well inside the 1 s read timeout
        answer = b""
        for _ in range(100):  # 40 s at most: the 3 s body timeout ends it long before
            try:
                sock.sendall(b"<")
                data = sock.recv(65536)
            except TimeoutError:
                continue  # nothing from the server yet: the next byte
            except (ConnectionResetError, BrokenPipeError):
                break
            if not data:
                break
            answer += data
    assert answer.startswith(b"HTTP/1.1 408"), answer


def test_a_kept_alive_connection_times_out_a_slow_second_request(impatient: Server) -> None:
    """After one full exchange on a connection, a second request that stops half-way is
    timed out like a first one."""
    with impatient.connect() as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: mmsgate\r\n\r\n")
        first = b""
        while not first.endswith(b'{"status":"ok"}'):
            first += sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 200"), first
        sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: mm")
        answer, _took = read_until_closed(sock, within=20)
    assert answer.startswith(b"HTTP/1.1 408"), answer


def test_connections_beyond_the_cap_per_address_are_refused(tmp_path: Path) -> None:
    """With max_connections_per_client = 4, a fifth connection from 127.0.0.1 is answered
    429 and closed, while 127.0.0.2 is still served; once one of the four closes, 127.0.0.1
    is served again."""
    config = "[api]\nmax_connections_per_client = 4\nread_timeout = 60\n"
    with running(tmp_path, config) as server:
        held = [server.connect() for _ in range(4)]
        try:
            with server.connect() as fifth:
                fifth.sendall(b"GET /healthz HTTP/1.1\r\nhost: mmsgate\r\n\r\n")
                refused, _took = read_until_closed(fifth, within=20)
            assert refused.startswith(b"HTTP/1.1 429"), refused
            second_address = httpx.HTTPTransport(local_address="127.0.0.2")
            with httpx.Client(transport=second_address, timeout=20) as client:
                assert client.get(f"http://127.0.0.1:{server.port}/healthz").status_code == 200
            held.pop().close()
            assert _served_again(server)
        finally:
            for sock in held:
                sock.close()


def _served_again(server: Server) -> bool:
    """Whether 127.0.0.1 is served within a few seconds (the server hears of a closed
    connection a moment after the client closes it)."""
    for _ in range(100):
        with server.connect() as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: mmsgate\r\nconnection: close\r\n\r\n")
            answer, _took = read_until_closed(sock, within=20)
        if answer.startswith(b"HTTP/1.1 200"):
            return True
        assert answer.startswith(b"HTTP/1.1 429"), answer
    return False


class HangingMedia:
    """A media server whose image answers only when released, and that notices when the
    fetching side gives up (closes its connection) while it waits."""

    def __init__(self) -> None:
        self.asked = threading.Event()
        self.abandoned = threading.Event()
        self.release = threading.Event()
        media = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                media.asked.set()
                self.connection.settimeout(0.05)
                while not media.release.is_set():
                    try:
                        if self.connection.recv(1) == b"":
                            media.abandoned.set()
                            return
                    except TimeoutError:
                        continue
                    except OSError:
                        media.abandoned.set()
                        return
                data = samples.jpeg()
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hang.jpg"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def test_a_send_whose_client_leaves_before_the_commit_is_stopped_and_stores_nothing(
    server: Server,
) -> None:
    """A sendMMS whose client closes its connection while the gateway is still fetching
    its media is stopped (the fetch is abandoned) and leaves no message behind."""
    media = HangingMedia()
    try:
        xml = (
            f"<request><action>sendMMS</action><api-key>{server.key}</api-key>"
            "<to>12399471613</to><from>28444</from><service-id>32113</service-id>"
            "<name>left</name><fallback-sms-text>hi</fallback-sms-text>"
            f"<slide><image><url>{media.url}</url></image></slide></request>"
        ).encode()
        with server.connect() as sock:
            sock.sendall(
                b"POST /ep/v1/ HTTP/1.1\r\nhost: mmsgate\r\n"
                + b"content-length: %d\r\n\r\n" % len(xml)
                + xml
            )
            assert media.asked.wait(30), "the gateway never fetched the media"
        assert media.abandoned.wait(30), "the gateway went on fetching for a client gone"
    finally:
        media.close()
    with sqlite3.connect(server.data_dir / "mmsgate.db") as db:
        templates = db.execute("select count(*) from templates where name = 'left'").fetchone()
        messages = db.execute("select count(*) from messages").fetchone()
    assert templates == (0,)
    assert messages == (0,)
    assert "client gone" in server.log.read_text()
