"""The `mmsgate` command: run, serve, migrate, accounts."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import json
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import httpx
import typer
import uvicorn
import uvloop
from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from mmsgate import codes, errors, logs, models, routing, runtime, settings
from mmsgate.api.requests import parse_timestamp
from mmsgate.carriers.base import Carrier, ReceiptSink, SmsConnector
from mmsgate.carriers.kannel import KannelConnector
from mmsgate.carriers.mm7 import Mm7Carrier
from mmsgate.carriers.smpp import SmppConnector
from mmsgate.pipeline import deliver, encode, fallback, postbacks
from mmsgate.pipeline.deps import Deps
from mmsgate.pipeline.worker import RetryPolicy, Worker
from mmsgate.store import accounts
from mmsgate.store import jobs as jobs_store
from mmsgate.store.blobs import FileBlobStore
from mmsgate.store.db import Database

app = typer.Typer(
    help="mmsgate: a self-hostable MMS platform speaking the Sinch MMS API.", no_args_is_help=True
)
accounts_app = typer.Typer(help="Create and manage API accounts.", no_args_is_help=True)
app.add_typer(accounts_app, name="accounts")
postbacks_app = typer.Typer(help="Inspect and replay postbacks.", no_args_is_help=True)
app.add_typer(postbacks_app, name="postbacks")
out = Console()
err = Console(stderr=True)
T = TypeVar("T")

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", help="TOML config file (env MMSGATE_CONFIG).")
]
DataDirOpt = Annotated[
    Path | None, typer.Option("--data-dir", help="Embedded data folder (env MMSGATE_DATA_DIR).")
]
HostOpt = Annotated[
    str | None, typer.Option("--host", help="Address to listen on (default 127.0.0.1).")
]
PortOpt = Annotated[int | None, typer.Option("--port", help="Port to listen on (default 8080).")]
LogOpt = Annotated[str, typer.Option("--log-level", help="debug, info, warning or error.")]

DEMO_NAME, DEMO_SENDER, DEMO_SERVICE_ID = "demo", "28444", "32113"


def main() -> None:
    app()


def load_settings(
    config: Path | None, data_dir: Path | None = None, **more: Any
) -> settings.Settings:
    try:
        return settings.load(config, dict(os.environ), data_dir=data_dir, **more)
    except errors.ConfigError as exc:
        err.print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(2) from None


def with_db(cfg: settings.Settings, work: Callable[[Database], Awaitable[T]]) -> T:
    """Open the database (migrating a fresh embedded one), run `work`, close it."""

    async def go() -> T:
        db = Database(cfg.db_url)
        try:
            if db.is_sqlite:
                await db.migrate()
            return await work(db)
        finally:
            await db.close()

    return asyncio.run(go())


@app.command()
def run(
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    host: HostOpt = None,
    port: PortOpt = None,
    log_level: LogOpt = "info",
) -> None:
    """All in one: API, embedded SQLite, and the built-in carrier simulator."""
    cfg = load_settings(config, data_dir, host=host, port=port)
    logs.configure(log_level)

    async def prepare(db: Database) -> None:
        await db.migrate()
        if not await accounts.list_all(db):
            created = await accounts.create(
                db, DEMO_NAME, senders=[DEMO_SENDER], service_ids=[DEMO_SERVICE_ID]
            )
            if created is not None:
                show_demo(created)

    with_db(cfg, prepare)
    if cfg.simulated:
        err.print(
            "[yellow]No carrier routes configured: every message goes to the built-in "
            "carrier simulator (simulated delivery).[/yellow]"
        )
    background = simulator_and_worker if cfg.simulated else worker_running
    serve_api(cfg, log_level, background=lambda: background(cfg))


@app.command()
def serve(
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    host: HostOpt = None,
    port: PortOpt = None,
    workers: Annotated[int, typer.Option("--workers", help="API processes sharing the port.")] = 1,
    log_level: LogOpt = "info",
) -> None:
    """The API only (run workers separately); for deployments on PostgreSQL."""
    cfg = load_settings(config, data_dir, host=host, port=port)
    logs.configure(log_level)
    with_db(cfg, lambda db: asyncio.sleep(0))
    if workers > 1:
        serve_processes(cfg, config, workers, log_level)
    else:
        serve_api(cfg, log_level)


def serve_processes(
    cfg: settings.Settings, config: Path | None, workers: int, log_level: str
) -> None:
    """Several API processes on one listening socket; each builds its app from the environment."""
    os.environ["MMSGATE_DATA_DIR"] = str(cfg.data_dir.resolve())
    os.environ["MMSGATE_LOG_LEVEL"] = log_level
    if config is not None:
        os.environ["MMSGATE_CONFIG"] = str(config.resolve())
    err.print(f"mmsgate listening on http://{cfg.host}:{cfg.port} with {workers} processes")
    uvicorn.run(
        "mmsgate.api.app:app_from_environment",
        factory=True,
        host=cfg.host,
        port=cfg.port,
        workers=workers,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=30,
    )


def serve_api(
    cfg: settings.Settings,
    log_level: str,
    background: Callable[[], contextlib.AbstractAsyncContextManager[None]] | None = None,
) -> None:
    from mmsgate.api.app import create_app

    where = "PostgreSQL" if cfg.database_url else str(cfg.data_dir.resolve())
    err.print(f"mmsgate listening on http://{cfg.host}:{cfg.port}  (data: {where})")
    app = create_app(cfg, background=background)
    runtime.tune_gc()
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=cfg.host,
            port=cfg.port,
            loop="uvloop",
            http="httptools",
            log_level="warning" if log_level.lower() != "debug" else "debug",
            access_log=False,
            timeout_graceful_shutdown=30,
        )
    )
    server.run()


def build_worker(cfg: settings.Settings) -> Worker:
    """A pipeline worker: saveMMS encoding, MMS delivery over each route, postbacks."""
    sms_routes = sms_routes_for(cfg)
    deps = Deps(
        db=Database(cfg.db_url),
        blobs=FileBlobStore(cfg.blob_dir),
        http=httpx.AsyncClient(),
        profiles=cfg.profiles_in_use,
        allow_private_networks=cfg.media.allow_private_networks,
        routes=cfg.routes,
        carriers=carriers_for(cfg),
        route_gates={r.name: asyncio.Semaphore(r.concurrency) for r in cfg.routes if r.concurrency},
        sms_routes=sms_routes,
        public_url=cfg.public_url,
    )
    sink = fallback.receipt_sink(deps)
    for route in sms_routes:
        deps.sms_connectors[route.name] = sms_connector_for(cfg, route, sink)
    steps = {
        models.JobKind.DELIVER: deliver.deliver,
        models.JobKind.ENCODE_TEMPLATE: encode.encode_template,
        models.JobKind.POSTBACK: postbacks.send_postback,
        models.JobKind.FALLBACK_SMS: fallback.send_sms,
    }
    # A delivery retries until its message expires (days), not for a number of attempts.
    forever = RetryPolicy(max_attempts=1_000_000)
    policies = {models.JobKind.DELIVER: forever, models.JobKind.FALLBACK_SMS: forever}
    return Worker(
        deps.db,
        steps,
        deps,
        policies=policies,
        concurrency=cfg.worker_concurrency,
        lease=dt.timedelta(seconds=cfg.worker_lease_seconds),
        keep_done=dt.timedelta(days=cfg.done_jobs_kept_days) if cfg.done_jobs_kept_days else None,
    )


def carriers_for(cfg: settings.Settings) -> dict[str, Carrier]:
    """One MM7 client per route; simulator routes (and no routes at all) submit to the
    simulated MMSC at `simulator_url`."""
    carriers: dict[str, Carrier] = {}
    for route in cfg.routes or (routing.SIMULATOR,):
        if route.kind == "simulator":
            route = dataclasses.replace(route, url=cfg.simulator_url)
        carriers[route.name] = Mm7Carrier(route)
    return carriers


def sms_routes_for(cfg: settings.Settings) -> tuple[settings.SmsRoute, ...]:
    """The configured SMS routes; with none, the simulator's SMSC at `simulator_smsc`."""
    routes = []
    for route in cfg.sms_routes or (routing.SIMULATOR_SMS,):
        if route.kind == "simulator":
            host, _, port = cfg.simulator_smsc.rpartition(":")
            route = dataclasses.replace(
                route, host=route.host or host, port=route.port or int(port),
                system_id=route.system_id or "mmsgate",
            )  # fmt: skip
        routes.append(route)
    return tuple(routes)


def sms_connector_for(
    cfg: settings.Settings, route: settings.SmsRoute, sink: ReceiptSink
) -> SmsConnector:
    """SMPP for smpp and simulator routes; Kannel's sendsms, with receipts back at our
    /kannel/dlr, for kannel routes."""
    if route.kind == "kannel":
        return KannelConnector(route, dlr_base=cfg.public_url)
    return SmppConnector(route, sink)


async def start_pipeline(worker: Worker) -> None:
    """Bind the SMS connectors at once: receipts the SMSC holds for us arrive without
    waiting for the next SMS."""
    for connector in worker.deps.sms_connectors.values():
        await connector.start()


async def stop_pipeline(worker: Worker) -> None:
    for carrier in worker.deps.carriers.values():
        await carrier.close()
    for connector in worker.deps.sms_connectors.values():
        await connector.close()
    await worker.deps.http.aclose()
    await worker.db.close()


@contextlib.asynccontextmanager
async def worker_running(cfg: settings.Settings) -> AsyncIterator[None]:
    """Run a worker in the background of this event loop until the block ends."""
    worker = build_worker(cfg)
    await start_pipeline(worker)
    task = asyncio.create_task(worker.run(), name="mmsgate-worker")
    try:
        yield
    finally:
        worker.stop()
        await task
        await stop_pipeline(worker)


@contextlib.asynccontextmanager
async def simulator_and_worker(cfg: settings.Settings) -> AsyncIterator[None]:
    """`mmsgate run`: the simulated MMSC on a free loopback port, reporting to this
    gateway's /mm7, and a worker whose simulator route submits to it."""
    from mmsgate.sim.mmsc import SimulatedMmsc
    from mmsgate.sim.smsc import Smsc

    wildcard = ("0.0.0.0", "::", "")  # noqa: S104 - compared against, never bound
    host = "127.0.0.1" if cfg.host in wildcard else cfg.host
    sim = SimulatedMmsc(f"http://{host}:{cfg.port}/mm7")
    smsc = Smsc()
    smsc_port = await smsc.start("127.0.0.1", 0)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(sim.app(), log_level="warning", access_log=False))
    serving = asyncio.create_task(server.serve(sockets=[sock]), name="mmsgate-simulator")
    err.print(f"simulated MMSC on http://127.0.0.1:{port}/mm7 (send an MO: POST /mo)")
    err.print(f"simulated SMSC on 127.0.0.1:{smsc_port} (SMPP)")
    simulated = dataclasses.replace(
        cfg,
        simulator_url=f"http://127.0.0.1:{port}/mm7",
        simulator_smsc=f"127.0.0.1:{smsc_port}",
    )
    try:
        async with worker_running(simulated):
            yield
    finally:
        server.should_exit = True
        await serving
        sock.close()
        await smsc.stop()


@app.command()
def worker(
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    log_level: LogOpt = "info",
    metrics_port: Annotated[
        int | None, typer.Option(help="Serve this worker's Prometheus metrics on 127.0.0.1.")
    ] = None,
) -> None:
    """The pipeline only (run any number, next to `serve`); stops cleanly on SIGTERM/Ctrl-C."""
    cfg = load_settings(config, data_dir)
    logs.configure(log_level)
    if metrics_port is not None:
        import prometheus_client

        prometheus_client.start_http_server(metrics_port, addr="127.0.0.1")
    with_db(cfg, lambda db: asyncio.sleep(0))

    async def go() -> None:
        running = build_worker(cfg)
        runtime.tune_gc()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, running.stop)
        try:
            await start_pipeline(running)
            await running.run()
        finally:
            await stop_pipeline(running)

    uvloop.run(go())  # the loop `serve` runs on too: less overhead per I/O event


@app.command()
def migrate(config: ConfigOpt = None, data_dir: DataDirOpt = None) -> None:
    """Apply the database schema (PostgreSQL or SQLite) up to the newest revision."""
    cfg = load_settings(config, data_dir)

    async def go(db: Database) -> None:
        await db.migrate()

    with_db(cfg, go)
    out.print("schema is up to date")


def show_demo(created: accounts.NewAccount) -> None:
    out.print(
        Panel.fit(
            f"account [bold]{created.account.name}[/bold]  sender {DEMO_SENDER}  "
            f"service-id {DEMO_SERVICE_ID}\n"
            f"api-key [bold green]{created.api_key}[/bold green]\n"
            "This key is shown once; `mmsgate accounts rotate-key demo` makes a new one.",
            title="demo account created",
        )
    )
    sys.stdout.flush()  # the key must reach a log file or pipe now, not at exit


@accounts_app.command("create")
def accounts_create(
    name: str,
    sender: Annotated[
        list[str], typer.Option("--sender", help="A sender (short code or number); repeatable.")
    ],
    service_id: Annotated[
        list[str] | None, typer.Option("--service-id", help="A service-id; repeatable.")
    ] = None,
    postback_url: Annotated[str | None, typer.Option("--postback-url")] = None,
    mode: Annotated[
        str, typer.Option("--mode", help="optimized (SMS fallback) or standard.")
    ] = "optimized",
    allow_ip: Annotated[
        list[str] | None,
        typer.Option("--allow-ip", help="Allowed client IP or network; repeatable."),
    ] = None,
    action: Annotated[
        list[str] | None,
        typer.Option("--action", help="Allowed action; repeatable (default: all)."),
    ] = None,
    max_rps: Annotated[
        float | None, typer.Option("--max-rps", help="Requests per second allowed.")
    ] = None,
    daily_limit: Annotated[
        int | None, typer.Option("--daily-limit", help="API requests per UTC day.")
    ] = None,
    mms_expiry_hours: Annotated[
        int | None,
        typer.Option("--mms-expiry-hours", min=1, max=72, help="Default lifetime of a send."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Create an account and print its API key (shown once)."""
    cfg = load_settings(config, data_dir)
    account_mode = _mode(mode)
    allowed = _actions(action)
    created = with_db(
        cfg,
        lambda db: accounts.create(
            db,
            name,
            senders=sender,
            service_ids=service_id,
            mode=account_mode,
            postback_url=postback_url,
            allowed_ips=allow_ip,
            allowed_actions=allowed,
            max_rps=max_rps,
            daily_limit=daily_limit,
            mms_expiry_hours=mms_expiry_hours,
        ),
    )
    if created is None:
        err.print(f"[red]an account named {name!r} already exists[/red]")
        raise typer.Exit(1)
    if as_json:
        print(
            json.dumps(
                {
                    "account": created.account.name,
                    "id": created.account.id,
                    "api_key": created.api_key,
                    "postback_secret": created.postback_secret,
                }
            )
        )
    else:
        out.print(
            f"account [bold]{name}[/bold] created\n"
            f"api-key: [bold green]{created.api_key}[/bold green]\n"
            f"postback secret: {created.postback_secret}"
        )


def _mode(value: str) -> models.AccountMode:
    try:
        return models.AccountMode(value.lower())
    except ValueError:
        err.print("[red]--mode must be 'optimized' or 'standard'[/red]")
        raise typer.Exit(2) from None


def _actions(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    found = [models.Action.lookup(v) for v in values]
    if None in found:
        err.print(
            f"[red]unknown action in {values}; known: {[a.value for a in models.Action]}[/red]"
        )
        raise typer.Exit(2)
    return [a.value for a in found if a is not None]


@accounts_app.command("list")
def accounts_list(
    as_json: Annotated[bool, typer.Option("--json")] = False,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """List accounts (keys are never shown: only their hashes are stored)."""
    cfg = load_settings(config, data_dir)
    found = with_db(cfg, accounts.list_all)
    if as_json:
        print(
            json.dumps(
                [
                    {
                        "account": a.name,
                        "id": a.id,
                        "senders": list(a.senders),
                        "service_ids": list(a.service_ids),
                        "mode": a.mode.value,
                        "postback_url": a.postback_url,
                        "api_enabled": a.api_enabled,
                    }
                    for a in found
                ]
            )
        )
        return
    table = Table("id", "name", "senders", "service-ids", "mode", "postback url", "api")
    for a in found:
        table.add_row(
            str(a.id),
            a.name,
            ", ".join(a.senders),
            ", ".join(a.service_ids),
            a.mode.value,
            a.postback_url or "",
            "on" if a.api_enabled else "off",
        )
    out.print(table)


@accounts_app.command("rotate-key")
def accounts_rotate_key(name: str, config: ConfigOpt = None, data_dir: DataDirOpt = None) -> None:
    """Give an account a new API key; the old key stops working."""
    cfg = load_settings(config, data_dir)
    key = with_db(cfg, lambda db: accounts.rotate_key(db, name))
    if key is None:
        err.print(f"[red]no account named {name!r}[/red]")
        raise typer.Exit(1)
    out.print(f"new api-key for {name}: [bold green]{key}[/bold green]")


@accounts_app.command("update")
def accounts_update(
    name: str,
    sender: Annotated[
        list[str] | None, typer.Option("--sender", help="Replace the senders.")
    ] = None,
    service_id: Annotated[
        list[str] | None, typer.Option("--service-id", help="Replace the service-ids.")
    ] = None,
    postback_url: Annotated[str | None, typer.Option("--postback-url")] = None,
    mode: Annotated[str | None, typer.Option("--mode")] = None,
    allow_ip: Annotated[
        list[str] | None, typer.Option("--allow-ip", help="Replace the IP allow-list.")
    ] = None,
    action: Annotated[
        list[str] | None, typer.Option("--action", help="Replace the allowed actions.")
    ] = None,
    max_rps: Annotated[float | None, typer.Option("--max-rps")] = None,
    daily_limit: Annotated[int | None, typer.Option("--daily-limit")] = None,
    mms_expiry_hours: Annotated[
        int | None, typer.Option("--mms-expiry-hours", min=1, max=72)
    ] = None,
    api_access: Annotated[bool | None, typer.Option("--api-access/--no-api-access")] = None,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Change an account's settings."""
    cfg = load_settings(config, data_dir)
    changes: dict[str, Any] = {}
    for key, value in (
        ("senders", sender),
        ("service_ids", service_id),
        ("postback_url", postback_url),
        ("allowed_ips", allow_ip),
        ("max_rps", max_rps),
        ("daily_limit", daily_limit),
        ("mms_expiry_hours", mms_expiry_hours),
        ("api_enabled", api_access),
    ):
        if value is not None:
            changes[key] = value
    if mode is not None:
        changes["mode"] = _mode(mode).value
    if action is not None:
        changes["allowed_actions"] = _actions(action)
    found = with_db(cfg, lambda db: accounts.update(db, name, **changes))
    if found is None:
        err.print(f"[red]no account named {name!r}[/red]")
        raise typer.Exit(1)
    out.print(f"account {name} updated")


def _account_id(db: Database, name: str | None) -> Awaitable[int | None]:
    async def find() -> int | None:
        if name is None:
            return None
        found = await accounts.by_name(db, name)
        if found is None:
            err.print(f"[red]no account named {name!r}[/red]")
            raise typer.Exit(1)
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

    async def go(db: Database) -> list[Any]:
        return await jobs_store.postbacks(
            db, await _account_id(db, account), failed_only=failed, since=None, limit=limit
        )

    rows = with_db(cfg, go)
    if as_json:
        print(json.dumps([_postback_json(r) for r in rows]))
        return
    table = Table("id", "account", "state", "attempts", "created", "last error")
    for r in rows:
        table.add_row(
            str(r.id),
            str((r.payload or {}).get("account_id")),
            r.state,
            str(r.attempts),
            r.created_at.isoformat(timespec="seconds"),
            (r.last_error or "")[:60],
        )
    out.print(table)


def _postback_json(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "account_id": (row.payload or {}).get("account_id"),
        "state": row.state,
        "attempts": row.attempts,
        "created_at": row.created_at.isoformat(),
        "last_error": row.last_error,
        "body": (row.payload or {}).get("body"),
    }


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
        err.print(f"[red]--since: not an ISO 8601 date or date-time: {since!r}[/red]")
        raise typer.Exit(2)

    async def go(db: Database) -> int:
        now = dt.datetime.now(dt.UTC)
        return await jobs_store.replay_postbacks(db, await _account_id(db, account), start, now)

    out.print(f"{with_db(cfg, go)} postbacks queued again")


@app.command()
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
    from mmsgate.api import reports, sinch_xml
    from mmsgate.api.app import build_services
    from mmsgate.media.prepare import PartFailed, failure_code

    cfg = load_settings(config, data_dir)
    try:
        body = file.read_bytes()
    except OSError as exc:
        err.print(f"[red]cannot read {file}:[/red] {exc.strerror}")
        raise typer.Exit(2) from None

    async def go(db: Database) -> dict[str, Any]:
        svc = build_services(cfg, db)
        try:
            if account is not None:
                who = await accounts.by_name(db, account)
                if who is None:
                    raise errors.ApiError(codes.ErrorCode.BAD_API_KEY, f"no account {account!r}")
            else:
                doc = sinch_xml.parse(body, cfg.api.max_xml_depth)
                who = await svc.guard.authenticate(doc.value("api-key"))
            return await reports.preview_document(svc, who, body)
        finally:
            await svc.content.aclose()

    try:
        profiles = with_db(cfg, go)
    except errors.ApiError as exc:
        err.print(f"[red]{exc.code.value}:[/red] {exc.info}")
        raise typer.Exit(1) from None
    except PartFailed as exc:
        err.print(f"[red]{failure_code(exc.kind)}:[/red] {exc}")
        raise typer.Exit(1) from None
    if as_json:
        out.print_json(data={"state": "preview", "profiles": profiles})
        return
    # Piped output has no terminal width; give the table room rather than fold every cell.
    console = out if out.is_terminal else Console(width=140)
    for name, report in profiles.items():
        console.print(_preview_table(name, report))


def _preview_table(name: str, report: dict[str, Any]) -> Table:
    verdict = (
        "[green]fits[/green]" if report["fits"] else f"[red]fallback:[/red] {report['fallback']}"
    )
    table = Table(
        title=f"{name}: {report['total_bytes']:,} of {report['budget_bytes']:,} bytes, {verdict}",
        title_justify="left",
    )
    for column in ("#", "type", "bytes in", "bytes out", "size", "time", "codec", "q", "lost"):
        numeric = column.startswith("bytes")
        table.add_column(column, justify="right" if numeric else "left", overflow="fold")
    for part in report["parts"]:
        size = f"{part['width']}x{part['height']}" if part["width"] else ""
        duration = f"{part['duration_ms'] / 1000:.1f}s" if part["duration_ms"] else ""
        table.add_row(
            str(part["slide"]),
            part["content_type"],
            f"{part['source_bytes']:,}",
            f"{part['output_bytes']:,}",
            size,
            duration,
            ", ".join(filter(None, (part["codec"], part.get("kept")))),
            str(part["quality"] or ""),
            ", ".join(part["dropped"]),
        )
    return table


@app.command("carrier-sim")
def carrier_sim(
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port")] = 8090,
    report_url: Annotated[
        str | None,
        typer.Option("--report-url", help="Where DeliveryReportReqs go (the gateway's /mm7)."),
    ] = "http://127.0.0.1:8080/mm7",
    max_bytes: Annotated[int, typer.Option("--max-bytes", help="Largest content accepted.")] = 1_000
    * 1024,
    journal: Annotated[
        Path | None,
        typer.Option(help="Keep owed delivery reports in this file, sent after a restart."),
    ] = None,
    smpp_port: Annotated[
        int, typer.Option("--smpp-port", help="Where the simulated SMSC listens (0: none).")
    ] = 2775,
    log_level: LogOpt = "info",
) -> None:
    """Run the carrier simulator on its own: the MMSC takes MM7 SubmitReqs at
    http://HOST:PORT/mm7, the SMSC takes SMPP binds on HOST:SMPP_PORT."""
    from mmsgate.sim.mmsc import SimulatedMmsc
    from mmsgate.sim.smsc import Smsc

    logs.configure(log_level)
    sim = SimulatedMmsc(report_url or None, max_bytes=max_bytes, journal=journal)
    err.print(f"simulated MMSC on http://{host}:{port}/mm7, reports to {report_url or 'nowhere'}")

    async def go() -> None:
        smsc = Smsc()
        if smpp_port:
            await smsc.start(host, smpp_port)
            err.print(f"simulated SMSC on {host}:{smpp_port} (SMPP)")
        config = uvicorn.Config(
            sim.app(), host=host, port=port, log_level="warning", access_log=False
        )
        runtime.tune_gc()
        try:
            await uvicorn.Server(config).serve()
        finally:
            await smsc.stop()

    uvloop.run(go())
