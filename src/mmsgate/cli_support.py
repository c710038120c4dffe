"""What every `mmsgate` command shares: its consoles, common options, loading the settings,
opening the database, binding listening sockets, and the one place an error ends a command.

A mistake an operator can make (bad config, unusable data dir or database, taken port, a
refused account change or request) is an mmsgate error; whichever command raises it,
`Commands` ends it with one or two lines on stderr that say the fix and a non-zero exit
(2 for configuration, 1 for the rest), never a traceback."""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from typer.core import TyperGroup

from mmsgate import errors, settings
from mmsgate.store import startup
from mmsgate.store.db import Database

T = TypeVar("T")
LOG_LEVELS = ("debug", "info", "warning", "error")


def console(*, stderr: bool = False) -> Console:
    """A console that wraps at the terminal's width, and not at all when piped: a script
    reading `accounts list` or a log file gets whole lines (rich would fold at 80)."""
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else 100_000
    return Console(stderr=stderr, width=width, soft_wrap=width is not None)


out = console()
err = console(stderr=True)


def _log_level(value: str) -> str:
    if value.lower() not in LOG_LEVELS:
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(LOG_LEVELS)}")
    return value.lower()


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
LogOpt = Annotated[
    str,
    typer.Option("--log-level", callback=_log_level, help="debug, info, warning or error."),
]


def fail(message: str, code: int = 1) -> NoReturn:
    """End the command: the message on stderr, then exit with `code`."""
    err.print(f"[red]error:[/red] {message}", highlight=False)
    raise typer.Exit(code)


class Commands(TyperGroup):
    """The `mmsgate` command group: an mmsgate error any of its commands raises ends that
    command here, as `message_of` tells it."""

    # Any: the context is of typer's privately vendored click, which has no public name.
    def invoke(self, ctx: Any) -> object:
        try:
            return super().invoke(ctx)
        except errors.MmsgateError as exc:
            label, text, code = message_of(exc)
            err.print(f"[red]{label}:[/red] {text}", highlight=False)
            raise typer.Exit(code) from None


def message_of(exc: errors.MmsgateError) -> tuple[str, str, int]:
    """(label, text, exit code) of an error: a refused request by its Sinch code, a part that
    cannot be transcoded by its failure code, a bad configuration exit 2."""
    from mmsgate.media import prepare  # only when a preview failed: it loads the codecs

    if isinstance(exc, errors.ConfigError):
        return "configuration error", str(exc), 2
    if isinstance(exc, errors.ApiError):
        return exc.code.value, exc.info, 1
    if isinstance(exc, prepare.PartFailed):
        return prepare.failure_code(exc.kind), str(exc), 1
    return "error", str(exc), 1


def load_settings(
    config: Path | None, data_dir: Path | None = None, **more: object
) -> settings.Settings:
    """The settings, and a data dir that can be written (every command keeps files there)."""
    cfg = settings.load(config, dict(os.environ), data_dir=data_dir, **more)
    startup.check_data_dir(cfg.data_dir)
    return cfg


def with_db(
    cfg: settings.Settings, work: Callable[[Database], Awaitable[T]], *, schema: startup.Schema
) -> T:
    """Open the database, set up its schema as the command asks (`startup.Schema`), run
    `work`, close it."""

    async def go(db: Database) -> T:
        await startup.set_up(db, schema)
        return await work(db)

    return _opened(cfg, go)


def set_up_schema(cfg: settings.Settings, schema: startup.Schema) -> list[str]:
    """Only the schema's set-up, for a command that then builds the system; the revisions
    applied."""
    return _opened(cfg, lambda db: startup.set_up(db, schema))


def _opened(cfg: settings.Settings, work: Callable[[Database], Awaitable[T]]) -> T:
    """Open the database, run `work`, close it."""

    async def go() -> T:
        db = Database(cfg.db_url)
        try:
            return await work(db)
        finally:
            await db.close()

    return asyncio.run(go())


def check_port(value: int | None, option: str, *, zero: bool = False) -> None:
    """A port the kernel can bind: 1-65535 (0 too when it means "any free port")."""
    if value is not None and not (0 if zero else 1) <= value <= 65535:
        allowed = "0 (any free port) to 65535" if zero else "1 to 65535"
        fail(f"{option} {value}: a port is {allowed}", code=2)


def listen(host: str, port: int, what: str) -> socket.socket:
    """A listening TCP socket on host:port, or the command ends saying the port is taken.

    Bound before anything claims to listen, and handed to the server that serves on it."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.socket(family, socket.SOCK_STREAM)
    except OSError as exc:
        fail(f"{what}: cannot listen on {host}:{port} ({exc.strerror or exc}); check --host")
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        reason = (
            "the port is already in use"
            if exc.errno == errno.EADDRINUSE
            else exc.strerror or str(exc)
        )
        fail(f"{what}: cannot listen on {host}:{port}: {reason}; free it or choose another port")
    sock.set_inheritable(True)
    return sock
