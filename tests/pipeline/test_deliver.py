"""The deliver step with a fake carrier: what each MMSC answer makes of the recipient and
its postback, expiry before sending, no route, and the shared per-route rate limit."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import types
from typing import Any, cast

import pytest
import sqlalchemy as sa

from mmsgate import models, routing
from mmsgate.carriers.base import SubmitResult
from mmsgate.mm7_codec import Submit
from mmsgate.pipeline import deliver
from mmsgate.pipeline.deps import Deps
from mmsgate.pipeline.postback_sender import PostbackSender
from mmsgate.pipeline.postbacks import body_of
from mmsgate.pipeline.worker import Worker
from mmsgate.profiles import PROFILES
from mmsgate.settings import Route
from mmsgate.store import pacing
from mmsgate.store.db import Database
from mmsgate.store.schema import jobs, recipients
from tests import samples
from tests.api.test_send_mms import SEED
from tests.conftest import Gateway, MediaServer

pytestmark = pytest.mark.anyio


class FakeCarrier:
    """An MMSC that answers every submit with the result it was given, and keeps them."""

    def __init__(self, result: SubmitResult) -> None:
        self.result = result
        self.submits: list[Submit] = []

    async def submit(self, submit: Submit) -> SubmitResult:
        self.submits.append(submit)
        return self.result

    async def close(self) -> None:
        return None


async def accept(gateway: Gateway, media_server: MediaServer) -> str:
    media_server.add("/images/1.jpg", "image/jpeg", samples.jpeg())
    media_server.add("/audio/1.mp3", "audio/mpeg", samples.mp3())
    media_server.add("/cal/2.ics", "text/calendar", samples.ICAL)
    response = await gateway.xml(SEED.format(key=gateway.api_key, base=media_server.base))
    return response.text.split("<tracking-id>")[1].split("<")[0]


async def run_deliveries(
    gateway: Gateway, carrier: FakeCarrier, clock: dt.datetime | None = None
) -> None:
    deps = Deps(
        gateway.services.db,
        gateway.services.blobs,
        PostbackSender(),
        profiles=[PROFILES["default"]],
        carriers={routing.SIMULATOR.name: carrier},
        clock=(lambda: clock) if clock else (lambda: dt.datetime.now(dt.UTC)),
    )
    worker = Worker(gateway.services.db, {models.JobKind.DELIVER: deliver.deliver}, deps)
    try:
        await worker.run_once()
    finally:
        await deps.http.aclose()


async def outcome(db: Database, tracking_id: str) -> tuple[str, list[str], str]:
    """The recipient's state, the postback codes queued, and the deliver job's state."""
    async with db.read() as conn:
        state = await conn.scalar(
            sa.select(recipients.c.state).where(recipients.c.tracking_id == tracking_id)
        )
        bodies = await conn.scalars(
            sa.select(jobs.c.payload).where(jobs.c.kind == models.JobKind.POSTBACK.value)
        )
        job = await conn.scalar(
            sa.select(jobs.c.state).where(jobs.c.kind == models.JobKind.DELIVER.value)
        )
    codes = [body_of(b)[0].decode().split("<code>")[1].split("<")[0] for b in bodies]
    return str(state), codes, str(job)


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        (SubmitResult(True, "mmsc-7", 1000, "Success"), ("submitted", ["N101"], "done")),
        (SubmitResult(False, None, 2002, "Address Error"), ("failed", ["E101"], "done")),
        (SubmitResult(False, None, 3001, "Not Possible"), ("queued", [], "done")),
        (SubmitResult(False, None, 2004, "Content refused"), ("queued", [], "done")),
        (SubmitResult(False, None, 4006, "Busy", transient=True), ("queued", [], "pending")),
    ],
)
async def test_each_answer_of_the_mmsc(
    gateway: Gateway,
    media_server: MediaServer,
    result: SubmitResult,
    expected: tuple[str, list[str], str],
) -> None:
    """Accepted → submitted + N101; address error → E101; content or MMS refused → the SMS
    fallback's job is queued (the customer hears of it when the SMS goes); busy → retried
    later."""
    tracking_id = await accept(gateway, media_server)
    carrier = FakeCarrier(result)
    await run_deliveries(gateway, carrier)
    assert await outcome(gateway.services.db, tracking_id) == expected
    [submit] = carrier.submits
    assert list(submit.recipients) == ["12399471613"]
    assert submit.content_type.startswith("multipart/related")
    assert submit.expiry is not None


async def test_a_refusal_queues_the_fallback_with_the_deliver_jobs_end(
    gateway: Gateway, media_server: MediaServer
) -> None:
    """MM7 3001 ends the deliver job done with one fallback job queued beside it, for the
    same recipient and naming the refusal; the deliver step itself begins nothing."""
    tracking_id = await accept(gateway, media_server)
    await run_deliveries(gateway, FakeCarrier(SubmitResult(False, None, 3001, "Not Possible")))
    async with gateway.services.db.read() as conn:
        queued = (
            await conn.execute(
                sa.select(jobs.c.kind, jobs.c.state, jobs.c.tracking_id, jobs.c.payload)
                .where(jobs.c.kind != models.JobKind.DELIVER.value)
                .order_by(jobs.c.id)
            )
        ).all()
    [(kind, state, for_whom, payload)] = queued
    assert (kind, state, for_whom) == ("fallback_sms", "pending", tracking_id)
    assert payload == {"reason": "MMS refused by simulator: Not Possible"}


async def test_the_mmsc_message_id_is_kept_for_reports(
    gateway: Gateway, media_server: MediaServer
) -> None:
    """The MessageID from SubmitRsp is stored on the recipient."""
    tracking_id = await accept(gateway, media_server)
    await run_deliveries(gateway, FakeCarrier(SubmitResult(True, "mmsc-42", 1000, "Success")))
    async with gateway.services.db.read() as conn:
        stored = await conn.scalar(
            sa.select(recipients.c.carrier_message_id).where(
                recipients.c.tracking_id == tracking_id
            )
        )
    assert stored == "mmsc-42"


async def test_a_message_that_expired_in_the_queue_is_never_sent(
    gateway: Gateway, media_server: MediaServer
) -> None:
    """Four days later (expiry is three) the worker sends nothing and posts N103."""
    tracking_id = await accept(gateway, media_server)
    carrier = FakeCarrier(SubmitResult(True, "x", 1000, "Success"))
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=4)
    await run_deliveries(gateway, carrier, clock=later)
    assert carrier.submits == []
    assert await outcome(gateway.services.db, tracking_id) == ("expired", ["N103"], "done")


async def test_deliveries_of_one_template_at_once_prepare_it_once(
    gateway: Gateway, media_server: MediaServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Eight deliveries of the same message start together: one preparation serves all."""
    media_server.add("/images/1.jpg", "image/jpeg", samples.jpeg())
    media_server.add("/audio/1.mp3", "audio/mpeg", samples.mp3())
    media_server.add("/cal/2.ics", "text/calendar", samples.ICAL)
    numbers = ",".join(f"123994716{n:02d}" for n in range(8))
    request = SEED.replace("<to>12399471613</to>", f"<to>{numbers}</to>")
    response = await gateway.xml(request.format(key=gateway.api_key, base=media_server.base))
    assert response.text.count("<tracking-id>") == 8
    calls = 0
    real = deliver.prepare.prepare

    async def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)  # slow enough that all eight are waiting for it
        return await real(*args, **kwargs)

    monkeypatch.setattr(deliver.prepare, "prepare", counted)
    carrier = FakeCarrier(SubmitResult(True, "x", 1000, "Success"))
    await run_deliveries(gateway, carrier)
    assert len(carrier.submits) == 8
    assert calls == 1


async def test_a_job_run_twice_submits_once(gateway: Gateway, media_server: MediaServer) -> None:
    """A delivery job taken over after its recipient moved on does nothing."""
    await accept(gateway, media_server)
    carrier = FakeCarrier(SubmitResult(True, "x", 1000, "Success"))
    await run_deliveries(gateway, carrier)
    async with gateway.services.db.write() as conn:
        await conn.execute(jobs.update().values(state="pending"))
    await run_deliveries(gateway, carrier)
    assert len(carrier.submits) == 1


async def test_rate_limit_slots_are_shared_and_evenly_spaced(gateway: Gateway) -> None:
    """Forty concurrent takers of a 20/s route get forty distinct slots 50 ms apart,
    whichever process they are in: the bucket is in the database."""
    db = gateway.services.db
    other = Database(db.url)  # a second worker process would have its own engine
    try:
        slots = await asyncio.gather(
            *(
                pacing.take_slot(db if n % 2 else other, "att", 20.0, lambda: 1000.0)
                for n in range(40)
            )
        )
    finally:
        await other.close()
    assert sorted(round(s, 6) for s in slots) == [round(1000.0 + n * 0.05, 6) for n in range(40)]
    later = await pacing.take_slot(db, "att", 20.0, lambda: 1010.0)
    assert later == 1010.0  # an idle route sends at once


async def test_a_submit_late_for_its_slot_takes_another(gateway: Gateway) -> None:
    """A submit that wakes 200 ms after its slot (the worker was held up) does not go at
    once, in a burst with every other late one: it takes the next free slot."""
    times = iter([1000.0, 1000.0, 1000.2, 1000.2, 1000.2, 1000.21])
    deps = cast(
        Deps,
        types.SimpleNamespace(
            db=gateway.services.db,
            clock=lambda: dt.datetime.fromtimestamp(next(times), dt.UTC),
        ),
    )
    route = Route(name="att", kind="mm7", url="http://x", max_mps=20.0)
    await deliver._wait_for_slot(deps, route)
    assert next(times, None) is None  # two slots taken: at 1000.0, then 1000.2
    assert await pacing.take_slot(gateway.services.db, "att", 20.0, lambda: 1000.21) == 1000.25


def test_routes_take_their_concurrency_and_rate_from_config() -> None:
    """`concurrency` and `max_mps` are route keys."""
    route = dataclasses.replace(Route(name="att", kind="mm7", url="http://x"), max_mps=100.0)
    assert route.max_mps == 100.0
    assert Route(name="a", concurrency=4).concurrency == 4
