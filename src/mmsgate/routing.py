"""Which configured route takes a message: by operator id, then number prefix, then default."""

from __future__ import annotations

from collections.abc import Sequence

from mmsgate.settings import Route, SmsRoute

SIMULATOR = Route(name="simulator", kind="simulator", default=True)
# The fallback SMS route when none is configured: the simulator's SMSC (`simulator_smsc`).
SIMULATOR_SMS = SmsRoute(name="simulator-sms", kind="simulator", system_id="mmsgate", default=True)


def route_for(routes: Sequence[Route], operator_id: int | None, msisdn: str | None) -> Route | None:
    """The route for this destination; the built-in simulator when no routes are configured.

    None means no configured route serves it (the API answers E628).
    """
    if not routes:
        return SIMULATOR
    if operator_id is not None:
        for route in routes:
            if operator_id in route.operators:
                return route
    if msisdn is not None:
        best: tuple[int, Route] | None = None
        for route in routes:
            for prefix in route.prefixes:
                if msisdn.startswith(prefix) and (best is None or len(prefix) > best[0]):
                    best = (len(prefix), route)
        if best is not None:
            return best[1]
    return next((r for r in routes if r.default), None)
