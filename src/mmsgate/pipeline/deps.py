"""What the pipeline steps share: built once per worker process, passed to every step."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from mmsgate.carriers.base import Carrier, SmsConnector
from mmsgate.pipeline.health import RouteWatch
from mmsgate.pipeline.postback_sender import PostbackSender
from mmsgate.pipeline.shares import PostbackShares
from mmsgate.profiles import PROFILES, CarrierProfile
from mmsgate.settings import Route, SmsRoute
from mmsgate.store.blobs import BlobStore
from mmsgate.store.db import Database


@dataclasses.dataclass(frozen=True, slots=True)
class Deps:
    """The database, blob store, postback sender and policies the steps use."""

    db: Database
    blobs: BlobStore
    http: PostbackSender  # the postbacks' HTTP client and targets; closed with the worker
    profiles: Sequence[CarrierProfile] = ()
    postback_window: dt.timedelta = dt.timedelta(hours=24)
    clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)
    routes: Sequence[Route] = ()
    carriers: Mapping[str, Carrier] = dataclasses.field(default_factory=dict)
    sms_routes: Sequence[SmsRoute] = ()
    # Filled once the deps exist: each connector hands its receipts to a sink built on them.
    sms_connectors: dict[str, SmsConnector] = dataclasses.field(default_factory=dict)
    public_url: str = "http://127.0.0.1:8080"  # the base of hosted-page links
    # Messages prepared recently, by template and personalisation: a template sent to many
    # numbers is composed once per worker, not once per recipient.
    prepared: dict[tuple[Any, ...], Any] = dataclasses.field(default_factory=dict)
    # Submits in flight per route in this worker (a route's `concurrency`).
    route_gates: Mapping[str, asyncio.Semaphore] = dataclasses.field(default_factory=dict)
    # Postback POSTs in flight, per customer host and in all: a slow host holds few slots.
    postback_shares: PostbackShares = dataclasses.field(default_factory=PostbackShares)
    # Each route's health as this worker last saw it (written to the database on change).
    health: RouteWatch = dataclasses.field(default_factory=RouteWatch)

    async def aclose(self) -> None:
        """Close what the deps hold open: the postback sender's connections."""
        await self.http.aclose()

    def route_gate(self, name: str) -> contextlib.AbstractAsyncContextManager[Any]:
        """The route's concurrency gate, or no gate when the route sets none."""
        return self.route_gates.get(name) or contextlib.nullcontext()

    def profile(self, name: str) -> CarrierProfile:
        """A profile by name: as configured, else as shipped."""
        return next((p for p in self.profiles if p.name == name), None) or PROFILES[name]
