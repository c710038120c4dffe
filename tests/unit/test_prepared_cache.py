"""The prepared-message cache (`media.prepared`): one preparation per key, shared while in
flight, forgotten when it fails, and at most `kept` entries."""

from __future__ import annotations

import asyncio

import pytest

from mmsgate.media.prepare import Prepared
from mmsgate.media.prepared import PreparedCache, PreparedKey
from mmsgate.profiles import PROFILES

pytestmark = pytest.mark.anyio


def key(n: int) -> PreparedKey:
    return (n, PROFILES["default"], "[]")


def prepared(n: int) -> Prepared:
    return Prepared(f"p{n}", None, {"fits": False, "fallback": None})


async def test_callers_of_one_key_share_one_preparation() -> None:
    """Ten deliveries asking at once for one key start one preparation and get its result."""
    cache, started, release = PreparedCache(), [], asyncio.Event()

    async def make() -> Prepared:
        started.append(1)
        await release.wait()
        return prepared(1)

    waiting = [asyncio.ensure_future(cache.get(key(1), make)) for _ in range(10)]
    await asyncio.sleep(0)
    release.set()
    results = await asyncio.gather(*waiting)
    assert started == [1]
    assert {r.profile for r in results} == {"p1"}
    assert (await cache.get(key(1), make)).profile == "p1"
    assert started == [1]


async def test_a_failed_preparation_is_tried_again() -> None:
    """A preparation that raised is not kept: the next caller prepares anew."""
    cache, calls = PreparedCache(), []

    async def flaky() -> Prepared:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("transcoder down")
        return prepared(2)

    with pytest.raises(RuntimeError):
        await cache.get(key(2), flaky)
    assert (await cache.get(key(2), flaky)).profile == "p2"
    assert len(calls) == 2


async def test_the_cache_keeps_at_most_its_bound() -> None:
    """Past `kept` entries the oldest is dropped, and asked again it is prepared again."""
    cache, made = PreparedCache(kept=3), []

    def maker(n: int):  # type: ignore[no-untyped-def]
        async def make() -> Prepared:
            made.append(n)
            return prepared(n)

        return make

    for n in range(5):
        await cache.get(key(n), maker(n))
    assert len(cache) == 3
    await cache.get(key(4), maker(4))
    await cache.get(key(0), maker(0))
    assert made == [0, 1, 2, 3, 4, 0]
    with pytest.raises(ValueError, match="at least one"):
        PreparedCache(kept=0)
