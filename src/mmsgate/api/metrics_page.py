"""GET /metrics: this process's counters and histograms, plus the state of the whole system
read from the database (recipients by state and route, jobs by kind and state, the age of
the oldest due job), in the Prometheus text format."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import Response

from mmsgate import routing
from mmsgate.api.actions import Services
from mmsgate.store import jobs, route_health


async def metrics(svc: Services, _request: Request) -> Response:
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
    body = generate_latest() + ("\n".join(lines) + "\n").encode()
    return Response(body, media_type=CONTENT_TYPE_LATEST)


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
