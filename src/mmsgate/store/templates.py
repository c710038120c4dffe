"""Template encoding: what the encode step reads and the one transaction that ends it, plus
the cache of transcoded parts."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from mmsgate import models
from mmsgate.store.db import Database
from mmsgate.store.schema import jobs, templates, transcodes


async def for_encoding(db: Database, template_id: int) -> Any:
    """The template row (account, slides, state), or None once deleted."""
    async with db.read() as conn:
        return (
            await conn.execute(
                sa.select(templates).where(
                    templates.c.id == template_id, templates.c.deleted_at.is_(None)
                )
            )
        ).first()


async def finish_encoding(
    db: Database,
    template_id: int,
    state: models.TemplateState,
    reports: dict[str, Any],
    postback: dict[str, Any] | None,
) -> None:
    """Record the outcome and queue its postback in one transaction."""
    async with db.write() as conn:
        await conn.execute(
            templates.update()
            .where(templates.c.id == template_id)
            .values(state=state.value, reports=reports)
        )
        if postback is not None:
            await conn.execute(jobs.insert().values(postback))


async def report(db: Database, account_id: int, template_id: int) -> Any:
    """State and per-profile reports of a live template of this account, or None."""
    async with db.read() as conn:
        return (
            await conn.execute(
                sa.select(templates.c.state, templates.c.reports, templates.c.kind).where(
                    templates.c.id == template_id,
                    templates.c.account_id == account_id,
                    templates.c.deleted_at.is_(None),
                )
            )
        ).first()


async def cached_transcode(db: Database, key: str) -> Any:
    async with db.read() as conn:
        return (await conn.execute(sa.select(transcodes).where(transcodes.c.key == key))).first()


async def remember_transcode(
    db: Database, key: str, output_key: str, content_type: str, report: dict[str, Any]
) -> None:
    """Keep a transcoded output. Two workers may make the same one at once: the first row
    stays and the second insert does nothing (both hold the same bytes)."""
    insert = postgresql.insert if db.url.startswith("postgresql") else sqlite.insert
    async with db.write() as conn:
        await conn.execute(
            insert(transcodes)
            .values(
                key=key,
                output_key=output_key,
                content_type=content_type,
                report=report,
                created_at=dt.datetime.now(dt.UTC),
            )
            .on_conflict_do_nothing(index_elements=[transcodes.c.key])
        )
