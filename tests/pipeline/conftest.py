"""Fixtures of the pipeline tests: a migrated database of each backend and a hand-moved clock."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator

import pytest

from mmsgate import settings as settings_mod
from mmsgate.store.db import Database

T0 = dt.datetime(2026, 1, 5, 12, 0, tzinfo=dt.UTC)  # in the past, so jobs made at T0 are due


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> dt.datetime:
        return self.now


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = Database(settings_mod.normalize_database_url(db_url))
    await database.migrate()
    yield database
    await database.close()
