"""GET /metrics: this process's counters and histograms, plus the state of the whole system
read from the database (recipients by state and route, jobs by kind and state, the age of
the oldest due job, route health), in the Prometheus text format.

Who may read them (the counters name routes and volumes; the scrape reads the database):

- `metrics_token` set: only requests with `Authorization: Bearer <token>` (RFC 6750 §2.1),
  wherever metrics are served; others get 401 with `WWW-Authenticate: Bearer`.
- `metrics_listen` set: metrics are served on that address of their own, and not at all on
  the API port (404), which may then face the Internet without them.
- Neither: the API port serves them to loopback clients only (403 for others), so a fresh
  `mmsgate run` is scraped locally and a `serve --host 0.0.0.0` does not publish them.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hmac
import ipaddress
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from mmsgate import errors, http_protocol, routing
from mmsgate.api.actions import Services
from mmsgate.settings import Settings
from mmsgate.store import jobs, route_health, workers

Body = Callable[[], Awaitable[bytes]]


async def on_api_port(svc: Services, request: Request) -> Response:
    """GET /metrics on the API port."""
    if svc.settings.metrics_listen is not None:
        return PlainTextResponse("Not Found", 404)
    return await _serve(svc.settings, request, lambda: system_metrics(svc), api_port=True)


async def _serve(settings: Settings, request: Request, body: Body, *, api_port: bool) -> Response:
    refused = refusal(settings, request, api_port=api_port)
    if refused is not None:
        return refused
    return Response(await body(), media_type=CONTENT_TYPE_LATEST)


def refusal(settings: Settings, request: Request, *, api_port: bool) -> Response | None:
    """The answer to a scrape that may not read the metrics, or None when it may."""
    token = settings.metrics_token
    if token is not None:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip(), token):
            return None
        challenge = 'Bearer realm="mmsgate metrics"'
        if scheme:
            challenge += ', error="invalid_token"'
        return PlainTextResponse(
            "Unauthorized: send Authorization: Bearer <metrics_token>\n",
            401,
            headers={"WWW-Authenticate": challenge},
        )
    if api_port and not _loopback(request.client.host if request.client else None):
        return PlainTextResponse(
            "Forbidden: /metrics is served to loopback clients only; "
            "set metrics_token or metrics_listen to scrape from elsewhere\n",
            403,
        )
    return None


def _loopback(host: str | None) -> bool:
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def system_metrics(svc: Services) -> bytes:
    """This process's metrics, then the whole system's state read from the database."""
    state = await jobs.system_state(svc.db, svc.clock())
    lines = [
        "# HELP mmsgate_recipients Recipients by state and route (whole system).",
        "# TYPE mmsgate_recipients gauge",
    ]
    for (name, route), count in sorted(state["recipients"].items()):
        lines.append(f'mmsgate_recipients{{state="{name}",route="{route}"}} {count}')
    lines += [
        "# HELP mmsgate_jobs Queued work by kind and state (whole system).",
        "# TYPE mmsgate_jobs gauge",
    ]
    for (kind, name), count in sorted(state["jobs"].items()):
        lines.append(f'mmsgate_jobs{{kind="{kind}",state="{name}"}} {count}')
    lines += [
        "# HELP mmsgate_queue_oldest_seconds Age of the oldest job that is due, by kind.",
        "# TYPE mmsgate_queue_oldest_seconds gauge",
    ]
    for kind, age in sorted(state["oldest"].items()):
        lines.append(f'mmsgate_queue_oldest_seconds{{kind="{kind}"}} {age:.3f}')
    lines += await _route_health(svc)
    lines += await _workers(svc)
    return generate_latest() + ("\n".join(lines) + "\n").encode()


async def _route_health(svc: Services) -> list[str]:
    """1 for each healthy MM7 route, 0 for each unhealthy one (as the workers last found
    it): every route this process has configured, and every route the database knows."""
    known = await route_health.known(svc.db)
    unhealthy = {h.route for h in known if not h.healthy}
    names = {r.name for r in svc.settings.routes or (routing.SIMULATOR,)}
    names |= {h.route for h in known}
    lines = [
        "# HELP mmsgate_route_healthy 1 while an MM7 route works, 0 while it is unreachable "
        "or refuses our credentials (whole system).",
        "# TYPE mmsgate_route_healthy gauge",
    ]
    for name in sorted(names):
        lines.append(f'mmsgate_route_healthy{{route="{name}"}} {0 if name in unhealthy else 1}')
    return lines


async def _workers(svc: Services) -> list[str]:
    """Whether the queue is being worked (as /readyz judges it), and since when no worker
    has claimed."""
    now = svc.clock()
    progress = await workers.progress(svc.db, now)
    stall = dt.timedelta(seconds=svc.settings.worker_stall_seconds)
    lines = [
        "# HELP mmsgate_worker_stalled 1 while jobs have been due for worker_stall_seconds "
        "and no worker has claimed in that time, else 0 (whole system).",
        "# TYPE mmsgate_worker_stalled gauge",
        f"mmsgate_worker_stalled {1 if progress.stalled(now, stall) else 0}",
    ]
    if progress.last_beat is not None:
        age = (now - progress.last_beat).total_seconds()
        lines += [
            "# HELP mmsgate_worker_last_claim_seconds Seconds since any worker last claimed "
            "(whole system).",
            "# TYPE mmsgate_worker_last_claim_seconds gauge",
            f"mmsgate_worker_last_claim_seconds {age:.3f}",
        ]
    return lines


async def process_metrics() -> bytes:
    """This process's counters only (a worker's: the system's state is the API's to show)."""
    return generate_latest()


def metrics_app(settings: Settings, body: Body) -> Starlette:
    """The app of a metrics address of its own: GET /metrics, behind the token if one is set."""

    async def endpoint(request: Request) -> Response:
        return await _serve(settings, request, body, api_port=False)

    return Starlette(routes=[Route("/metrics", endpoint, methods=["GET"])])


def own_address(svc: Services) -> contextlib.AbstractAsyncContextManager[None]:
    """Serve the system metrics on `metrics_listen` while the API runs."""
    address = svc.settings.metrics_address
    assert address is not None
    app = metrics_app(svc.settings, lambda: system_metrics(svc))
    # `serve --workers N` runs N API processes: they share the address as they share the
    # API port, and each scrape is answered by one of them.
    return serving(app, address, share=True)


@contextlib.asynccontextmanager
async def serving(
    app: Starlette, address: tuple[str, int], *, share: bool = False
) -> AsyncIterator[None]:
    """Run `app` on `address` in this event loop until the block ends."""
    sock = _bound(address, share)
    # Timeouts against slow clients, as on the API port; scrapers are few, so no cap.
    config = http_protocol.ServerConfig(
        app,
        limits=http_protocol.ConnectionLimits(),
        log_config=None,
        access_log=False,
        lifespan="off",
    )
    server = _Embedded(config)
    task = asyncio.create_task(server.serve(sockets=[sock]), name="mmsgate-metrics")
    try:
        yield
    finally:
        server.should_exit = True
        await task
        sock.close()


def _bound(address: tuple[str, int], share: bool) -> socket.socket:
    host, port = address
    where = f"metrics_listen {host}:{port}"
    try:
        family, kind, proto, _, sockaddr = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise errors.ConfigError(f"{where}: {exc.strerror or exc}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if share:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(sockaddr)
    except OSError as exc:
        sock.close()
        raise errors.ConfigError(f"{where}: {exc.strerror or exc}") from None
    return sock


class _Embedded(uvicorn.Server):
    """A server run inside another's loop: the owner handles SIGTERM/SIGINT and stops it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield
