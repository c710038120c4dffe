"""`mmsgate postbacks …`: list postbacks, and queue again those that gave up."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Awaitable, Mapping
from typing import Annotated

import typer
from rich.table import Table

from mmsgate.api.requests import parse_timestamp
from mmsgate.cli_support import ConfigOpt, DataDirOpt, fail, load_settings, out, with_db
from mmsgate.models import JSONValue, PostbackFormat
from mmsgate.pipeline import postbacks
from mmsgate.store import accounts
from mmsgate.store import jobs as jobs_store
from mmsgate.store.db import Database
from mmsgate.store.jobs import QueuedPostback
from mmsgate.store.startup import Schema

postbacks_app = typer.Typer(help="Inspect and replay postbacks.", no_args_is_help=True)


def _account_id(db: Database, name: str | None) -> Awaitable[int | None]:
    async def find() -> int | None:
        if name is None:
            return None
        found = await accounts.by_name(db, name)
        if found is None:
            fail(f"no account named {name!r}")
        return found.id

    return find()


@postbacks_app.command("list")
def postbacks_list(
    account: Annotated[str | None, typer.Option("--account", help="Only this account's.")] = None,
    failed: Annotated[
        bool, typer.Option("--failed", help="Only those that gave up (dead).")
    ] = False,
    limit: Annotated[int, typer.Option("--limit")] = 50,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """List postbacks, newest first, with their state, attempts and last error."""
    cfg = load_settings(config, data_dir)

    async def go(db: Database) -> tuple[list[QueuedPostback], dict[object, PostbackFormat]]:
        found = await jobs_store.postbacks(
            db, await _account_id(db, account), failed_only=failed, since=None, limit=limit
        )
        return found, {a.id: a.postback_format for a in await accounts.list_all(db)}

    rows, formats = with_db(cfg, go, schema=Schema.READY)
    if as_json:
        xml = PostbackFormat.XML
        print(json.dumps([_postback_json(r, formats.get(r.account_id, xml)) for r in rows]))
        return
    table = Table("id", "account", "state", "attempts", "created", "last error")
    for r in rows:
        table.add_row(
            str(r.id),
            str(r.account_id),
            r.state.value,
            str(r.attempts),
            r.created_at.isoformat(timespec="seconds"),
            (r.last_error or "")[:60],
        )
    out.print(table)


def _postback_json(row: QueuedPostback, form: PostbackFormat) -> dict[str, object]:
    return {
        "id": row.id,
        "account_id": row.account_id,
        "state": row.state.value,
        "attempts": row.attempts,
        "created_at": row.created_at.isoformat(),
        "last_error": row.last_error,
        "body": _body(row.payload or {}, form),
    }


def _body(payload: Mapping[str, JSONValue], form: PostbackFormat) -> str | None:
    """The body the postback sends (its event rendered in the account's format, or as an
    earlier version stored it)."""
    if "event" not in payload and "body" not in payload:
        return None
    return postbacks.body_of(payload, form)[0].decode("utf-8")


@postbacks_app.command("replay")
def postbacks_replay(
    since: Annotated[str, typer.Option("--since", help="ISO 8601 date or date-time.")],
    account: Annotated[str | None, typer.Option("--account", help="Only this account's.")] = None,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Queue again every postback that gave up since a time (a worker sends them)."""
    cfg = load_settings(config, data_dir)
    start = parse_timestamp(since)
    if start is None:
        fail(f"--since: not an ISO 8601 date or date-time: {since!r}", code=2)

    async def go(db: Database) -> int:
        now = dt.datetime.now(dt.UTC)
        return await jobs_store.replay_postbacks(db, await _account_id(db, account), start, now)

    out.print(f"{with_db(cfg, go, schema=Schema.READY)} postbacks queued again")
