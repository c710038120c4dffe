"""uvicorn's HTTP protocol with what it lacks against slow and greedy clients: timeouts on
reading a request, and a cap on the connections one address may hold open.

uvicorn times out only the idle wait between two requests (`timeout_keep_alive`), and only
until the next byte: a connection that never sends a byte, sends half a request line, or
stops half-way through a body is held for ever, and a client trickling one byte at a time
(slowloris) holds as many as it opens. An ASGI app cannot help: it runs only once the head
is in. So the protocol itself keeps one deadline per connection:

- the head (request line and headers) must be complete within `read_timeout` of the
  connection opening, or of the first byte of the next request on a kept-alive connection;
- the body may pause no longer than `read_timeout` and must be whole within `body_timeout`
  of the end of the head. While the server has paused reading (the app is not consuming the
  body yet, or a pipelined request waits its turn) the wait is ours, not the client's, and
  no time-out is counted against it.

A head (request line and headers) over `max_head_bytes` is answered `431` and closed:
httptools would buffer it whole, however long.

On time-out a connection that sent part of a request gets `408 Request Timeout` (unless an
answer has begun) and is closed; one that sent nothing is just closed. A connection from an
address that already holds `max_per_client` is answered `429 Too Many Requests` and closed
at once, before anything of it is read; the count is per server process (so per
`serve --workers` process), and 0 turns the cap off. Behind a reverse proxy every client
has the proxy's address: raise the cap there, or let the proxy do it.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
from typing import Any

import structlog
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = structlog.get_logger(__name__)


@dataclasses.dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """What one connection may take of the server (seconds, connections)."""

    read_timeout: float = 10.0
    body_timeout: float = 60.0
    max_per_client: int = 0  # open connections from one address; 0: no cap
    # The request line and headers together (httptools buffers them whole): real ones are
    # a few hundred bytes, and 64 KiB is far above any client's (nginx: 4 x 8 KiB).
    max_head_bytes: int = 64 * 1024


class ClientCounts:
    """Open connections per client address, in one server process."""

    def __init__(self) -> None:
        self.open: collections.Counter[str] = collections.Counter()
        self.refusing: set[str] = set()  # addresses at their cap: logged once, not per refusal

    def admit(self, host: str, cap: int) -> bool:
        if self.open[host] >= cap:
            if host not in self.refusing:
                self.refusing.add(host)
                log.warning("http.connections_capped", client=host, open=self.open[host])
            return False
        self.open[host] += 1
        return True

    def release(self, host: str) -> None:
        self.open[host] -= 1
        if self.open[host] <= 0:
            del self.open[host]
        self.refusing.discard(host)


class ServerConfig(uvicorn.Config):
    """A uvicorn.Config serving with `GuardedProtocol` under `limits`. It is picklable, as
    `serve --workers N` hands it to each process, and each process counts on its own."""

    def __init__(self, app: Any, *, limits: ConnectionLimits, **kwargs: Any) -> None:
        super().__init__(app, http=GuardedProtocol, **kwargs)
        self.limits = limits
        self.client_counts = ClientCounts()


def _response(status: bytes, text: str) -> bytes:
    body = text.encode("ascii")
    return b"".join(
        [
            b"HTTP/1.1 " + status + b"\r\n",
            b"content-type: text/plain; charset=utf-8\r\n",
            b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
            b"connection: close\r\n\r\n",
            body,
        ]
    )


class GuardedProtocol(HttpToolsProtocol):
    """HttpToolsProtocol with the deadlines and the cap of the module docstring."""

    def __init__(self, config: uvicorn.Config, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        self.limits: ConnectionLimits = getattr(config, "limits", ConnectionLimits())
        self.counts: ClientCounts = getattr(config, "client_counts", ClientCounts())
        self._counted: str | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._phase = "head"
        self._head_until = 0.0
        self._idle_until = 0.0
        self._body_until = 0.0
        self._heard = False  # any byte of the current request
        self._head_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        host = self.client[0] if self.client else None
        cap = self.limits.max_per_client
        if host is not None and cap:
            if not self.counts.admit(host, cap):
                text = f"too many connections from {host} (at most {cap}); try again later\n"
                transport.write(_response(b"429 Too Many Requests", text))
                transport.close()
                return
            self._counted = host
        self._start_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_timer()
        if self._counted is not None:
            self.counts.release(self._counted)
            self._counted = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._phase == "head":
            self._head_bytes += len(data)
        super().data_received(data)
        over = self._phase == "head" and self._head_bytes > self.limits.max_head_bytes
        if over and not self.transport.is_closing():
            log.info("http.head_too_large", client=self.client[0] if self.client else None)
            text = f"request head over {self.limits.max_head_bytes} bytes\n"
            self.transport.write(_response(b"431 Request Header Fields Too Large", text))
            self.transport.close()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._heard = True
        if self._phase != "head":  # the next request on a kept-alive connection
            self._start_head()

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        now = self.loop.time()
        self._phase = "body"
        self._idle_until = now + self.limits.read_timeout
        self._body_until = now + self.limits.body_timeout
        self._schedule(self.limits.read_timeout)

    def on_body(self, body: bytes) -> None:
        self._idle_until = self.loop.time() + self.limits.read_timeout
        super().on_body(body)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._phase = "done"
        self._heard = False
        self._stop_timer()

    def _start_head(self) -> None:
        self._phase = "head"
        self._head_bytes = 0
        self._head_until = self.loop.time() + self.limits.read_timeout
        self._schedule(self.limits.read_timeout)

    def _schedule(self, delay: float) -> None:
        self._stop_timer()
        self._timer = self.loop.call_later(max(delay, 0.0), self._check)

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _check(self) -> None:
        """The deadline of the current phase, checked when it may have passed."""
        self._timer = None
        if self.transport is None or self.transport.is_closing() or self._phase == "done":
            return
        now = self.loop.time()
        if self.flow.read_paused:  # we are not reading: no time runs against the client
            self._head_until = self._idle_until = now + self.limits.read_timeout
            self._body_until = max(self._body_until, self._idle_until)
            self._schedule(self.limits.read_timeout)
            return
        if self._phase == "head":
            late, due = "the head took too long", self._head_until
        elif self._idle_until <= self._body_until:
            late, due = "the body paused too long", self._idle_until
        else:
            late, due = "the body took too long", self._body_until
        if now < due:
            self._schedule(due - now)
            return
        self._time_out(late)

    def _time_out(self, late: str) -> None:
        client = self.client[0] if self.client else None
        log.info("http.read_timeout", client=client, reason=late, heard=self._heard)
        cycle = self.cycle
        answering = cycle is not None and cycle.response_started and not cycle.response_complete
        if cycle is not None and not cycle.response_complete:
            # The app, waiting for the rest of the body, hears that the client is gone.
            cycle.disconnected = True
            cycle.message_event.set()
        if self._heard and not answering:
            text = f"request timeout: {late}\n"
            self.transport.write(_response(b"408 Request Timeout", text))
        self.transport.close()
