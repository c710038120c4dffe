"""Transcoded parts kept for every worker: outputs in the blob store, indexed in the
`transcodes` table, so a part transcoded once for a profile is never transcoded again."""

from __future__ import annotations

from mmsgate.media import prepare
from mmsgate.store import templates
from mmsgate.store.blobs import BlobStore
from mmsgate.store.db import Database


class StoreCache:
    """Transcoded parts kept in the blob store, indexed in the `transcodes` table."""

    def __init__(self, db: Database, blobs: BlobStore) -> None:
        self.db, self.blobs = db, blobs

    async def get(self, key: str) -> prepare.Output | None:
        row = await templates.cached_transcode(self.db, key)
        if row is None or not await self.blobs.exists(row.output_key):
            return None
        report = prepare.TranscodeReport.from_json(row.report)
        return prepare.Output(await self.blobs.get(row.output_key), row.content_type, report)

    async def put(self, key: str, output: prepare.Output) -> None:
        output_key = await self.blobs.put(output.data)
        await templates.remember_transcode(
            self.db, key, output_key, output.content_type, output.report.to_json()
        )
