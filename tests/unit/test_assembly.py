"""Building the system (`assembly`) apart from the command line and from the schema's set-up."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmsgate import assembly, settings
from mmsgate.carriers.mm7 import Mm7Carrier
from mmsgate.carriers.smpp import SmppConnector
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
