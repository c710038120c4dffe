"""Unit-test fixtures: the anyio backend, a media server on 127.0.0.1 scripted per path, and
an embedded data dir for the command-line tests."""

from __future__ import annotations

import contextlib
import dataclasses
import http.server
import socket
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

Respond = Callable[["MediaHandler"], None]
"""Answers one request; it may read `handler.headers` and write with the handler's helpers."""


@dataclasses.dataclass(frozen=True, slots=True)
class Seen:
    """A request the server received."""

    path: str
    headers: Mapping[str, str]


class MediaServer:
    """A ThreadingHTTPServer whose answers each test scripts, path by path."""

    def __init__(self) -> None:
        self.routes: dict[str, Respond] = {}
        self.seen: list[Seen] = []
        # Stalling handlers wait on this; teardown sets it so no handler outlives its test.
        self.release = threading.Event()
        server = self

        class Handler(MediaHandler):
            media_server = server

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        # A short poll interval keeps shutdown, which waits for the next poll, quick.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def route(self, path: str, respond: Respond) -> str:
        """Answer `path` with `respond`; returns the path's URL."""
        self.routes[path] = respond
        return self.url(path)

    def serve(
        self,
        path: str,
        body: bytes,
        content_type: str | None = "application/octet-stream",
        *,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
        chunked: bool = False,
    ) -> str:
        """Answer `path` with a fixed response; returns the path's URL."""

        def respond(handler: MediaHandler) -> None:
            extra = dict(headers or {})
            if content_type is not None:
                extra["Content-Type"] = content_type
            handler.send(status, body, extra, chunked=chunked)

        return self.route(path, respond)

    def paths(self) -> list[str]:
        return [seen.path for seen in self.seen]

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.release.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()


class MediaHandler(http.server.BaseHTTPRequestHandler):
    """Dispatches to the route the test scripted; unknown paths get 404."""

    protocol_version = "HTTP/1.1"
    media_server: MediaServer

    def handle(self) -> None:
        # The client may hang up mid-response, as a fetch does when it stops reading over
        # the cap: that ends the connection, it is not a server error.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            super().handle()

    def do_GET(self) -> None:
        server = self.media_server
        server.seen.append(Seen(self.path, dict(self.headers.items())))
        respond = server.routes.get(self.path)
        if respond is None:
            self.send(404, b"not here", {"Content-Type": "text/plain"})
        else:
            respond(self)

    def send(
        self, status: int, body: bytes, headers: Mapping[str, str], *, chunked: bool = False
    ) -> None:
        """Write a whole response, with Content-Length or chunked."""
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        elif "Content-Length" not in headers:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if chunked:
            self.write_chunk(body)
            self.end_chunks()
        else:
            self.wfile.write(body)

    def write_chunk(self, data: bytes) -> None:
        if data:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

    def end_chunks(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def shrink_send_buffer(self) -> None:
        """Make writes block early, so what the peer did not read is not hidden in buffers."""
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16 * 1024)

    def log_message(self, format: str, *args: object) -> None:
        """Keep test output quiet."""


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def media_server() -> Iterator[MediaServer]:
    server = MediaServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An embedded data dir (not made yet) that commands run in-process use: MMSGATE_DATA_DIR
    points at it, and no MMSGATE_DATABASE_URL points elsewhere."""
    monkeypatch.delenv("MMSGATE_DATABASE_URL", raising=False)
    monkeypatch.setenv("MMSGATE_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"
