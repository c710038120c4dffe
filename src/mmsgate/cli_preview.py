"""`mmsgate preview FILE.xml`: what each carrier profile would get; stores and sends nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from mmsgate import codes, errors
from mmsgate.cli_support import ConfigOpt, DataDirOpt, err, load_settings, out, with_db
from mmsgate.media.prepare import PreparedReport
from mmsgate.store import accounts
from mmsgate.store.db import Database
from mmsgate.store.startup import Schema


def preview(
    file: Annotated[Path, typer.Argument(help="A sendMMS, saveMMS or sendSavedMMS request.")],
    account: Annotated[
        str | None, typer.Option(help="Preview as this account (default: the file's api-key).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Dry run: what each carrier profile would get for a request; stores and sends nothing."""
    from mmsgate.api import reports, requests, sinch_xml
    from mmsgate.api.app import build_services

    cfg = load_settings(config, data_dir)
    try:
        body = file.read_bytes()
    except OSError as exc:
        err.print(f"[red]cannot read {file}:[/red] {exc.strerror}")
        raise typer.Exit(2) from None

    async def go(db: Database) -> dict[str, PreparedReport]:
        svc = build_services(cfg, db)
        try:
            if account is not None:
                who = await accounts.by_name(db, account)
                if who is None:
                    raise errors.ApiError(codes.ErrorCode.BAD_API_KEY, f"no account {account!r}")
            else:
                doc = sinch_xml.parse(body, cfg.api.max_xml_depth)
                who = await svc.guard.authenticate(requests.api_key(doc))
            return await reports.preview_document(svc, who, body)
        finally:
            await svc.content.aclose()

    profiles = with_db(cfg, go, schema=Schema.READY)  # an error is told by cli_support
    if as_json:
        shown = {name: report.to_json() for name, report in profiles.items()}
        out.print_json(data={"state": "preview", "profiles": shown})
        return
    for name, report in profiles.items():
        out.print(_preview_table(name, report))


def _preview_table(name: str, report: PreparedReport) -> Table:
    verdict = "[green]fits[/green]" if report.fits else f"[red]fallback:[/red] {report.fallback}"
    table = Table(
        title=f"{name}: {report.total_bytes:,} of {report.budget_bytes:,} bytes, {verdict}",
        title_justify="left",
    )
    for column in ("#", "type", "bytes in", "bytes out", "size", "time", "codec", "q", "lost"):
        numeric = column.startswith("bytes")
        table.add_column(column, justify="right" if numeric else "left", overflow="fold")
    for part in report.parts:
        size = f"{part.width}x{part.height}" if part.width else ""
        duration = f"{part.duration_ms / 1000:.1f}s" if part.duration_ms else ""
        table.add_row(
            str(part.slide),
            part.content_type,
            f"{part.source_bytes:,}",
            f"{part.output_bytes:,}",
            size,
            duration,
            ", ".join(filter(None, (part.codec, part.kept))),
            str(part.quality or ""),
            ", ".join(part.dropped),
        )
    return table
