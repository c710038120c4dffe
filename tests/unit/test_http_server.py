"""The guard around every HTTP request (mmsgate/http_server.py), against a scripted client:
bodies read within their limit, early answers closing the connection, and a client that
leaves stopping its request until the request begins to commit."""

from __future__ import annotations

import asyncio

import pytest
from starlette.requests import Request
from starlette.types import Message, Receive, Scope, Send

from mmsgate import errors, http_server
from mmsgate.http_server import ClientLeft

pytestmark = pytest.mark.anyio


class Client:
    """The server side of one connection as an ASGI app sees it: body chunks, then (when
    told) the client's leaving; and the messages the app sent back."""

    def __init__(self, *chunks: bytes) -> None:
        self.chunks = list(chunks)
        self.received = 0
        self.gone = asyncio.Event()
        self.sent: list[Message] = []

    async def receive(self) -> Message:
        if self.chunks:
            self.received += 1
            chunk = self.chunks.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": bool(self.chunks)}
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        self.sent.append(message)


def scope(**headers: str) -> Scope:
    return {
        "type": "http",
        "method": "POST",
        "path": "/",
        "headers": [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()],
    }


async def answer(send: Send, status: int = 200) -> None:
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


class TestReadBody:
    async def test_a_declared_length_over_the_limit_is_refused_before_any_read(self) -> None:
        """A Content-Length over the limit raises BodyTooLarge without reading the body."""
        client = Client(b"x" * 10)
        request = Request(scope(content_length="11"), client.receive)
        with pytest.raises(errors.BodyTooLarge):
            await http_server.read_body(request, 10)
        assert client.received == 0

    async def test_a_stream_is_refused_at_the_chunk_that_passes_the_limit(self) -> None:
        """A body without a length is refused at the chunk that passes the limit, the rest
        left unread."""
        client = Client(b"x" * 6, b"x" * 6, b"x" * 6)
        request = Request(scope(transfer_encoding="chunked"), client.receive)
        with pytest.raises(errors.BodyTooLarge):
            await http_server.read_body(request, 10)
        assert client.received == 2

    async def test_a_body_within_the_limit_is_returned_whole(self) -> None:
        """A body of exactly the limit comes back whole."""
        client = Client(b"ab", b"cd", b"")
        assert await http_server.read_body(Request(scope(), client.receive), 4) == b"abcd"


class TestGuard:
    async def test_an_answer_before_the_body_is_read_closes_the_connection(self) -> None:
        """An app answering without reading a body has `connection: close` added."""
        client = Client(b"x" * 100, b"x")

        async def app(_scope: Scope, _receive: Receive, send: Send) -> None:
            await answer(send, 413)

        left = await http_server.guard(
            app, scope(content_length="101"), client.receive, client.send
        )
        assert left is None
        assert (b"connection", b"close") in client.sent[0]["headers"]

    async def test_an_answer_after_the_body_keeps_the_connection(self) -> None:
        """An app that read the whole body answers on a connection that stays open."""
        client = Client(b"x")

        async def app(_scope: Scope, receive: Receive, send: Send) -> None:
            await http_server.read_body(Request(_scope, receive), 10)
            await answer(send)

        await http_server.guard(app, scope(content_length="1"), client.receive, client.send)
        assert (b"connection", b"close") not in client.sent[0]["headers"]

    async def test_a_client_leaving_before_the_commit_stops_the_request(self) -> None:
        """A client leaving after its request, while the app still works, cancels the app
        before it commits; nothing is answered."""
        client = Client(b"<request/>")
        working, reached_commit = asyncio.Event(), asyncio.Event()

        async def app(_scope: Scope, receive: Receive, send: Send) -> None:
            await http_server.read_body(Request(_scope, receive), 100)
            working.set()
            await asyncio.Event().wait()  # a media fetch that never ends
            reached_commit.set()

        async def leave() -> None:
            await working.wait()
            client.gone.set()

        asyncio.get_running_loop().create_task(leave())
        left = await http_server.guard(app, scope(content_length="10"), client.receive, client.send)
        assert left is ClientLeft.BEFORE_COMMIT
        assert not reached_commit.is_set()
        assert client.sent == []

    async def test_a_client_leaving_after_the_commit_began_lets_the_request_finish(
        self,
    ) -> None:
        """Once the app has called committing(), a client leaving changes nothing: the app
        runs to its end."""
        client = Client(b"<request/>")
        finished = asyncio.Event()

        async def app(_scope: Scope, receive: Receive, send: Send) -> None:
            await http_server.read_body(Request(_scope, receive), 100)
            http_server.committing()
            client.gone.set()
            for _ in range(5):  # the commit's own awaits
                await asyncio.sleep(0)
            finished.set()
            await answer(send)

        left = await http_server.guard(app, scope(content_length="10"), client.receive, client.send)
        assert left is ClientLeft.AFTER_COMMIT
        assert finished.is_set()

    async def test_a_client_leaving_while_sending_is_told(self) -> None:
        """A client that leaves half-way through its body is reported as such."""
        client = Client()
        messages: list[Message] = [
            {"type": "http.request", "body": b"<req", "more_body": True},
            {"type": "http.disconnect"},
        ]

        async def receive() -> Message:
            return messages.pop(0)

        async def app(_scope: Scope, receive: Receive, _send: Send) -> None:
            await http_server.read_body(Request(_scope, receive), 100)

        left = await http_server.guard(app, scope(content_length="99"), receive, client.send)
        assert left is ClientLeft.WHILE_SENDING
        assert client.sent == []

    async def test_another_cancellation_still_cancels(self) -> None:
        """A cancellation that is not the guard's own (a server shutting down) goes through."""
        client = Client(b"x")

        async def app(_scope: Scope, receive: Receive, _send: Send) -> None:
            await receive()
            await asyncio.Event().wait()

        task = asyncio.get_running_loop().create_task(
            http_server.guard(app, scope(content_length="1"), client.receive, client.send)
        )
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
