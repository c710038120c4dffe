"""Route health as one worker sees it: each submit's result tells whether the route itself
works (`SubmitResult.route_working`), and a change is written to the database (for every
process's `/readyz` and `/metrics`) and logged once, by the worker that wrote it.

A worker keeps what it last read of each route for REFRESH seconds, so a submit that
tells nothing new costs no database round trip: a healthy route is never written, and an
unhealthy one is written again only when its health flips, or when its reason changed
and the worker's view is older than REFRESH (a fault that alternates between two reasons
costs one write per REFRESH, not one per submit).

A fault is believed only when the MMSC answered no other submit of this worker since the
failed one was sent: one submit timing out after 30 s while others got their answers is
that submit's bad luck, not a route down (else a partly slow MMSC would flap the route's
health, and /readyz with it).
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import datetime as dt
import math
import time

import structlog

from mmsgate.store import route_health
from mmsgate.store.db import Database

log = structlog.get_logger(__name__)
REFRESH = 5.0  # seconds a worker trusts what it last read of a route's health


@dataclasses.dataclass(frozen=True, slots=True)
class _Seen:
    healthy: bool
    reason: str | None
    at: float  # time.monotonic() of the read or write


class RouteWatch:
    """Each route's health as this worker last read or wrote it."""

    def __init__(self) -> None:
        self._seen: dict[str, _Seen] = {}
        self._answered: dict[str, float] = {}  # time.monotonic() of the route's last MM7 answer
        self._locks: collections.defaultdict[str, asyncio.Lock] = collections.defaultdict(
            asyncio.Lock
        )

    def fault(self, route: str) -> str | None:
        """Why the route is unhealthy, as this worker last saw it; None when healthy or not
        seen."""
        seen = self._seen.get(route)
        return seen.reason if seen is not None and not seen.healthy else None

    async def observe(
        self,
        db: Database,
        route: str,
        working: bool | None,
        reason: str,
        *,
        sent: float,
        now: dt.datetime,
    ) -> None:
        """Take what one submit (sent at `sent`, time.monotonic()) told of the route; store
        and log it when it is news."""
        if working:
            self._answered[route] = time.monotonic()
        elif working is None or self._answered.get(route, -math.inf) > sent:
            return  # tells nothing, or the route answered others since: not the route's fault
        seen = self._seen.get(route)
        if seen is not None and time.monotonic() - seen.at < REFRESH and seen.healthy == working:
            return
        async with self._locks[route]:
            seen = self._seen.get(route)
            if seen is None or time.monotonic() - seen.at >= REFRESH:
                stored = await route_health.get(db, route)
                seen = _Seen(stored.healthy, stored.reason, time.monotonic())
                self._seen[route] = seen
            if seen.healthy == working and (working or seen.reason == reason):
                return
            changed = await route_health.change(db, route, healthy=working, reason=reason, now=now)
            self._seen[route] = _Seen(working, None if working else reason, time.monotonic())
        if changed is route_health.Change.NONE:
            return  # another worker saw it first, and said so
        if working:
            log.warning("route.healthy", route=route)
        else:
            log.error("route.unhealthy", route=route, reason=reason)
