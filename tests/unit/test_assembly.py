"""Building the system (`assembly`) apart from the command line and from the schema's set-up."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import httpx
import pytest

from mmsgate import assembly, models, settings
from mmsgate.carriers.mm7 import Mm7Carrier
from mmsgate.carriers.smpp import SmppConnector
from mmsgate.pipeline.worker import FOREVER
from mmsgate.store import startup
from mmsgate.store.db import Database

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
    assert worker.deps.http.is_closed


async def test_aclose_closes_everything_the_deps_own(tmp_path: Path) -> None:
    """aclose closes every carrier and connector, the HTTP client and the database, even
    when one of them fails to close; that first failure is raised after."""
    closed: list[str] = []
    deps = assembly.build_deps(settings.load(None, {}, data_dir=tmp_path))
    await deps.aclose()  # the real ones close (the embedded database was never opened)
    deps = dataclasses.replace(
        deps,
        db=Database(settings.load(None, {}, data_dir=tmp_path).db_url),
        http=httpx.AsyncClient(),
        carriers={"a": Closing(closed, "a", fails=True), "b": Closing(closed, "b")},  # type: ignore[dict-item]
        sms_connectors={"s": Closing(closed, "s")},  # type: ignore[dict-item]
    )
    with pytest.raises(OSError, match="a would not close"):
        await deps.aclose()
    assert closed == ["a", "b", "s"]
    assert deps.http.is_closed
