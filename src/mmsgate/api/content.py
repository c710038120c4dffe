"""Slide content at accept time: fetch every media URL, check it, keep its bytes.

Also keeps a short-lived cache of ready templates for the sendSavedMMS hot path; the
writer re-checks a template's state inside the transaction that stores the send, so the
cache can only make an answer faster, never wrong.
"""

from __future__ import annotations

import dataclasses
import time

import anyio

from mmsgate import errors, models
from mmsgate.api.rules import Content
from mmsgate.media import fetch, inspect
from mmsgate.settings import MediaSettings
from mmsgate.store import queries
from mmsgate.store.blobs import BlobStore, blob_key
from mmsgate.store.db import Database

TEMPLATE_CACHE_SECONDS = 5.0


@dataclasses.dataclass(frozen=True, slots=True)
class StoredContent:
    """Slides ready to be written into a template row."""

    slides: list[dict[str, models.JSONValue]]
    total_size: int
    has_av: bool


class DbFetchCache:
    """Remembers what each URL served (validators in the database, bytes in the blob store)."""

    def __init__(self, db: Database, blobs: BlobStore) -> None:
        self._db = db
        self._blobs = blobs

    async def lookup(self, url: str) -> fetch.CachedCopy | None:
        row = await queries.cached_media(self._db, url)
        if row is None or not await self._blobs.exists(row.blob_key):
            return None
        data = await self._blobs.get(row.blob_key)
        return fetch.CachedCopy(data, row.content_type, row.etag, row.last_modified)

    async def remember(self, fetched: fetch.Fetched) -> None:
        key = await self._blobs.put(fetched.data)
        await queries.remember_media(
            self._db,
            fetched.url,
            etag=fetched.etag,
            last_modified=fetched.last_modified,
            content_type=fetched.content_type,
            blob_key=key,
            size=len(fetched.data),
        )


class ContentStore:
    """Turns requested slides into stored slides, and answers template look-ups quickly."""

    def __init__(
        self, db: Database, blobs: BlobStore, fetcher: fetch.Fetcher, settings: MediaSettings
    ) -> None:
        self._db = db
        self._blobs = blobs
        self._fetcher = fetcher
        self._settings = settings
        self._templates: dict[tuple[int, int], tuple[models.TemplateInfo, float]] = {}

    async def store(
        self, content: Content, account_id: int, *, use_cache: bool = True
    ) -> StoredContent:
        """Fetch and check all media of the slides (E33x, E34x, E35x, E229, E629), keep it.
        The fetches count against the account's share (`media.max_fetches_per_account`).
        `use_cache` false (cache-content false): every URL is fetched anew, bypassing the
        fetch cache both ways."""
        stored, data = await self.check(content, account_id, use_cache=use_cache)
        for blob in data.values():
            await self._blobs.put(blob)
        return stored

    async def check(
        self, content: Content, account_id: int, *, use_cache: bool = True
    ) -> tuple[StoredContent, dict[str, bytes]]:
        """Fetch and check all media without keeping anything: the slides as they would be
        stored, and the bytes by blob key."""
        refs = [(n, ref) for n, s in enumerate(content.slides, start=1) for ref in s.media]
        fetched = await fetch.fetch_all(
            self._fetcher, refs, account=account_id, use_cache=use_cache
        )
        parts: list[models.StoredPart] = [None] * len(refs)  # type: ignore[list-item]
        problems: dict[int, errors.ApiError] = {}

        async def check_one(i: int) -> None:
            (slide_no, ref), got = refs[i], fetched[i]
            try:
                found = await anyio.to_thread.run_sync(
                    inspect.inspect, ref.kind, got.data, got.content_type, slide_no, self._settings
                )
            except errors.ApiError as exc:
                problems[i] = exc
                return
            parts[i] = models.StoredPart(
                kind=ref.kind,
                url=ref.url,
                blob_key=blob_key(got.data),
                content_type=found.content_type,
                size=len(got.data),
                width=found.width,
                height=found.height,
                duration_ms=found.duration_ms,
                codecs=found.codecs,
            )

        async with anyio.create_task_group() as group:
            for i in range(len(refs)):
                group.start_soon(check_one, i)
        if problems:
            raise problems[min(problems)]  # the earliest slide's problem, whatever finished first
        return _stored(content, parts), {
            p.blob_key: f.data for p, f in zip(parts, fetched, strict=True)
        }

    async def template(self, account_id: int, mms_id: int) -> models.TemplateInfo | None:
        now = time.monotonic()
        cached = self._templates.get((account_id, mms_id))
        if cached is not None and cached[1] > now:
            return cached[0]
        info = await queries.template_info(self._db, account_id, mms_id)
        if info is not None and info.state is models.TemplateState.READY:
            if len(self._templates) > 10_000:
                self._templates.clear()
            self._templates[(account_id, mms_id)] = (info, now + TEMPLATE_CACHE_SECONDS)
        return info

    def forget(self, account_id: int, mms_id: int) -> None:
        self._templates.pop((account_id, mms_id), None)

    async def aclose(self) -> None:
        await self._fetcher.aclose()


def _stored(content: Content, parts: list[models.StoredPart]) -> StoredContent:
    slides: list[dict[str, models.JSONValue]] = []
    it, total, has_av = iter(parts), 0, False
    for spec in content.slides:
        mine = [next(it) for _ in spec.media]
        total += sum(p.size for p in mine) + len((spec.text or "").encode("utf-8"))
        has_av = has_av or any(
            p.kind in (models.MediaKind.AUDIO, models.MediaKind.VIDEO) for p in mine
        )
        slides.append(
            {
                "text": spec.text,
                "duration": spec.duration,
                "parts": [_part_json(p) for p in mine],
            }
        )
    return StoredContent(slides, total, has_av)


def _part_json(part: models.StoredPart) -> dict[str, models.JSONValue]:
    data: dict[str, models.JSONValue] = dataclasses.asdict(part)
    data["kind"] = part.kind.value
    data["codecs"] = list(part.codecs)
    return data
