"""Building the whole system from its settings: the pipeline worker and its `Deps`, the
carriers (an MM7 client per route, SMPP or Kannel connectors), the carrier simulator for
`mmsgate run`, the API server and the metrics server. The command line (`cli`) parses
options, sets up the schema, and calls this; nothing here reads an option or sets up the
schema. What a person should see at start-up goes through the `Say` the command hands in."""

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
from types import MappingProxyType
from typing import Protocol

import uvicorn
from uvicorn.supervisors import Multiprocess

from mmsgate import http_protocol, http_server, models, routing, runtime, settings
from mmsgate.carriers.base import Carrier, ReceiptSink, SmsConnector
from mmsgate.carriers.kannel import KannelConnector
from mmsgate.carriers.mm7 import Mm7Carrier
from mmsgate.carriers.smpp import SmppConnector
from mmsgate.pipeline import deliver, encode, fallback, postbacks
from mmsgate.pipeline.deps import Deps, utc_now
from mmsgate.pipeline.postback_sender import PostbackSender
from mmsgate.pipeline.shares import PostbackShares
from mmsgate.pipeline.worker import FOREVER, Worker
from mmsgate.store.blobs import FileBlobStore
from mmsgate.store.db import Database

Background = Callable[[], contextlib.AbstractAsyncContextManager[None]]

# The simulator's MMSC: timeouts like the API's, but no cap per address, as a worker (one
# address) opens as many connections to it as it has submits in flight.
SIM_LIMITS = http_protocol.ConnectionLimits()


class Say(Protocol):
    """A start-up line for people (`text`), or with JSON logs the info `event` with `fields`."""

    def __call__(self, text: str, event: str, **fields: object) -> None: ...


@dataclasses.dataclass(frozen=True, slots=True)
class SimulatorSockets:
    """The built-in simulator's listening sockets, bound before anything starts."""

    mm7: socket.socket
    smpp: socket.socket


def api_limits(cfg: settings.Settings) -> http_protocol.ConnectionLimits:
    """What one connection may take of the API server (`[api]` in the config file)."""
    return http_protocol.ConnectionLimits(
        read_timeout=cfg.api.read_timeout,
        body_timeout=cfg.api.body_timeout,
        max_per_client=cfg.api.max_connections_per_client,
    )


def serve_api(
    cfg: settings.Settings,
    log_level: str,
    api_socket: socket.socket,
    say: Say,
    background: Background | None = None,
) -> bool:
    """The API in this process on `api_socket` until it is stopped, `background` running
    beside it; False when the app's start-up failed (uvicorn has logged why)."""
    from mmsgate.api.app import create_app

    where = "PostgreSQL" if cfg.database_url else str(cfg.data_dir.resolve())
    url = f"http://{cfg.host}:{cfg.port}"
    say(f"mmsgate listening on {url}  (data: {where})", "api.listening", url=url, data=where)
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
    return bool(server.started)


def serve_processes(
    cfg: settings.Settings,
    config: Path | None,
    workers: int,
    log_level: str,
    api_socket: socket.socket,
    say: Say,
) -> None:
    """Several API processes on one listening socket; each builds its app from the environment."""
    os.environ["MMSGATE_DATA_DIR"] = str(cfg.data_dir.resolve())
    os.environ["MMSGATE_LOG_LEVEL"] = log_level
    os.environ["MMSGATE_LOG_FORMAT"] = cfg.log_format.value
    if config is not None:
        os.environ["MMSGATE_CONFIG"] = str(config.resolve())
    url = f"http://{cfg.host}:{cfg.port}"
    say(
        f"mmsgate listening on {url} with {workers} processes",
        "api.listening",
        url=url,
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


def build_worker(cfg: settings.Settings) -> Worker:
    """A pipeline worker: saveMMS encoding, MMS delivery over each route, postbacks."""
    deps = build_deps(cfg)
    steps = {
        models.JobKind.DELIVER: deliver.deliver,
        models.JobKind.ENCODE_TEMPLATE: encode.encode_template,
        models.JobKind.POSTBACK: postbacks.send_postback,
        models.JobKind.FALLBACK_SMS: fallback.send_sms,
    }
    # A delivery retries until its message expires (days), not for a number of attempts.
    policies = {models.JobKind.DELIVER: FOREVER, models.JobKind.FALLBACK_SMS: FOREVER}
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


def build_deps(cfg: settings.Settings) -> Deps:
    """What the pipeline's steps use, complete: the store, the carriers, the SMS connectors
    (whose receipts go to the fallback step's sink), the limits."""
    db = Database(cfg.db_url)
    clock = utc_now
    sink = fallback.receipt_sink(db, clock)
    sms_routes = sms_routes_for(cfg)
    return Deps(
        db=db,
        blobs=FileBlobStore(cfg.blob_dir),
        http=PostbackSender(
            allow_private_networks=cfg.media.allow_private_networks,
            timeout=cfg.postbacks.timeout,
        ),
        profiles=cfg.profiles_in_use,
        clock=clock,
        routes=cfg.routes,
        carriers=MappingProxyType(carriers_for(cfg)),
        route_gates={r.name: asyncio.Semaphore(r.concurrency) for r in cfg.routes if r.concurrency},
        postback_shares=PostbackShares.for_worker(cfg.worker_concurrency, cfg.postbacks.per_host),
        sms_routes=sms_routes,
        sms_connectors=MappingProxyType(
            {r.name: sms_connector_for(cfg, r, sink) for r in sms_routes}
        ),
        public_url=cfg.public_url,
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
    await worker.deps.start()


async def stop_pipeline(worker: Worker) -> None:
    await worker.deps.aclose()


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


async def run_worker(cfg: settings.Settings, metrics_port: int | None) -> None:
    """`mmsgate worker`: the pipeline on this event loop, with its metrics server, until
    SIGTERM or SIGINT; raises ConfigError when `metrics_listen` cannot be bound."""
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
    cfg: settings.Settings, sims: SimulatorSockets, say: Say
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
    server = uvicorn.Server(sim_server_config(sim.app()))
    serving = asyncio.create_task(server.serve(sockets=[sims.mm7]), name="mmsgate-simulator")
    mmsc_url = f"http://127.0.0.1:{sims.mm7.getsockname()[1]}/mm7"
    say(f"simulated MMSC on {mmsc_url} (send an MO: POST /mo)", "sim.mmsc", url=mmsc_url)
    smsc_at = f"127.0.0.1:{smsc_port}"
    say(f"simulated SMSC on {smsc_at} (SMPP)", "sim.smsc", address=smsc_at)
    simulated = dataclasses.replace(cfg, simulator_url=mmsc_url, simulator_smsc=smsc_at)
    try:
        async with worker_running(simulated):
            yield
    finally:
        server.should_exit = True
        await serving
        sims.mm7.close()
        await smsc.stop()


def sim_server_config(app: http_server.Guarded) -> http_protocol.ServerConfig:
    """The simulated MMSC's HTTP server: its own limits, uvicorn's lines kept quiet."""
    return http_protocol.ServerConfig(
        app, limits=SIM_LIMITS, log_level="warning", log_config=None, access_log=False
    )


@dataclasses.dataclass(frozen=True, slots=True)
class CarrierSim:
    """`mmsgate carrier-sim`: the simulated MMSC's settings and its SMSC's socket."""

    host: str
    report_url: str | None
    max_bytes: int
    journal: Path | None
    report_auth: tuple[str, str] | None
    smpp_socket: socket.socket | None


async def run_carrier_sim(sim_cfg: CarrierSim, mm7_socket: socket.socket, say: Say) -> None:
    """The carrier simulator on its own until stopped: MMSC on `mm7_socket`, SMSC (if any)
    on its socket."""
    from mmsgate.sim.mmsc import SimulatedMmsc
    from mmsgate.sim.smsc import Smsc

    sim = SimulatedMmsc(
        sim_cfg.report_url,
        max_bytes=sim_cfg.max_bytes,
        journal=sim_cfg.journal,
        report_auth=sim_cfg.report_auth,
    )
    smsc = Smsc()
    if sim_cfg.smpp_socket is not None:
        await smsc.start(sock=sim_cfg.smpp_socket)
        at = f"{sim_cfg.host}:{sim_cfg.smpp_socket.getsockname()[1]}"
        say(f"simulated SMSC on {at} (SMPP)", "sim.smsc", address=at)
    runtime.tune_gc()
    try:
        await uvicorn.Server(sim_server_config(sim.app())).serve(sockets=[mm7_socket])
    finally:
        await smsc.stop()
