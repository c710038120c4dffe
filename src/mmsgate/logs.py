"""Logging set-up: structlog key/value events under stable dotted names, to stderr.

Two formats: `console` (`key=value`, coloured only on a terminal) and `json` (one JSON
object per line, for log collectors). Lines of stdlib loggers (uvicorn, asyncio, libraries)
go through structlog's ProcessorFormatter, so they come out in the same format as mmsgate's
own events, timestamp and level included, and nothing is left as plain text.
"""

from __future__ import annotations

import logging
import sys

import structlog


def quiet() -> None:
    """The logging of a command that sets up none of its own (`accounts`, `postbacks`,
    `migrate`, `preview`): warnings and errors to stderr, so that stdout holds only what the
    command prints (its `--json` among it). structlog's default would print every event,
    info included, to stdout. Loggers are not cached, so a later `configure` takes over."""
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=_stderr,
        cache_logger_on_first_use=False,
    )


def _stderr(*_args: object) -> structlog.PrintLogger:
    # sys.stderr as it is at each event: a test runner may swap it for the command's run.
    return structlog.PrintLogger(sys.stderr)


def configure(level: str = "info", json: bool = False) -> None:
    """Configure structlog and the stdlib root logger once, at start."""
    numeric = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    # The console renderer prints tracebacks itself; JSON needs them as a string field.
    rendering: list[structlog.typing.Processor] = (
        [structlog.processors.format_exc_info, _heading_first, structlog.processors.JSONRenderer()]
        if json
        else [structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())]
    )
    structlog.configure(
        processors=[*shared, *rendering],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *rendering],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    # Libraries speak at warning and above, unless mmsgate itself is asked for debug.
    root.setLevel(max(numeric, logging.WARNING) if numeric > logging.DEBUG else logging.DEBUG)


def _heading_first(
    _logger: object, _name: str, event: structlog.typing.EventDict
) -> structlog.typing.EventDict:
    """Time, level and event name lead each JSON line, as they do on the console."""
    head = {key: event.pop(key) for key in ("timestamp", "level", "event") if key in event}
    return {**head, **event}
