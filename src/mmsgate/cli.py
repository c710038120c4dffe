"""The `mmsgate` command: run, serve, worker, migrate, postbacks, preview, carrier-sim
(the accounts commands are in `cli_accounts`). Each command parses its options, binds its
ports, sets up the schema, and hands over to `assembly`, which builds the system."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated

import structlog
import typer
import uvloop

from mmsgate import assembly, cli_accounts, cli_postbacks, cli_preview, errors, logs, settings
from mmsgate.cli_support import (
    Commands,
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
    set_up_schema,
)
from mmsgate.store import accounts
from mmsgate.store.db import Database
from mmsgate.store.startup import Schema

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
    cls=Commands,
    help="mmsgate: a self-hostable MMS platform speaking the Sinch MMS API.",
    no_args_is_help=True,
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


def sayer(fmt: settings.LogFormat | None) -> assembly.Say:
    """Start-up lines for people: printed, or with JSON logs info events like any other."""

    def say(text: str, event: str, **fields: object) -> None:
        if fmt is settings.LogFormat.JSON:
            structlog.get_logger("mmsgate.cli").info(event, **fields)
        else:
            err.print(text)

    return say


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
    cfg = assembly.simulator_credentials(
        load_settings(config, data_dir, host=host, port=port, log_format=log_format)
    )
    check_port(sim_mm7_port, "--sim-mm7-port", zero=True)
    check_port(sim_smpp_port, "--sim-smpp-port", zero=True)
    configure_logs(cfg, log_level)
    # Every port first: a taken one ends the start before the database or the demo account
    # is touched, so nothing (least of all the demo key) is spent on a start that fails.
    api_socket = listen(cfg.host, cfg.port, "the API")
    sims: assembly.SimulatorSockets | None = None
    if cfg.simulated:
        sims = assembly.SimulatorSockets(
            listen("127.0.0.1", sim_mm7_port or 0, "the simulated MMSC (--sim-mm7-port)"),
            listen("127.0.0.1", sim_smpp_port or 0, "the simulated SMSC (--sim-smpp-port)"),
        )
    set_up_schema(cfg, Schema.MIGRATE)
    say = sayer(cfg.log_format)
    if sims is not None:
        say(
            "[yellow]No carrier routes configured: every message goes to the built-in "
            "carrier simulator (simulated delivery).[/yellow]",
            "carrier.simulated",
        )

    def background() -> contextlib.AbstractAsyncContextManager[None]:
        if sims is None:
            return demo_account_shown(cfg, assembly.worker_running(cfg))
        return demo_account_shown(cfg, assembly.simulator_and_worker(cfg, sims, say))

    if not assembly.serve_api(cfg, log_level, api_socket, say, background=background):
        raise typer.Exit(3)  # the app's start-up failed (uvicorn logged why)


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
    set_up_schema(cfg, Schema.READY)
    api_socket = listen(cfg.host, cfg.port, "the API")
    say = sayer(cfg.log_format)
    if workers > 1:
        assembly.serve_processes(cfg, config, workers, log_level, api_socket, say)
    elif not assembly.serve_api(cfg, log_level, api_socket, say):
        raise typer.Exit(3)  # the app's start-up failed (uvicorn logged why)


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
    set_up_schema(cfg, Schema.READY)
    if metrics_port is not None:
        metrics = listen("127.0.0.1", metrics_port, "the metrics listener (--metrics-port)")
        metrics.close()  # free again for the worker's metrics server, which binds it itself
    try:
        # The loop `serve` runs on too: less overhead per I/O event.
        uvloop.run(assembly.run_worker(cfg, metrics_port))
    except errors.ConfigError as exc:  # metrics_listen could not be bound
        fail(str(exc))


@app.command()
def migrate(config: ConfigOpt = None, data_dir: DataDirOpt = None) -> None:
    """Apply the database schema (PostgreSQL or SQLite) up to the newest revision."""
    cfg = load_settings(config, data_dir)
    applied = set_up_schema(cfg, Schema.MIGRATE)
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
    check_port(port, "--port")
    check_port(smpp_port, "--smpp-port", zero=True)
    logs.configure(log_level, json=log_format is settings.LogFormat.JSON)
    mm7_socket = listen(host, port, "the simulated MMSC (--port)")
    smpp_socket = listen(host, smpp_port, "the simulated SMSC (--smpp-port)") if smpp_port else None
    if bool(report_username) != bool(report_password):
        raise typer.BadParameter("give --report-username and --report-password together")
    auth = (report_username, report_password) if report_username and report_password else None
    sim = assembly.CarrierSim(host, report_url or None, max_bytes, journal, auth, smpp_socket)
    url = f"http://{host}:{port}/mm7"
    said = f"simulated MMSC on {url}, reports to {report_url or 'nowhere'}"
    say = sayer(log_format)
    say(said, "sim.mmsc", url=url, report_url=report_url)
    uvloop.run(assembly.run_carrier_sim(sim, mm7_socket, say))
