"""What one worker's postbacks share: keep-alive connections to the customers, behind the
address guard unless private networks are allowed, and each account's postback URL, secret
and format, read again when older than TARGET_TTL seconds. Built once with the worker's
`Deps` and closed with them."""

from __future__ import annotations

import time

from mmsgate import http_client, http_lean, models
from mmsgate.store import accounts
from mmsgate.store.db import Database

POSTS_IN_FLIGHT = 64  # connections per customer host and worker; `shares` admits fewer
ANSWER_READ = 8 * 1024  # bytes of a customer's answer read; the rest is never waited for
# An account's postback URL, secret and format are read once a second at most: a change takes
# effect for postbacks sent from a second after it on.
TARGET_TTL = 1.0


class PostbackSender:
    """The postback HTTP client and the accounts' postback targets; `aclose` at shutdown."""

    def __init__(self, *, allow_private_networks: bool = False, timeout: float = 10.0) -> None:
        self.client = http_lean.LeanClient(
            timeout=timeout,
            connect_timeout=timeout,
            max_connections=POSTS_IN_FLIGHT,
            # Only the status line counts: a long (or endless) answer is cut short, unread.
            max_body=ANSWER_READ,
            truncate_body=True,
            # Checked as each connection opens, on the addresses it then uses: no lookup per
            # postback, and no gap between the address checked and the one connected to.
            resolve=None if allow_private_networks else http_client.guarded(),
        )
        self.targets: dict[int, tuple[float, models.PostbackTarget | None]] = {}

    async def target(self, db: Database, account_id: int) -> models.PostbackTarget | None:
        """The account's postback URL, secret and format, or None when there is no such
        account."""
        now = time.monotonic()
        known = self.targets.get(account_id)
        if known is None or now - known[0] > TARGET_TTL:
            if len(self.targets) > 10_000:
                self.targets.clear()
            known = self.targets[account_id] = (now, await accounts.postback_target(db, account_id))
        return known[1]

    async def aclose(self) -> None:
        """Close the connections to the customers."""
        await self.client.aclose()
