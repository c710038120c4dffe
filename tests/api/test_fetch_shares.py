"""Media fetches are shared fairly: one account's hanging media server (or several accounts'
on one hanging host) cannot make another account's send wait."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import pytest

from mmsgate.store import accounts
from tests import samples
from tests.api.helpers import failure_code
from tests.api.test_errors import send_mms
from tests.conftest import Gateway, MediaServer

pytestmark = pytest.mark.anyio
DEADLINE = 20.0  # seconds: generous; the victim's send takes well under one


@dataclasses.dataclass
class HangingHost:
    """A media server on loopback that reads each GET and answers nothing until released
    (then 404); counts the connections open now and at most."""

    base: str = ""
    open: int = 0
    most_open: int = 0
    released: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    changed: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    serving: set[asyncio.Task[Any]] = dataclasses.field(default_factory=set)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.serving.add(task)
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        self.changed.set()
        try:
            await reader.readuntil(b"\r\n\r\n")
            await self.released.wait()
            writer.write(
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.open -= 1
            writer.close()

    async def until_open(self, count: int) -> None:
        async with asyncio.timeout(DEADLINE):
            while self.open < count:
                self.changed.clear()
                await self.changed.wait()


@contextlib.asynccontextmanager
async def hanging_host() -> AsyncIterator[HangingHost]:
    host = HangingHost()
    server = await asyncio.start_server(host.serve, "127.0.0.1", 0)
    host.base = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        yield host
    finally:
        host.released.set()
        server.close()
        for task in host.serving:
            task.cancel()
        await asyncio.gather(*host.serving, return_exceptions=True)


def eight_images(base: str, first: int) -> str:
    return "".join(
        f"<slide><image><url>{base}/{n}.jpg</url></image></slide>" for n in range(first, first + 8)
    )


@pytest.mark.media(total_timeout=60.0, max_concurrent_fetches=16)
@pytest.mark.parametrize("hanging_accounts", [1, 2])
async def test_hanging_media_of_other_accounts_does_not_delay_a_send(
    gateway: Gateway, media_server: MediaServer, hanging_accounts: int
) -> None:
    """While one account (or two) has 48 media URLs hanging on one server, another
    account's send with valid media is accepted at once; the hanging server never holds
    more than one account's share, nor more than its host's share."""
    db = gateway.services.db
    keys = [(gateway.api_key, "28444")]
    if hanging_accounts == 2:
        second = await accounts.create(db, "second", senders=["3333"])
        assert second is not None
        keys.append((second.api_key, "3333"))
    victim = await accounts.create(db, "victim", senders=["5555"])
    assert victim is not None
    image = media_server.add("/ok.jpg", "image/jpeg", samples.jpeg())
    async with hanging_host() as host:
        stuck = [
            asyncio.create_task(gateway.xml(send_from(key, sender, eight_images(host.base, 8 * n))))
            for key, sender in keys
            for n in range(6)
        ]
        settings = gateway.services.settings.media
        await host.until_open(min(settings.max_fetches_per_host, 8 * len(keys)))
        valid = send_from(
            victim.api_key, "5555", f"<slide><image><url>{image}</url></image></slide>"
        )
        async with asyncio.timeout(DEADLINE):
            answer = await gateway.xml(valid)
        assert "<status>Success</status>" in answer.text, answer.text
        assert not any(task.done() for task in stuck)  # still hanging meanwhile
        assert host.most_open <= settings.max_fetches_per_account
        assert host.most_open <= settings.max_fetches_per_host
        host.released.set()
        for response in await asyncio.gather(*stuck):
            assert failure_code(response.content) == "E351"


def send_from(key: str, sender: str, slides: str) -> str:
    return send_mms(key, slides).replace("<from>28444</from>", f"<from>{sender}</from>")
