"""The `mmsgate` command: run, serve, worker, migrate, postbacks, preview, carrier-sim
(the accounts commands are in `cli_accounts`)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import os
import secrets
import signal
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Annotated, Any

import httpx
import structlog
import typer
import uvicorn
import uvloop
from uvicorn.supervisors import Multiprocess

from mmsgate import (
    cli_accounts,
    cli_postbacks,
    cli_preview,
    errors,
    http_protocol,
    logs,
    models,
    routing,
    runtime,
    settings,
)
from mmsgate.carriers.base import Carrier, ReceiptSink, SmsConnector
from mmsgate.carriers.kannel import KannelConnector
from mmsgate.carriers.mm7 import Mm7Carrier
from mmsgate.carriers.smpp import SmppConnector
from mmsgate.cli_support import (
    ConfigOpt,
    DataDirOpt,
    HostOpt,
    LogOpt,
    PortOpt,
    check_port,
    err,
    fail,
    listen,
    load_settings,
    out,
    with_db,
)
from mmsgate.pipeline import deliver, encode, fallback, postbacks
from mmsgate.pipeline.deps import Deps
from mmsgate.pipeline.shares import PostbackShares
from mmsgate.pipeline.worker import RetryPolicy, Worker
from mmsgate.store import accounts, startup
from mmsgate.store.blobs import FileBlobStore
from mmsgate.store.db import Database

DEMO_NAME, DEMO_SENDER, DEMO_SERVICE_ID = "demo", "28444", "32113"
LogFormatOpt = Annotated[
    settings.LogFormat | None,
    typer.Option(
        "--log-format",
        envvar="MMSGATE_LOG_FORMAT",
        help="console (key=value) or json (one object per line); config key log_format.",
    ),
]

app = typer.Typer(
    help="mmsgate: a self-hostable MMS platform speaking the Sinch MMS API.", no_args_is_help=True
)


@app.callback()
def _every_command() -> None:
    """mmsgate: a self-hostable MMS platform speaking the Sinch MMS API."""
    logs.quiet()  # the serving commands configure their own logging on top


app.add_typer(cli_accounts.accounts_app, name="accounts")
app.add_typer(cli_postbacks.postbacks_app, name="postbacks")
app.command()(cli_preview.preview)


def main() -> None:
    app()


def configure_logs(cfg: settings.Settings, level: str) -> None:
    logs.configure(level, json=cfg.log_format is settings.LogFormat.JSON)


def say(fmt: settings.LogFormat | None, text: str, event: str, **fields: Any) -> None:
    """A start-up line for people: printed, or with JSON logs an info event like any other."""
    if fmt is settings.LogFormat.JSON:
        structlog.get_logger("mmsgate.cli").info(event, **fields)
    else:
        err.print(text)


async def _nothing(_db: Database) -> None:
    """The work of a `with_db` that only checks (or migrates) the database."""


@dataclasses.dataclass(frozen=True, slots=True)
class SimulatorSockets:
    """The built-in simulator's listening sockets, bound before anything starts."""

    mm7: socket.socket
    smpp: socket.socket


@app.command()
def run(
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    host: HostOpt = None,
    port: PortOpt = None,
    sim_mm7_port: Annotated[
        int | None, typer.Option(help="The built-in simulated MMSC's port (default: any free).")
    ] = None,
    sim_smpp_port: Annotated[
        int | None, typer.Option(help="The built-in simulated SMSC's port (default: any free).")
    ] = None,
    log_level: LogOpt = "info",
    log_format: LogFormatOpt = None,
) -> None:
    """All in one: API, embedded SQLite, and the built-in carrier simulator."""
    cfg = simulator_credentials(
        load_settings(config, data_dir, host=host, port=port, log_format=log_format)
    )
    check_port(sim_mm7_port, "--sim-mm7-port", zero=True)
    check_port(sim_smpp_port, "--sim-smpp-port", zero=True)
    configure_logs(cfg, log_level)
    # Every port first: a taken one ends the start before the database or the demo account
    # is touched, so nothing (least of all the demo key) is spent on a start that fails.
    api_socket = listen(cfg.host, cfg.port, "the API")
    sims: SimulatorSockets | None = None
    if cfg.simulated:
        sims = SimulatorSockets(
            listen("127.0.0.1", sim_mm7_port or 0, "the simulated MMSC (--sim-mm7-port)"),
            listen("127.0.0.1", sim_smpp_port or 0, "the simulated SMSC (--sim-smpp-port)"),
        )
    with_db(cfg, startup.migrate, migrating=True)
    if sims is not None:
        say(
            cfg.log_format,
            "[yellow]No carrier routes configured: every message goes to the built-in "
            "carrier simulator (simulated delivery).[/yellow]",
            "carrier.simulated",
        )

    def background() -> contextlib.AbstractAsyncContextManager[None]:
        inner = worker_running(cfg) if sims is None else simulator_and_worker(cfg, sims)
        return demo_account_shown(cfg, inner)

    serve_api(cfg, log_level, api_socket, background=background)


@contextlib.asynccontextmanager
async def demo_account_shown(
    cfg: settings.Settings, inner: contextlib.AbstractAsyncContextManager[None]
) -> AsyncIterator[None]:
    """Run `inner`, and once it runs (the API's socket listens already) create the demo
    account of a fresh database and print its key and postback secret: they are shown
    once, so only a start that has got this far may spend them."""
    async with inner:
        db = Database(cfg.db_url)
        try:
            if not await accounts.list_all(db):
                created = await accounts.create(
                    db, DEMO_NAME, senders=[DEMO_SENDER], service_ids=[DEMO_SERVICE_ID]
                )
                if created is not None:
                    cli_accounts.show_demo(created, DEMO_SENDER, DEMO_SERVICE_ID)
        finally:
            await db.close()
        yield


@app.command()
def serve(
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    host: HostOpt = None,
    port: PortOpt = None,
    workers: Annotated[int, typer.Option("--workers", help="API processes sharing the port.")] = 1,
    log_level: LogOpt = "info",
    log_format: LogFormatOpt = None,
) -> None:
    """The API only (run workers separately); for deployments on PostgreSQL."""
    cfg = load_settings(config, data_dir, host=host, port=port, log_format=log_format)
    if workers < 1:
        fail(f"--workers {workers}: at least 1", code=2)
    configure_logs(cfg, log_level)
    with_db(cfg, _nothing)
    api_socket = listen(cfg.host, cfg.port, "the API")
    if workers > 1:
        serve_processes(cfg, config, workers, log_level, api_socket)
    else:
        serve_api(cfg, log_level, api_socket)


def serve_processes(
    cfg: settings.Settings,
    config: Path | None,
    workers: int,
    log_level: str,
    api_socket: socket.socket,
) -> None:
    """Several API processes on one listening socket; each builds its app from the environment."""
    os.environ["MMSGATE_DATA_DIR"] = str(cfg.data_dir.resolve())
    os.environ["MMSGATE_LOG_LEVEL"] = log_level
    os.environ["MMSGATE_LOG_FORMAT"] = cfg.log_format.value
    if config is not None:
        os.environ["MMSGATE_CONFIG"] = str(config.resolve())
    say(
        cfg.log_format,
        f"mmsgate listening on http://{cfg.host}:{cfg.port} with {workers} processes",
        "api.listening",
        url=f"http://{cfg.host}:{cfg.port}",
        processes=workers,
    )
    processes = http_protocol.ServerConfig(
        "mmsgate.api.app:app_from_environment",
        limits=api_limits(cfg),
        factory=True,
        workers=workers,
        loop="uvloop",
        log_level="warning",
        log_config=None,  # uvicorn's lines go through mmsgate's log format
        access_log=False,
        timeout_graceful_shutdown=30,
    )
    Multiprocess(processes, sockets=[api_socket]).run()


def serve_api(
    cfg: settings.Settings,
    log_level: str,
    api_socket: socket.socket,
    background: Callable[[], contextlib.AbstractAsyncContextManager[None]] | None = None,
) -> None:
    from mmsgate.api.app import create_app

    where = "PostgreSQL" if cfg.database_url else str(cfg.data_dir.resolve())
    say(
        cfg.log_format,
        f"mmsgate listening on http://{cfg.host}:{cfg.port}  (data: {where})",
        "api.listening",
        url=f"http://{cfg.host}:{cfg.port}",
        data=where,
    )
    app = create_app(cfg, background=background)
    runtime.tune_gc()
    server = uvicorn.Server(
        http_protocol.ServerConfig(
            app,
            limits=api_limits(cfg),
            loop="uvloop",
            log_level="warning" if log_level.lower() != "debug" else "debug",
            log_config=None,  # uvicorn's lines go through mmsgate's log format
            access_log=False,
            timeout_graceful_shutdown=30,
        )
    )
    server.run(sockets=[api_socket])
    if not server.started:  # the app's start-up failed (uvicorn logged why): say so by the exit
        raise typer.Exit(3)


def api_limits(cfg: settings.Settings) -> http_protocol.ConnectionLimits:
    """What one connection may take of the API server (`[api]` in the config file)."""
    return http_protocol.ConnectionLimits(
        read_timeout=cfg.api.read_timeout,
        body_timeout=cfg.api.body_timeout,
        max_per_client=cfg.api.max_connections_per_client,
    )


# The simulator's MMSC: timeouts like the API's, but no cap per address, as a worker (one
# address) opens as many connections to it as it has submits in flight.
SIM_LIMITS = http_protocol.ConnectionLimits()


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
        postback_timeout=cfg.postbacks.timeout,
        postback_shares=PostbackShares.for_worker(cfg.worker_concurrency, cfg.postbacks.per_host),
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
        # Beats well inside the stall /readyz waits for, so a working worker never looks stalled.
        beat_every=min(5.0, cfg.worker_stall_seconds / 4),
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


def simulator_credentials(cfg: settings.Settings) -> settings.Settings:
    """`mmsgate run`: a fresh Basic pair for the simulated MMSC to present on /mm7 (unless
    the config names one), known to the API and the simulator of this process alone."""
    if cfg.simulator_inbound_username:
        return cfg
    return dataclasses.replace(
        cfg,
        simulator_inbound_username="sim-" + secrets.token_hex(4),
        simulator_inbound_password=secrets.token_urlsafe(24),
    )


@contextlib.asynccontextmanager
async def simulator_and_worker(
    cfg: settings.Settings, sims: SimulatorSockets
) -> AsyncIterator[None]:
    """`mmsgate run`: the simulated MMSC and SMSC on their sockets, the MMSC reporting to
    this gateway's /mm7, and a worker whose simulator routes submit to them."""
    from mmsgate.sim.mmsc import SimulatedMmsc
    from mmsgate.sim.smsc import Smsc

    wildcard = ("0.0.0.0", "::", "")  # noqa: S104 - compared against, never bound
    host = "127.0.0.1" if cfg.host in wildcard else cfg.host
    pair = cfg.simulator_inbound_username, cfg.simulator_inbound_password
    auth = (pair[0], pair[1]) if pair[0] and pair[1] else None
    sim = SimulatedMmsc(f"http://{host}:{cfg.port}/mm7", report_auth=auth)
    smsc = Smsc()
    smsc_port = await smsc.start(sock=sims.smpp)
    port = sims.mm7.getsockname()[1]
    server = uvicorn.Server(
        http_protocol.ServerConfig(
            sim.app(), limits=SIM_LIMITS, log_level="warning", log_config=None, access_log=False
        )
    )
    serving = asyncio.create_task(server.serve(sockets=[sims.mm7]), name="mmsgate-simulator")
    mmsc_url = f"http://127.0.0.1:{port}/mm7"
    say(
        cfg.log_format,
        f"simulated MMSC on {mmsc_url} (send an MO: POST /mo)",
        "sim.mmsc",
        url=mmsc_url,
    )
    smsc_at = f"127.0.0.1:{smsc_port}"
    say(cfg.log_format, f"simulated SMSC on {smsc_at} (SMPP)", "sim.smsc", address=smsc_at)
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
        sims.mm7.close()
        await smsc.stop()


@app.command()
def worker(
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    log_level: LogOpt = "info",
    log_format: LogFormatOpt = None,
    metrics_port: Annotated[
        int | None, typer.Option(help="Serve this worker's Prometheus metrics on 127.0.0.1.")
    ] = None,
) -> None:
    """The pipeline only (run any number, next to `serve`); stops cleanly on SIGTERM/Ctrl-C."""
    cfg = load_settings(config, data_dir, log_format=log_format)
    check_port(metrics_port, "--metrics-port")
    configure_logs(cfg, log_level)
    with_db(cfg, _nothing)
    if metrics_port is not None:
        metrics = listen("127.0.0.1", metrics_port, "the metrics listener (--metrics-port)")
        metrics.close()  # free again for the worker's metrics server, which binds it itself

    async def go() -> None:
        running = build_worker(cfg)
        runtime.tune_gc()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, running.stop)
        try:
            async with worker_metrics(cfg, metrics_port):
                await start_pipeline(running)
                await running.run()
        finally:
            await stop_pipeline(running)

    try:
        uvloop.run(go())  # the loop `serve` runs on too: less overhead per I/O event
    except errors.ConfigError as exc:  # metrics_listen could not be bound
        fail(str(exc))


def worker_metrics(
    cfg: settings.Settings, port: int | None
) -> contextlib.AbstractAsyncContextManager[None]:
    """The worker's own counters on 127.0.0.1:`port`, else on `metrics_listen` if set;
    behind `metrics_token` when one is set."""
    from mmsgate.api import metrics_page

    address = ("127.0.0.1", port) if port is not None else cfg.metrics_address
    if address is None:
        return contextlib.nullcontext()
    app = metrics_page.metrics_app(cfg, metrics_page.process_metrics)
    return metrics_page.serving(app, address)


@app.command()
def migrate(config: ConfigOpt = None, data_dir: DataDirOpt = None) -> None:
    """Apply the database schema (PostgreSQL or SQLite) up to the newest revision."""
    cfg = load_settings(config, data_dir)
    applied = with_db(cfg, startup.migrate, migrating=True)
    if applied:
        out.print(f"applied schema revisions {', '.join(applied)}: the schema is up to date")
    else:
        out.print("the schema was already up to date: nothing applied")


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
    report_username: Annotated[
        str | None,
        typer.Option(
            help="HTTP Basic user presented on /mm7 (the gateway's simulator_inbound_username).",
            envvar="MMSGATE_SIMULATOR_INBOUND_USERNAME",
        ),
    ] = None,
    report_password: Annotated[
        str | None,
        typer.Option(
            help="Its password (the gateway's simulator_inbound_password).",
            envvar="MMSGATE_SIMULATOR_INBOUND_PASSWORD",
        ),
    ] = None,
    log_level: LogOpt = "info",
    log_format: LogFormatOpt = None,
) -> None:
    """Run the carrier simulator on its own: the MMSC takes MM7 SubmitReqs at
    http://HOST:PORT/mm7, the SMSC takes SMPP binds on HOST:SMPP_PORT."""
    from mmsgate.sim.mmsc import SimulatedMmsc
    from mmsgate.sim.smsc import Smsc

    check_port(port, "--port")
    check_port(smpp_port, "--smpp-port", zero=True)
    logs.configure(log_level, json=log_format is settings.LogFormat.JSON)
    mm7_socket = listen(host, port, "the simulated MMSC (--port)")
    smpp_socket = listen(host, smpp_port, "the simulated SMSC (--smpp-port)") if smpp_port else None
    if bool(report_username) != bool(report_password):
        raise typer.BadParameter("give --report-username and --report-password together")
    auth = (report_username, report_password) if report_username and report_password else None
    sim = SimulatedMmsc(report_url or None, max_bytes=max_bytes, journal=journal, report_auth=auth)
    url = f"http://{host}:{port}/mm7"
    said = f"simulated MMSC on {url}, reports to {report_url or 'nowhere'}"
    say(log_format, said, "sim.mmsc", url=url, report_url=report_url)

    async def go() -> None:
        smsc = Smsc()
        if smpp_socket is not None:
            await smsc.start(sock=smpp_socket)
            at = f"{host}:{smpp_port}"
            say(log_format, f"simulated SMSC on {at} (SMPP)", "sim.smsc", address=at)
        config = http_protocol.ServerConfig(
            sim.app(), limits=SIM_LIMITS, log_level="warning", log_config=None, access_log=False
        )
        runtime.tune_gc()
        try:
            await uvicorn.Server(config).serve(sockets=[mm7_socket])
        finally:
            await smsc.stop()

    uvloop.run(go())
