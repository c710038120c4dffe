"""GET /readyz: ready when the database answers and every MM7 route is healthy.

A route is unhealthy from the submit that found it unreachable or refusing our credentials
until a submit gets an MM7 answer from it again (the workers keep that in the database, so
any process can tell). Unhealthy routes make /readyz answer 503 with each route's reason:
the delivery path is not ready, and a check that reads only the status sees it. The API
still accepts while a route is unhealthy; its messages wait in the queue.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mmsgate.api.actions import Services
from mmsgate.store import route_health


async def readyz(svc: Services, _request: Request) -> Response:
    if not await svc.db.ping():
        return JSONResponse({"status": "database unreachable"}, 503)
    unhealthy = await route_health.unhealthy(svc.db)
    if not unhealthy:
        return JSONResponse({"status": "ok"})
    routes = {
        h.route: {"reason": h.reason, "since": h.since.isoformat() if h.since else None}
        for h in unhealthy
    }
    return JSONResponse({"status": "route unhealthy", "routes": routes}, 503)
