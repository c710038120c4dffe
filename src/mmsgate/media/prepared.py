"""Messages prepared recently, by template, carrier profile and personalisation: a template
sent to many numbers is composed once per worker, not once per recipient.

A batch sent to thousands starts hundreds of deliveries at once: the first asks for the
preparation and the others await the same one (a preparation in flight is shared, and a
caller cancelled meanwhile leaves it to the rest). A failed preparation is forgotten, so a
later delivery tries again. The cache keeps at most `kept` entries, dropping the oldest.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from mmsgate.media.prepare import Prepared
from mmsgate.profiles import CarrierProfile

# The template (None for a send without one), the profile, and the personalised slides as
# canonical JSON.
PreparedKey = tuple[int | None, CarrierProfile, str]

PREPARED_KEPT = 256


class PreparedCache:
    """Preparations by key, shared while in flight, at most `kept` of them."""

    def __init__(self, kept: int = PREPARED_KEPT) -> None:
        if kept < 1:
            raise ValueError("a prepared-message cache keeps at least one entry")
        self.kept = kept
        self._entries: dict[PreparedKey, asyncio.Future[Prepared]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, key: PreparedKey, make: Callable[[], Awaitable[Prepared]]) -> Prepared:
        """The preparation for `key`: the one kept or in flight, else `make()`'s."""
        found = self._entries.get(key)
        if found is None:
            found = asyncio.ensure_future(make())
            if len(self._entries) >= self.kept:
                self._entries.pop(next(iter(self._entries)))
            self._entries[key] = found
        try:
            return await asyncio.shield(found)  # a cancelled delivery leaves it to the rest
        except Exception:
            if self._entries.get(key) is found:
                del self._entries[key]
            raise
