"""One `api.request` log line per API request: who called, what for, how it ended, how long
it took.

The line is written by `logged`, around the request; what only the handlers know (the
account, the action, the tracking-ids, the result code) they `note` as they learn it, into
a note kept in a context variable for the request's task. Nothing is read or looked up to
log: the line costs one dict and one render, on the hot path too.

Logged: the Sinch API (`/ep/v1/`), `/v1/*`, MM7 from carriers (`/mm7`) and Kannel's receipts
(`/kannel/dlr`). Not logged: the hosted page and its media, `/metrics`, the health checks
(polled every few seconds, they would drown the rest).
"""

from __future__ import annotations

import contextvars
import dataclasses
import time

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = structlog.get_logger(__name__)
LOGGED = ("/ep/v1", "/v1/", "/mm7", "/kannel/dlr")
SUCCESS = "Success"


@dataclasses.dataclass(slots=True)
class Note:
    """What the handlers learnt about one request."""

    account: str | None = None
    action: str | None = None
    code: str | None = None
    info: str | None = None
    tracking_ids: tuple[str, ...] = ()
    status: int | None = None  # when no answer reached the client: 499, it left first
    replayed: bool = False  # answered again for its Idempotency-Key (api/idempotency.py)


_current: contextvars.ContextVar[Note | None] = contextvars.ContextVar(
    "mmsgate_request_note", default=None
)


def note(
    *,
    account: str | None = None,
    action: str | None = None,
    code: str | None = None,
    info: str | None = None,
    tracking_ids: tuple[str, ...] = (),
    status: int | None = None,
    replayed: bool = False,
) -> None:
    """Add to the current request's line; outside a logged request, nothing happens."""
    current = _current.get()
    if current is None:
        return
    if account is not None:
        current.account = account
    if action is not None:
        current.action = action
    if code is not None:
        current.code, current.info = code, info
    if tracking_ids:
        current.tracking_ids = tracking_ids
    if status is not None:
        current.status = status
    if replayed:
        current.replayed = True


def is_logged(path: str) -> bool:
    return path.startswith(LOGGED)


async def logged(app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    """Run the request through `app`, then write its line (also when `app` raised)."""
    started = time.perf_counter()
    status = 500  # what the client gets when the app fails before answering

    async def sending(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        await send(message)

    current = Note()
    token = _current.set(current)
    try:
        await app(scope, receive, sending)
    finally:
        _current.reset(token)
        ms = (time.perf_counter() - started) * 1000
        _write(scope, current, current.status or status, ms)


def _write(scope: Scope, current: Note, status: int, ms: float) -> None:
    code = current.code or (SUCCESS if status < 400 else f"HTTP {status}")
    fields = {
        "method": scope["method"],
        "path": scope["path"],
        "status": status,
        "ms": round(ms, 1),
        "account": current.account,
        "action": current.action,
        "code": code,
    }
    if current.info and code != SUCCESS:
        fields["info"] = current.info
    if len(current.tracking_ids) == 1:
        fields["tracking_id"] = current.tracking_ids[0]
    elif current.tracking_ids:
        fields["tracking_ids"] = list(current.tracking_ids)
    if current.replayed:
        fields["replayed"] = True
    log.info("api.request", **fields)
