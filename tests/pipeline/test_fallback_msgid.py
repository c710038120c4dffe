"""The fallback SMS over SMPP to a simulated SMSC that spells its message ids in other bases
in submit_sm_resp, the receipt's TLV and its text: the receipts still end the SMS."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
import sqlalchemy as sa

from mmsgate.carriers.smpp import SmppConnector
from mmsgate.pipeline import fallback
from mmsgate.pipeline.deps import utc_now
from mmsgate.sim.smsc import Smsc
from mmsgate.store.schema import sms_parts
from tests.api.test_send_mms import SEED
from tests.conftest import Gateway, MediaServer
from tests.pipeline.test_deliver import FakeCarrier
from tests.pipeline.test_fallback import (
    REFUSED,
    SMS_ROUTE,
    FakeSms,
    deps_for,
    run_all,
    send,
    state_and_codes,
)

pytestmark = pytest.mark.anyio
DEADLINE = 20.0


async def test_receipts_with_the_tlv_in_hex_and_the_text_in_decimal_end_the_sms(
    gateway: Gateway, media_server: MediaServer
) -> None:
    """With msg_id_type 1, an SMSC answering in hex and writing each receipt's TLV in hex
    (of digits alone) but its text in decimal: both parts are delivered, N101 then N202,
    and the parts are recorded under the submit_sm_resp's ids without padding."""
    text = "Your MMS is waiting for you at the link below, open it soon. " * 2
    tracking_id = await send(gateway, media_server, SEED.replace("Your MMS is here", text))
    smsc = Smsc(report_delay=0.0, msg_id_type=1, tlv_id_base=16, first_id=0x12345678)
    await smsc.start("127.0.0.1", 0)
    route = dataclasses.replace(SMS_ROUTE, port=smsc.port, msg_id_type=1)
    sink = fallback.receipt_sink(gateway.services.db, utc_now)
    connector = SmppConnector(route, sink, backoff=(0.02, 0.2))
    deps = dataclasses.replace(
        deps_for(gateway, FakeCarrier(REFUSED), FakeSms()),
        sms_routes=[route],
        sms_connectors={route.name: connector},
    )
    try:
        await run_all(deps)
        async with asyncio.timeout(DEADLINE):  # each receipt is answered once it is applied
            await smsc.until(lambda: smsc.counts["deliver_acked"] == 2)
    finally:
        await connector.close()
        await smsc.stop()
    assert await state_and_codes(gateway, tracking_id) == ("sms_delivered", ["N101", "N202"])
    async with gateway.services.db.read() as conn:
        ids = await conn.scalars(
            sa.select(sms_parts.c.smsc_message_id)
            .where(sms_parts.c.tracking_id == tracking_id)
            .order_by(sms_parts.c.seq)
        )
        assert list(ids) == ["12345678", "12345679"]
    assert [s.message_id for s in smsc.submitted] == ["0012345678", "0012345679"]
