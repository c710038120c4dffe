"""Who may call: API-key lookup (briefly cached), API access, IP allow-list, action rights,
throughput (E113) and the daily request cap (E120).

Throughput and daily caps are counted in this process; with several `serve` processes each
enforces the account's limits on the requests it receives.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
import time
from collections.abc import Callable

from mmsgate import codes, errors, models
from mmsgate.api import request_log
from mmsgate.store import accounts
from mmsgate.store.db import Database

E = codes.ErrorCode


@dataclasses.dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class Guard:
    """Checks one request's credentials and limits, in Sinch's order of errors."""

    def __init__(
        self, db: Database, cache_seconds: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._db = db
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._accounts: dict[str, tuple[models.Account, float]] = {}
        self._buckets: dict[int, _Bucket] = {}
        self._daily: dict[int, tuple[dt.date, int]] = {}

    async def check(
        self, api_key: str | None, action: models.Action, client_ip: str | None
    ) -> models.Account:
        account = await self.authenticate(api_key)
        if not account.api_enabled:
            raise errors.ApiError(E.NO_API_ACCESS)
        if account.allowed_ips and not ip_allowed(client_ip, account.allowed_ips):
            raise errors.ApiError(
                E.IP_NOT_ALLOWED, f"IP address {client_ip} is not in this account's allow-list"
            )
        if not account.may(action):
            raise errors.ApiError(
                E.ACTION_NOT_ALLOWED, f"Action {action.value} is not allowed for this account"
            )
        self._take_token(account)
        self._count_daily(account)
        return account

    async def authenticate(self, api_key: str | None) -> models.Account:
        if not api_key:
            raise errors.Unauthenticated(
                E.BAD_API_KEY, "Authentication failed: <api-key> is required"
            )
        now = self._clock()
        cached = self._accounts.get(api_key)
        if cached is not None and cached[1] > now:
            request_log.note(account=cached[0].name)
            return cached[0]
        account = await accounts.by_key(self._db, api_key)
        if account is None:
            self._accounts.pop(api_key, None)
            raise errors.Unauthenticated(E.BAD_API_KEY)
        if len(self._accounts) > 10_000:
            self._accounts.clear()
        self._accounts[api_key] = (account, now + self._cache_seconds)
        request_log.note(account=account.name)
        return account

    def _take_token(self, account: models.Account) -> None:
        if not account.max_rps:
            return
        now = self._clock()
        burst = max(1.0, account.max_rps)
        bucket = self._buckets.setdefault(account.id, _Bucket(burst, now))
        bucket.tokens = min(burst, bucket.tokens + (now - bucket.updated) * account.max_rps)
        bucket.updated = now
        if bucket.tokens < 1.0:
            raise errors.ApiError(
                E.THROUGHPUT_EXCEEDED,
                f"Throughput exceeded: at most {account.max_rps:g} requests per second",
            )
        bucket.tokens -= 1.0

    def _count_daily(self, account: models.Account) -> None:
        if account.daily_limit is None:
            return
        today = dt.datetime.now(dt.UTC).date()
        day, count = self._daily.get(account.id, (today, 0))
        if day != today:
            count = 0
        if count >= account.daily_limit:
            raise errors.ApiError(
                E.REQUEST_LIMIT,
                f"API request limit reached: {account.daily_limit} requests per day (UTC)",
            )
        self._daily[account.id] = (today, count + 1)


def ip_allowed(client_ip: str | None, allowed: tuple[str, ...]) -> bool:
    """Whether the address is in any of the allowed addresses or networks."""
    if client_ip is None:
        return False
    try:
        address = ipaddress.ip_address(client_ip)
    except ValueError:
        return False
    for entry in allowed:
        try:
            if address in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue
    return False
