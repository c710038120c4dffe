"""Who is calling /mm7: the routes a request authenticates as, and the numbers a route
serves. A route authenticates a request when every check it names holds: its HTTP Basic
pair (compared in constant time) and its source networks (`inbound_ips`)."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hmac
import ipaddress
from collections.abc import Sequence

from mmsgate import routing
from mmsgate.settings import Route, Settings


def inbound_routes(settings: Settings) -> tuple[Route, ...]:
    """The routes an MMSC may call us as; a simulator route without credentials of its
    own takes the simulator's pair (`simulator_inbound_*`)."""
    routes = []
    for route in settings.routes or (routing.SIMULATOR,):
        if route.kind == "simulator" and not route.inbound_username and not route.inbound_ips:
            route = dataclasses.replace(
                route,
                inbound_username=settings.simulator_inbound_username,
                inbound_password=settings.simulator_inbound_password,
            )
        routes.append(route)
    return tuple(routes)


def basic_pair(authorization: str | None) -> tuple[str, str] | None:
    """The user and password of an `Authorization: Basic` header (RFC 7617), or None."""
    scheme, _, encoded = (authorization or "").strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, colon, password = decoded.partition(":")
    return (user, password) if colon else None


def authenticated(
    routes: Sequence[Route], pair: tuple[str, str] | None, client: str | None
) -> tuple[Route, ...]:
    """The routes whose every inbound check this caller passes (a route naming none of
    them, the simulator's without a pair, authenticates nobody)."""
    return tuple(route for route in routes if _passes(route, pair, client))


def _passes(route: Route, pair: tuple[str, str] | None, client: str | None) -> bool:
    if not route.inbound_username and not route.inbound_ips:
        return False
    if route.inbound_username:
        given_user, given_password = pair or ("", "")
        # Both compared whatever the first gives, so timing tells neither apart.
        user_ok = _same(given_user, route.inbound_username)
        password_ok = _same(given_password, route.inbound_password or "")
        if pair is None or not (user_ok and password_ok):
            return False
    return not route.inbound_ips or _from(client, route.inbound_ips)


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def _from(client: str | None, cidrs: Sequence[str]) -> bool:
    try:
        address = ipaddress.ip_address(client or "")
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in ipaddress.ip_network(cidr, strict=False) for cidr in cidrs)


def serves(routes: Sequence[Route], route: Route, number: str) -> bool:
    """True when `route` is where mmsgate would send to `number` (its prefixes, then the
    default, as outbound routing decides), or `number` is the route's service code: an MO
    to one of our numbers is believed only from the MMSC that number is reached through."""
    digits = number.removeprefix("+")
    if route.service_code and route.service_code.removeprefix("+") == digits:
        return True
    chosen = routing.route_for(routes, None, digits)
    return chosen is not None and chosen.name == route.name
