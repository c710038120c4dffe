"""GET /readyz: ready when the database answers, the queue is being worked, and every MM7
route is healthy.

The queue is stalled when jobs have been due for `worker_stall_seconds` and no worker has
claimed in that time (`store.workers`): every worker loop has ended, died with its process,
or fails its claims (the disk full, the database refusing writes). Nothing is delivered
then, whichever process answers, so /readyz answers 503 "worker stalled".

A route is unhealthy from the submit that found it unreachable or refusing our credentials
until a submit gets an MM7 answer from it again (the workers keep that in the database, so
any process can tell). Unhealthy routes make /readyz answer 503 with each route's reason:
the delivery path is not ready, and a check that reads only the status sees it. The API
still accepts while a route is unhealthy, or the queue stalled; its messages wait in the
queue.
"""

from __future__ import annotations

import datetime as dt

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mmsgate.api.actions import Services
from mmsgate.store import route_health, workers


async def readyz(svc: Services, _request: Request) -> Response:
    if not await svc.db.ping():
        return JSONResponse({"status": "database unreachable"}, 503)
    now = svc.clock()
    progress = await workers.progress(svc.db, now)
    unhealthy = await route_health.unhealthy(svc.db)
    routes = {h.route: {"reason": h.reason, "since": _iso(h.since)} for h in unhealthy}
    body: dict[str, object] = {"routes": routes} if routes else {}
    if progress.stalled(now, dt.timedelta(seconds=svc.settings.worker_stall_seconds)):
        worker = {
            "jobs_due_since": _iso(progress.due_since),
            "last_claim": _iso(progress.last_beat),
        }
        return JSONResponse({"status": "worker stalled", "worker": worker, **body}, 503)
    if routes:
        return JSONResponse({"status": "route unhealthy", **body}, 503)
    return JSONResponse({"status": "ok"})


def _iso(moment: dt.datetime | None) -> str | None:
    return moment.isoformat() if moment else None
