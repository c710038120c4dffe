"""Content-addressed blob store: bytes are kept under their SHA-256, written durably.

Rows hold keys, never bytes. A blob is fsynced before its key is returned, so a database
commit that names it never points at something a power loss could take away.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Protocol

import anyio.to_thread


class BlobStore(Protocol):
    """Where media bytes live; every node of a deployment must reach the same store."""

    async def put(self, data: bytes) -> str: ...

    async def get(self, key: str) -> bytes: ...

    async def exists(self, key: str) -> bool: ...


def blob_key(data: bytes) -> str:
    """The key a blob is stored under: its SHA-256 in hex."""
    return hashlib.sha256(data).hexdigest()


class FileBlobStore:
    """Blobs as files under a folder, fanned out by the first two bytes of the key."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, key: str) -> Path:
        if len(key) != 64 or not all(c in "0123456789abcdef" for c in key):
            raise ValueError(f"not a blob key: {key!r}")
        return self.root / key[:2] / key[2:4] / key

    async def put(self, data: bytes) -> str:
        key = blob_key(data)
        await anyio.to_thread.run_sync(self._write, key, data)
        return key

    def _write(self, key: str, data: bytes) -> None:
        target = self.path(key)
        if target.exists():
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        dir_fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    async def get(self, key: str) -> bytes:
        return await anyio.to_thread.run_sync(self.path(key).read_bytes)

    async def exists(self, key: str) -> bool:
        return self.path(key).exists()
