"""What a command checks before it starts: the database answers and its schema is current,
the data dir can be written. Each failure is a StartupError whose message says the fix."""

from __future__ import annotations

import asyncio
import enum
import os
import uuid
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from mmsgate.errors import StartupError
from mmsgate.store.db import Database

# A host that drops packets is reported well before a user gives up (see also the
# PostgreSQL engine's own connect timeout, `db.CONNECT_SECONDS`).
CONNECT_SECONDS = 12.0


class Schema(enum.Enum):
    """What a command asks of the schema before its work (`set_up`)."""

    MIGRATE = "migrate"  # apply every revision not applied yet, on either backend
    # The embedded SQLite is brought up to date (it is this process's own, so nobody else
    # would run `mmsgate migrate` for it); PostgreSQL must be at the newest revision already.
    READY = "ready"


async def set_up(db: Database, schema: Schema) -> list[str]:
    """Set up the schema as `schema` asks; the revisions applied."""
    if schema is Schema.MIGRATE or db.embedded:
        return await migrate(db)
    await check_database(db)
    return []


async def check_database(db: Database) -> None:
    """Connect, and require the schema at the newest revision (`mmsgate migrate`)."""
    try:
        current, head = await asyncio.wait_for(db.revisions(), CONNECT_SECONDS)
    except Exception as exc:
        raise StartupError(describe_failure(db.url, exc)) from exc
    if current is None:
        raise StartupError(
            f"database {where(db.url)} has no mmsgate schema: run `mmsgate migrate` first"
        )
    if current != head:
        raise StartupError(
            f"database {where(db.url)} is at schema revision {current}, this mmsgate needs "
            f"{head}: run `mmsgate migrate` (with this version of mmsgate)"
        )


async def migrate(db: Database) -> list[str]:
    """`db.migrate()`, a failure to reach the database told as a StartupError."""
    try:
        return await db.migrate()
    except Exception as exc:
        raise StartupError(describe_failure(db.url, exc)) from exc


def describe_failure(url: str, exc: BaseException) -> str:
    """One line for a failed connection or statement: where, and the driver's reason."""
    if isinstance(exc, TimeoutError):
        reason = f"no answer within {CONNECT_SECONDS:.0f} s"
    elif isinstance(exc, sa.exc.DBAPIError) and exc.orig is not None:
        reason = str(exc.orig)
    elif isinstance(exc, OSError) and exc.strerror:
        reason = exc.strerror
    else:
        reason = str(exc) or type(exc).__name__
    reason = reason.strip().splitlines()[0] if reason.strip() else type(exc).__name__
    return (
        f"cannot use the database {where(url)}: {reason}; "
        "check MMSGATE_DATABASE_URL (or database_url in the config file)"
    )


def where(url: str) -> str:
    """The URL without its password, for messages."""
    return make_url(url).render_as_string(hide_password=True)


def check_data_dir(path: Path) -> None:
    """The data dir exists (or is created) and a file can be written in it."""
    probe = path / f".write-check-{uuid.uuid4().hex}"
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        os.unlink(probe)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        if isinstance(exc, FileExistsError) or path.is_file():
            reason = "it is a file, not a folder"
        raise StartupError(
            f"data dir {path}: cannot be written ({reason}); choose another with --data-dir "
            "or MMSGATE_DATA_DIR"
        ) from None
