"""What every HTTP server of mmsgate does with a request's body and with a client that leaves.

- `read_body`: the one way a route reads a body. A Content-Length over the route's limit is
  refused before a byte of the body is read (so an `Expect: 100-continue` client is never
  told to send it); a body without one (chunked) is counted as it streams in and refused the
  moment it passes the limit. At most the limit is ever held in memory.
- `Guarded`: wraps an ASGI app. An answer sent before the request's body was read to its end
  (refused as too large, unauthenticated, a route that reads no body) closes the connection
  (`Connection: close`): otherwise the server would go on reading, and throwing away, the
  rest of an upload of any size just to keep the connection alive.
- A client that closes its connection after sending the whole request but before the answer
  stops the request's work (it is cancelled), unless the work has reached its commit: code
  that is about to write calls `committing()` first, and from then on the request runs to its
  end (so what is written is whole, and what the client asked for is done) and its answer is
  dropped. `Guarded` tells the caller which of these happened (`ClientLeft`).

The timeouts and the per-client connection cap live a level below, in the server's protocol
(http_protocol.py): an ASGI app only sees a request once its head has arrived.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import enum

from starlette.requests import ClientDisconnect, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mmsgate.errors import BodyTooLarge

CLOSE = (b"connection", b"close")


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, or BodyTooLarge as soon as it is known to be over `limit` bytes.

    Raises starlette's ClientDisconnect when the client leaves while sending it."""
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit)
        chunks.append(chunk)
    return b"".join(chunks)


class ClientLeft(enum.Enum):
    """When a client closed its connection, if it did before its answer was sent."""

    WHILE_SENDING = "while sending the request"
    BEFORE_COMMIT = "before the answer; the request was stopped, nothing was stored"
    AFTER_COMMIT = "after the request had begun to commit; it ran to its end, the answer was lost"


@dataclasses.dataclass(slots=True)
class _Exchange:
    """One request's state as `Guarded` follows it."""

    task: asyncio.Task[object] | None
    has_body: bool
    body_read: bool = False
    answered: bool = False
    committing: bool = False
    left: ClientLeft | None = None
    watcher: asyncio.Task[Message] | None = None


_current: contextvars.ContextVar[_Exchange | None] = contextvars.ContextVar(
    "mmsgate_http_exchange", default=None
)


def committing() -> None:
    """From here on the current request writes: it is no longer stopped when its client
    leaves (outside a guarded request, nothing happens)."""
    current = _current.get()
    if current is not None:
        current.committing = True


class Guarded:
    """An ASGI app whose requests are guarded as the module docstring says."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await guard(self.app, scope, receive, send)


async def guard(app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> ClientLeft | None:
    """Run one HTTP request through `app`; says whether (and when) its client left early."""
    exchange = _Exchange(asyncio.current_task(), _has_body(scope))
    token = _current.set(exchange)
    try:
        await app(scope, _receiving(exchange, receive), _sending(exchange, send))
    except asyncio.CancelledError:
        # Our own cancellation (the client left) ends here; any other goes on up.
        task = exchange.task
        if exchange.left is not ClientLeft.BEFORE_COMMIT or task is None or task.uncancel():
            raise
    except ClientDisconnect:
        exchange.left = ClientLeft.WHILE_SENDING
    finally:
        _current.reset(token)
        if exchange.watcher is not None:
            exchange.watcher.cancel()
    return exchange.left


def _has_body(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return value.strip() not in (b"0", b"")
        if name == b"transfer-encoding":
            return True
    return False


def _receiving(exchange: _Exchange, receive: Receive) -> Receive:
    async def receiving() -> Message:
        if exchange.watcher is not None:  # the body is read: the watcher has the channel
            return await asyncio.shield(exchange.watcher)
        message = await receive()
        if message["type"] == "http.disconnect":
            exchange.left = ClientLeft.WHILE_SENDING
        elif not message.get("more_body", False):
            exchange.body_read = True
            exchange.watcher = asyncio.create_task(_watch(exchange, receive))
        return message

    return receiving


async def _watch(exchange: _Exchange, receive: Receive) -> Message:
    """Wait for the one message left once the body is read: the client's leaving (the
    server also sends it once the answer is complete, which changes nothing then)."""
    message = await receive()
    if message["type"] == "http.disconnect" and not exchange.answered:
        if exchange.committing:
            exchange.left = ClientLeft.AFTER_COMMIT
        elif exchange.task is not None:
            exchange.left = ClientLeft.BEFORE_COMMIT
            exchange.task.cancel()
    return message


def _sending(exchange: _Exchange, send: Send) -> Send:
    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            exchange.answered = True
            if exchange.has_body and not exchange.body_read:
                message = {**message, "headers": [*message.get("headers", ()), CLOSE]}
        await send(message)

    return sending
