"""Template encoding: what the encode step reads and the one transaction that ends it, plus
the cache of transcoded parts."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from mmsgate import models
from mmsgate.models import JSONValue
from mmsgate.store.db import Database
from mmsgate.store.rows import Row
from mmsgate.store.schema import jobs, templates, transcodes


@dataclasses.dataclass(frozen=True, slots=True)
class Template:
    """A stored template: whose, its content, and where its encoding is."""

    id: int
    account_id: int
    kind: str  # "saved" by saveMMS, "inline": the content of one sendMMS
    name: str
    subject: str | None
    state: models.TemplateState
    slides: tuple[models.StoredSlide, ...]
    client_reference: str | None = None  # saveMMS's, echoed in its N003/E00x postback


def template_of(row: Row) -> Template:
    """A row of the templates table as a Template."""
    return Template(
        id=row.id,
        account_id=row.account_id,
        kind=row.kind,
        name=row.name,
        subject=row.subject,
        state=models.TemplateState(row.state),
        slides=tuple(models.StoredSlide.from_data(slide) for slide in row.slides),
        client_reference=row.client_reference,
    )


async def for_encoding(db: Database, template_id: int) -> Template | None:
    """The template (account, slides, state), or None once deleted."""
    async with db.read() as conn:
        row = (
            await conn.execute(
                sa.select(templates).where(
                    templates.c.id == template_id, templates.c.deleted_at.is_(None)
                )
            )
        ).first()
    return None if row is None else template_of(row)


async def finish_encoding(
    db: Database,
    template_id: int,
    state: models.TemplateState,
    reports: Mapping[str, object],
    postback: Mapping[str, object] | None,
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


@dataclasses.dataclass(frozen=True, slots=True)
class Report:
    """Where a template's encoding is, and what it made of it for each carrier profile."""

    state: models.TemplateState
    reports: (
        dict[str, JSONValue] | None
    )  # profile name -> its transcode report; None while encoding
    kind: str


async def report(db: Database, account_id: int, template_id: int) -> Report | None:
    """State and per-profile reports of a live template of this account, or None."""
    async with db.read() as conn:
        row = (
            await conn.execute(
                sa.select(templates.c.state, templates.c.reports, templates.c.kind).where(
                    templates.c.id == template_id,
                    templates.c.account_id == account_id,
                    templates.c.deleted_at.is_(None),
                )
            )
        ).first()
    if row is None:
        return None
    return Report(models.TemplateState(row.state), row.reports, row.kind)


@dataclasses.dataclass(frozen=True, slots=True)
class Transcode:
    """A transcoded part kept in the blob store under `output_key`, and its report."""

    key: str
    output_key: str
    content_type: str
    report: dict[str, JSONValue]
    created_at: dt.datetime


async def cached_transcode(db: Database, key: str) -> Transcode | None:
    async with db.read() as conn:
        row = (await conn.execute(sa.select(transcodes).where(transcodes.c.key == key))).first()
    if row is None:
        return None
    return Transcode(row.key, row.output_key, row.content_type, row.report, row.created_at)


async def remember_transcode(
    db: Database, key: str, output_key: str, content_type: str, report: Mapping[str, object]
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
