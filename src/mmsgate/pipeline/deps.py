"""What the pipeline steps share: built complete once per worker process (by
`mmsgate.assembly`) before the worker starts, passed to every step, closed by `aclose`."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
from collections.abc import Callable, Mapping, Sequence

from mmsgate.carriers.base import Carrier, SmsConnector
from mmsgate.media.prepared import PreparedCache
from mmsgate.pipeline.health import RouteWatch
from mmsgate.pipeline.postback_sender import PostbackSender
from mmsgate.pipeline.shares import PostbackShares
from mmsgate.profiles import PROFILES, CarrierProfile
from mmsgate.settings import Route, SmsRoute
from mmsgate.store.blobs import BlobStore
from mmsgate.store.db import Database


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclasses.dataclass(frozen=True, slots=True)
class Deps:
    """The database, blob store, postback sender, carriers, connectors and policies the steps
    use. Nothing in it is replaced once built; the caches and watches it holds keep their
    own state."""

    db: Database
    blobs: BlobStore
    http: PostbackSender  # the postbacks' HTTP client and targets; closed with the worker
    profiles: Sequence[CarrierProfile] = ()
    postback_window: dt.timedelta = dt.timedelta(hours=24)
    clock: Callable[[], dt.datetime] = utc_now
    routes: Sequence[Route] = ()
    carriers: Mapping[str, Carrier] = dataclasses.field(default_factory=dict)
    sms_routes: Sequence[SmsRoute] = ()
    # By SMS route name; each hands its receipts to `fallback.receipt_sink`.
    sms_connectors: Mapping[str, SmsConnector] = dataclasses.field(default_factory=dict)
    public_url: str = "http://127.0.0.1:8080"  # the base of hosted-page links
    # Messages prepared recently: a template sent to many numbers is composed once per worker.
    prepared: PreparedCache = dataclasses.field(default_factory=PreparedCache)
    # Submits in flight per route in this worker (a route's `concurrency`).
    route_gates: Mapping[str, asyncio.Semaphore] = dataclasses.field(default_factory=dict)
    # Postback POSTs in flight, per customer host and in all: a slow host holds few slots.
    postback_shares: PostbackShares = dataclasses.field(default_factory=PostbackShares)
    # Each route's health as this worker last saw it (written to the database on change).
    health: RouteWatch = dataclasses.field(default_factory=RouteWatch)

    def route_gate(self, name: str) -> contextlib.AbstractAsyncContextManager[object]:
        """The route's concurrency gate, or no gate when the route sets none."""
        return self.route_gates.get(name) or contextlib.nullcontext()

    def profile(self, name: str) -> CarrierProfile:
        """A profile by name: as configured, else as shipped."""
        return next((p for p in self.profiles if p.name == name), None) or PROFILES[name]

    async def start(self) -> None:
        """Bind the SMS connectors at once: receipts the SMSC holds for us arrive without
        waiting for the next SMS."""
        for connector in self.sms_connectors.values():
            await connector.start()

    async def aclose(self) -> None:
        """Close what these deps own: the carriers, the SMS connectors, the HTTP client and
        the database. Each is closed even when closing another fails (the first failure is
        raised after)."""
        closers = [c.close for c in self.carriers.values()]
        closers += [c.close for c in self.sms_connectors.values()]
        closers += [self.http.aclose, self.db.close]
        failed: BaseException | None = None
        for close in closers:
            try:
                await close()
            except Exception as exc:  # noqa: BLE001 - the rest are closed, then it is raised
                failed = failed or exc
        if failed is not None:
            raise failed
