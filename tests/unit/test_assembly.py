"""Building the system (`assembly`) apart from the command line and from the schema's set-up."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from pathlib import Path

import pytest

from mmsgate import assembly, models, settings
from mmsgate.carriers.mm7 import Mm7Carrier
from mmsgate.carriers.smpp import SmppConnector
from mmsgate.pipeline.worker import FOREVER
from mmsgate.store import accounts, startup
from mmsgate.store.db import Database
from mmsgate.store.jobs import new_job
from mmsgate.store.schema import jobs

pytestmark = pytest.mark.anyio


async def test_building_a_worker_leaves_the_schema_alone(tmp_path: Path) -> None:
    """A worker built on a fresh embedded database has simulator carriers and no schema yet."""
    cfg = settings.load(None, {}, data_dir=tmp_path)
    worker = assembly.build_worker(cfg)
    try:
        assert isinstance(worker.deps.carriers["simulator"], Mm7Carrier)
        assert [type(c) for c in worker.deps.sms_connectors.values()] == [SmppConnector]
        current, _head = await worker.db.revisions()
    finally:
        await assembly.stop_pipeline(worker)
    assert current is None


async def test_ready_schema_migrates_the_embedded_database(tmp_path: Path) -> None:
    """`Schema.READY` brings a fresh SQLite to the newest revision, and then applies nothing."""
    db = Database(settings.load(None, {}, data_dir=tmp_path).db_url)
    try:
        assert await startup.set_up(db, startup.Schema.READY)
        current, head = await db.revisions()
        assert current == head
        assert await startup.set_up(db, startup.Schema.READY) == []
    finally:
        await db.close()


class Closing:
    """A carrier or SMS connector that notes when it is closed, and may fail to close."""

    def __init__(self, closed: list[str], name: str, fails: bool = False) -> None:
        self.closed, self.name, self.fails = closed, name, fails

    async def close(self) -> None:
        self.closed.append(self.name)
        if self.fails:
            raise OSError(f"{self.name} would not close")

    async def aclose(self) -> None:
        await self.close()


async def test_deps_are_built_complete_before_the_worker_starts(tmp_path: Path) -> None:
    """The worker's deps hold their carriers and SMS connectors from the start, read-only,
    and deliveries and fallback SMS are retried for as long as their steps ask."""
    worker = assembly.build_worker(settings.load(None, {}, data_dir=tmp_path))
    try:
        assert list(worker.deps.sms_connectors) == ["simulator-sms"]
        with pytest.raises(TypeError):
            worker.deps.sms_connectors["other"] = worker.deps.sms_connectors["simulator-sms"]  # type: ignore[index]
        with pytest.raises(dataclasses.FrozenInstanceError):
            worker.deps.sms_connectors = {}  # type: ignore[misc]
        for kind in (models.JobKind.DELIVER, models.JobKind.FALLBACK_SMS):
            assert worker.policies[kind] is FOREVER
    finally:
        await assembly.stop_pipeline(worker)


async def test_aclose_closes_everything_the_deps_own(tmp_path: Path) -> None:
    """aclose closes every carrier and connector, the postback sender and the database, even
    when one of them fails to close; that first failure is raised after."""
    closed: list[str] = []
    deps = assembly.build_deps(settings.load(None, {}, data_dir=tmp_path))
    await deps.aclose()  # the real ones close (the embedded database was never opened)
    deps = dataclasses.replace(
        deps,
        db=Database(settings.load(None, {}, data_dir=tmp_path).db_url),
        http=Closing(closed, "http"),  # type: ignore[arg-type]
        carriers={"a": Closing(closed, "a", fails=True), "b": Closing(closed, "b")},  # type: ignore[dict-item]
        sms_connectors={"s": Closing(closed, "s")},  # type: ignore[dict-item]
    )
    with pytest.raises(OSError, match="a would not close"):
        await deps.aclose()
    assert closed == ["a", "b", "s", "http"]


async def test_stopping_the_pipeline_closes_the_postback_connections(tmp_path: Path) -> None:
    """The keep-alive connection a postback opened to the customer is closed once the
    worker's pipeline stops, not left to the end of the process."""
    served, closed = asyncio.Event(), asyncio.Event()

    async def customer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        await reader.readexactly(length)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        served.set()
        await reader.read()  # b"" once the gateway closes its end
        closed.set()
        writer.close()

    listener = await asyncio.start_server(customer, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{listener.sockets[0].getsockname()[1]}/hook"
    cfg = settings.load(None, {}, data_dir=tmp_path)
    cfg = dataclasses.replace(
        cfg, media=dataclasses.replace(cfg.media, allow_private_networks=True)
    )
    worker = assembly.build_worker(cfg)
    try:
        await startup.set_up(worker.db, startup.Schema.READY)
        created = await accounts.create(worker.db, "acme", senders=["28444"], postback_url=url)
        assert created is not None
        payload = {"account_id": created.account.id, "body": "<postback/>"}
        job = new_job(models.JobKind.POSTBACK, dt.datetime.now(dt.UTC), payload=payload)
        async with worker.db.write() as conn:
            await conn.execute(jobs.insert(), [job])
        await worker.run_once()
        assert served.is_set()
    finally:
        await assembly.stop_pipeline(worker)
    async with asyncio.timeout(5):
        await closed.wait()
    listener.close()
    await listener.wait_closed()
