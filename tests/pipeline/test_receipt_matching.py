"""How a receipt finds its SMS part when SMSC message ids repeat (an SMSC restarting or
wrapping its counter): the newest part still waiting for that id takes it, a final part is
never moved, and a part recorded while its receipt is being matched still gets it."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from mmsgate import models
from mmsgate.carriers.base import SmsResult
from mmsgate.store import fallbacks
from mmsgate.store.schema import jobs, recipients, sms_parts
from tests.conftest import Gateway, MediaServer
from tests.pipeline.test_deliver import FakeCarrier
from tests.pipeline.test_fallback import REFUSED, FakeSms, deps_for, run_all, send, state_and_codes

pytestmark = pytest.mark.anyio
BUSY = SmsResult(False, (), 0x58, "throttled", transient=True)


async def recipient_state(gateway: Gateway, tracking_id: str) -> str:
    async with gateway.services.db.read() as conn:
        query = sa.select(recipients.c.state).where(recipients.c.tracking_id == tracking_id)
        return str(await conn.scalar(query))


async def part_stat(gateway: Gateway, tracking_id: str) -> str | None:
    async with gateway.services.db.read() as conn:
        query = sa.select(sms_parts.c.stat).where(sms_parts.c.tracking_id == tracking_id)
        return await conn.scalar(query)


async def sms_job_running(gateway: Gateway, tracking_id: str) -> None:
    """Put the SMS job back in the hands of a worker, as in the middle of send_sms."""
    async with gateway.services.db.write() as conn:
        await conn.execute(
            jobs.update()
            .where(
                jobs.c.tracking_id == tracking_id,
                jobs.c.kind == models.JobKind.FALLBACK_SMS.value,
            )
            .values(state=models.JobState.RUNNING.value)
        )


async def test_a_reused_smsc_id_moves_the_newest_waiting_part(
    gateway: Gateway, media_server: MediaServer
) -> None:
    """After an SMSC restarts its ids, a receipt with the id of an old, finished part moves
    the new part waiting for it, and leaves the old one as it was."""
    db, now = gateway.services.db, dt.datetime.now(dt.UTC)
    old = await send(gateway, media_server)
    await run_all(deps_for(gateway, FakeCarrier(REFUSED), FakeSms()))
    assert await fallbacks.apply_receipt(db, "smsc", "smsc-1-0", "UNDELIV", "001", now=now)
    new = await send(gateway, media_server)
    await run_all(deps_for(gateway, FakeCarrier(REFUSED), FakeSms()))  # ids from 1 again
    assert await fallbacks.apply_receipt(db, "smsc", "smsc-1-0", "DELIVRD", None, now=now)
    assert await recipient_state(gateway, new) == "sms_delivered"
    assert await part_stat(gateway, new) == "DELIVRD"
    assert await recipient_state(gateway, old) == "sms_failed"
    assert await part_stat(gateway, old) == "UNDELIV"
    codes = (await state_and_codes(gateway, new))[1]
    assert codes == ["N101", "E202", "N101", "N202"]


async def test_of_two_waiting_parts_with_one_id_the_newest_takes_the_receipt(
    gateway: Gateway, media_server: MediaServer
) -> None:
    """Two SMS waiting under one SMSC id: the receipt goes to the one sent last."""
    db, now = gateway.services.db, dt.datetime.now(dt.UTC)
    old = await send(gateway, media_server)
    await run_all(deps_for(gateway, FakeCarrier(REFUSED), FakeSms()))
    new = await send(gateway, media_server)
    await run_all(deps_for(gateway, FakeCarrier(REFUSED), FakeSms()))
    assert await fallbacks.apply_receipt(db, "smsc", "smsc-1-0", "DELIVRD", None, now=now)
    assert (await recipient_state(gateway, new), await part_stat(gateway, new)) == (
        "sms_delivered",
        "DELIVRD",
    )
    assert (await recipient_state(gateway, old), await part_stat(gateway, old)) == (
        "sms_submitted",
        None,
    )


async def test_a_receipt_for_a_final_part_is_refused_while_an_sms_is_being_submitted(
    gateway: Gateway, media_server: MediaServer
) -> None:
    """With only a final part under its id, a receipt is a repeat (acknowledged, changing
    nothing) unless an SMS job is running with parts not yet recorded: then it may be that
    SMS's receipt beating its record, so it is refused, to come again."""
    db, now = gateway.services.db, dt.datetime.now(dt.UTC)
    old = await send(gateway, media_server)
    await run_all(deps_for(gateway, FakeCarrier(REFUSED), FakeSms()))
    assert await fallbacks.apply_receipt(db, "smsc", "smsc-1-0", "DELIVRD", None, now=now)
    assert not await fallbacks.apply_receipt(db, "smsc", "smsc-1-0", "UNDELIV", None, now=now)
    new = await send(gateway, media_server)
    await run_all(deps_for(gateway, FakeCarrier(REFUSED), FakeSms(BUSY)))
    await sms_job_running(gateway, new)
    with pytest.raises(fallbacks.UnknownPart):
        await fallbacks.apply_receipt(db, "smsc", "smsc-1-0", "UNDELIV", None, now=now)
    assert (await recipient_state(gateway, old), await part_stat(gateway, old)) == (
        "sms_delivered",
        "DELIVRD",
    )
    assert await recipient_state(gateway, new) == "fallback"


async def test_a_part_recorded_while_its_receipt_is_matched_still_gets_it(
    gateway: Gateway, media_server: MediaServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A receipt that finds no waiting part, and whose SMS's submit is recorded just after
    that first look, is applied to the part (N202), not taken for a repeat and dropped."""
    db, now = gateway.services.db, dt.datetime.now(dt.UTC)
    tracking_id = await send(gateway, media_server)
    await run_all(deps_for(gateway, FakeCarrier(REFUSED), FakeSms(BUSY)))
    await sms_job_running(gateway, tracking_id)
    row = await fallbacks.for_sms(db, tracking_id)
    read, looks = db.read, []

    @contextlib.asynccontextmanager
    async def read_then_record() -> AsyncIterator[AsyncConnection]:
        async with read() as conn:
            yield conn
        if not looks:  # the worker's record of the submit commits after the first look
            looks.append(1)
            assert await fallbacks.submitted(db, row, "smsc", ("smsc-9-0",), now=now)

    monkeypatch.setattr(db, "read", read_then_record)
    assert await fallbacks.apply_receipt(db, "smsc", "smsc-9-0", "DELIVRD", None, now=now)
    monkeypatch.undo()
    assert (await recipient_state(gateway, tracking_id), await part_stat(gateway, tracking_id)) == (
        "sms_delivered",
        "DELIVRD",
    )
    assert (await state_and_codes(gateway, tracking_id))[1] == ["N101", "N202"]
