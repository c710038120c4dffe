"""`mmsgate accounts …`: create, list, show, update, rotate-key, rotate-secret, delete."""

from __future__ import annotations

import ipaddress
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar, cast

import typer
from rich.panel import Panel
from rich.table import Table

from mmsgate import models
from mmsgate.cli_support import ConfigOpt, DataDirOpt, fail, load_settings, out, with_db
from mmsgate.settings import Settings
from mmsgate.store import accounts
from mmsgate.store.db import Database
from mmsgate.store.startup import Schema

T = TypeVar("T")
accounts_app = typer.Typer(help="Create and manage API accounts.", no_args_is_help=True)

NameArg = Annotated[str, typer.Argument(help="The account's name.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]
PostbackUrlOpt = Annotated[
    str | None, typer.Option("--postback-url", help="Where N101/N102 postbacks go.")
]
PostbackFormatOpt = Annotated[
    str | None,
    typer.Option("--postback-format", help="xml (Sinch's XML postbacks, the default) or json."),
]
ModeOpt = Annotated[
    str | None, typer.Option("--mode", help="optimized (SMS fallback) or standard.")
]
ActionOpt = Annotated[
    list[str] | None, typer.Option("--action", help="Allowed action; repeatable (default: all).")
]
AllowIpOpt = Annotated[
    list[str] | None,
    typer.Option("--allow-ip", help="Allowed client address or network (CIDR); repeatable."),
]
ServiceIdOpt = Annotated[
    list[str] | None, typer.Option("--service-id", help="A service-id; repeatable.")
]
MaxRpsOpt = Annotated[float | None, typer.Option("--max-rps", help="Requests per second allowed.")]
DailyLimitOpt = Annotated[
    int | None, typer.Option("--daily-limit", help="API requests per UTC day.")
]
ExpiryOpt = Annotated[
    int | None,
    typer.Option("--mms-expiry-hours", min=1, max=72, help="Default lifetime of a send."),
]


def _run(cfg: Settings, work: Callable[[Database], Awaitable[T]]) -> T:
    """`with_db` (a refused change, AccountError, is told by cli_support)."""
    return with_db(cfg, work, schema=Schema.READY)


def show_demo(created: accounts.NewAccount, sender: str, service_id: str) -> None:
    """The banner `mmsgate run` prints when it creates the demo account."""
    name = created.account.name
    out.print(
        Panel.fit(
            f"account [bold]{name}[/bold]  sender {sender}  service-id {service_id}\n"
            f"api-key [bold green]{created.api_key}[/bold green]\n"
            f"postback-secret {created.postback_secret}\n"
            f"The key is shown once; `mmsgate accounts rotate-key {name}` makes a new one, "
            f"`mmsgate accounts show {name} --json` shows the secret again.",
            title="demo account created",
        )
    )
    sys.stdout.flush()  # the key must reach a log file or pipe now, not at exit


def account_json(account: models.Account, secret: str | None = None) -> dict[str, object]:
    """Every setting of an account (with its postback secret when given); never its key."""
    shown: dict[str, object] = {
        "account": account.name,
        "id": account.id,
        "senders": list(account.senders),
        "service_ids": list(account.service_ids),
        "mode": account.mode.value,
        "postback_url": account.postback_url,
        "postback_format": account.postback_format.value,
        "allowed_ips": list(account.allowed_ips),
        "allowed_actions": None
        if account.allowed_actions is None
        else list(account.allowed_actions),
        "max_rps": account.max_rps,
        "daily_limit": account.daily_limit,
        "mms_expiry_hours": account.mms_expiry_hours,
        "api_enabled": account.api_enabled,
        "created_at": account.created_at.isoformat() if account.created_at else None,
    }
    if secret is not None:
        shown["postback_secret"] = secret
    return shown


@accounts_app.command("create")
def accounts_create(
    name: NameArg,
    sender: Annotated[
        list[str], typer.Option("--sender", help="A sender (short code or number); repeatable.")
    ],
    service_id: ServiceIdOpt = None,
    postback_url: PostbackUrlOpt = None,
    postback_format: PostbackFormatOpt = models.PostbackFormat.XML.value,
    mode: ModeOpt = "optimized",
    allow_ip: AllowIpOpt = None,
    action: ActionOpt = None,
    max_rps: MaxRpsOpt = None,
    daily_limit: DailyLimitOpt = None,
    mms_expiry_hours: ExpiryOpt = None,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Create an account and print its API key (shown once) and postback secret."""
    cfg = load_settings(config, data_dir)
    form = _postback_format(postback_format or "")
    created = _run(
        cfg,
        lambda db: accounts.create(
            db,
            name,
            senders=sender,
            service_ids=service_id,
            mode=_mode(mode or "optimized"),
            postback_url=postback_url,
            allowed_ips=_networks(allow_ip),
            allowed_actions=_actions(action),
            max_rps=max_rps,
            daily_limit=daily_limit,
            mms_expiry_hours=mms_expiry_hours,
            postback_format=form,
        ),
    )
    if created is None:
        fail(f"an account named {name!r} already exists")
    _show_created(created, as_json=as_json)


def _show_created(created: accounts.NewAccount, *, as_json: bool) -> None:
    """The new account's key (shown only here), secret and postback format."""
    if as_json:
        shown = {
            "account": created.account.name,
            "id": created.account.id,
            "api_key": created.api_key,
            "postback_secret": created.postback_secret,
            "postback_format": created.account.postback_format.value,
        }
        print(json.dumps(shown))
        return
    out.print(
        f"account [bold]{created.account.name}[/bold] created\n"
        f"api-key: [bold green]{created.api_key}[/bold green]\n"
        f"postback secret: {created.postback_secret}"
    )


def _mode(value: str) -> models.AccountMode:
    try:
        return models.AccountMode(value.lower())
    except ValueError:
        fail("--mode must be 'optimized' or 'standard'", code=2)


def _postback_format(value: str) -> models.PostbackFormat:
    try:
        return models.PostbackFormat(value.strip().lower())
    except ValueError:
        known = " or ".join(repr(f.value) for f in models.PostbackFormat)
        fail(f"--postback-format {value!r}: must be {known}", code=2)


def _actions(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    found = [models.Action.lookup(v) for v in values]
    if None in found:
        known = ", ".join(a.value for a in models.Action)
        fail(f"unknown action in {', '.join(values)}; known: {known}", code=2)
    return [a.value for a in found if a is not None]


def _networks(values: list[str] | None) -> list[str] | None:
    """Each an address or a network in CIDR notation, written back in canonical form."""
    if values is None:
        return None
    networks = []
    for value in values:
        try:
            networks.append(str(ipaddress.ip_network(value.strip(), strict=False)))
        except ValueError:
            fail(f"--allow-ip {value!r}: not an address or CIDR network (e.g. 192.0.2.0/24)", 2)
    return networks


@accounts_app.command("list")
def accounts_list(
    as_json: JsonOpt = False, config: ConfigOpt = None, data_dir: DataDirOpt = None
) -> None:
    """List accounts with their settings (keys are never shown: only their hashes are stored)."""
    cfg = load_settings(config, data_dir)
    found = with_db(cfg, accounts.list_all, schema=Schema.READY)
    if as_json:
        print(json.dumps([account_json(a) for a in found]))
        return
    table = Table(
        "id",
        "name",
        "senders",
        "service-ids",
        "mode",
        "postback url",
        "format",
        "allowed ips",
        "api",
    )
    for a in found:
        table.add_row(
            str(a.id),
            a.name,
            ", ".join(a.senders),
            ", ".join(a.service_ids),
            a.mode.value,
            a.postback_url or "",
            a.postback_format.value,
            ", ".join(a.allowed_ips) or "any",
            "on" if a.api_enabled else "off",
        )
    out.print(table)


@accounts_app.command("show")
def accounts_show(
    name: NameArg, as_json: JsonOpt = False, config: ConfigOpt = None, data_dir: DataDirOpt = None
) -> None:
    """Every setting of one account; `--json` includes its postback secret."""
    cfg = load_settings(config, data_dir)

    async def go(db: Database) -> tuple[models.Account | None, str | None]:
        return await accounts.by_name(db, name), await accounts.postback_secret(db, name)

    found, secret = with_db(cfg, go, schema=Schema.READY)
    if found is None:
        fail(f"no account named {name!r}")
    shown = account_json(found, secret)
    if as_json:
        print(json.dumps(shown))
        return
    table = Table("setting", "value", show_header=False)
    for key, value in shown.items():
        text = ", ".join(value) if isinstance(value, list) else value
        table.add_row(key, "" if text is None else str(text))
    out.print(table)


@accounts_app.command("rotate-key")
def accounts_rotate_key(
    name: NameArg, config: ConfigOpt = None, data_dir: DataDirOpt = None
) -> None:
    """Give an account a new API key; the old key stops working."""
    _rotate(load_settings(config, data_dir), name, accounts.rotate_key, "api-key")


@accounts_app.command("rotate-secret")
def accounts_rotate_secret(
    name: NameArg, config: ConfigOpt = None, data_dir: DataDirOpt = None
) -> None:
    """Give an account a new postback signing secret; postbacks from now on are signed with it."""
    _rotate(load_settings(config, data_dir), name, accounts.rotate_secret, "postback secret")


def _rotate(
    cfg: Settings, name: str, rotate: Callable[[Database, str], Awaitable[str | None]], what: str
) -> None:
    """Replace one credential of the account and print the new one (shown only here)."""
    value = with_db(cfg, lambda db: rotate(db, name), schema=Schema.READY)
    if value is None:
        fail(f"no account named {name!r}")
    out.print(f"new {what} for {name}: [bold green]{value}[/bold green]")


@accounts_app.command("update")
def accounts_update(
    name: NameArg,
    sender: Annotated[
        list[str] | None, typer.Option("--sender", help="Replace the senders.")
    ] = None,
    service_id: Annotated[
        list[str] | None, typer.Option("--service-id", help="Replace the service-ids.")
    ] = None,
    postback_url: PostbackUrlOpt = None,
    postback_format: PostbackFormatOpt = None,
    mode: ModeOpt = None,
    allow_ip: Annotated[
        list[str] | None, typer.Option("--allow-ip", help="Replace the IP allow-list (CIDR).")
    ] = None,
    clear_allow_ip: Annotated[
        bool, typer.Option("--clear-allow-ip", help="Empty the IP allow-list (any address).")
    ] = False,
    action: Annotated[
        list[str] | None, typer.Option("--action", help="Replace the allowed actions.")
    ] = None,
    max_rps: MaxRpsOpt = None,
    daily_limit: DailyLimitOpt = None,
    mms_expiry_hours: ExpiryOpt = None,
    api_access: Annotated[bool | None, typer.Option("--api-access/--no-api-access")] = None,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Change an account's settings."""
    cfg = load_settings(config, data_dir)
    if allow_ip and clear_allow_ip:
        fail("--allow-ip and --clear-allow-ip: give one or the other", code=2)
    given: dict[str, object] = {
        "senders": sender,
        "service_ids": service_id,
        "postback_url": postback_url,
        "postback_format": None
        if postback_format is None
        else _postback_format(postback_format).value,
        "mode": None if mode is None else _mode(mode).value,
        "allowed_ips": [] if clear_allow_ip else _networks(allow_ip),
        "allowed_actions": None if action is None else _actions(action),
        "max_rps": max_rps,
        "daily_limit": daily_limit,
        "mms_expiry_hours": mms_expiry_hours,
        "api_enabled": api_access,
    }
    # The options given, each of the type its column takes (typer converted them).
    changes = cast(
        accounts.AccountChanges, {key: value for key, value in given.items() if value is not None}
    )
    if not changes:
        fail(f"nothing to change for {name!r}: give at least one option (see --help)", code=2)
    found = _run(cfg, lambda db: accounts.update(db, name, **changes))
    if found is None:
        fail(f"no account named {name!r}")
    out.print(f"account {name} updated: {', '.join(sorted(changes))}")


@accounts_app.command("delete")
def accounts_delete(
    name: NameArg,
    force: Annotated[
        bool, typer.Option("--force", help="Delete even with messages still being delivered.")
    ] = False,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Delete an account with its templates, messages, received MO and pending jobs."""
    cfg = load_settings(config, data_dir)
    result = with_db(cfg, lambda db: accounts.delete(db, name, force=force), schema=Schema.READY)
    if not result.found:
        fail(f"no account named {name!r}")
    if not result.deleted:
        fail(
            f"account {name!r} has {result.in_flight} messages in flight; wait for them "
            "or delete with --force (their deliveries stop)"
        )
    out.print(f"account {name} deleted")
