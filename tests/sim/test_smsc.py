"""The simulated SMSC: its scripted outcomes, receipts, held receipts, and session rules.

The client here is smpp34's own ESME, an SMPP implementation independent of mmsgate's
connector, so these tests also show the simulator speaks SMPP others understand.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import smpp34

from mmsgate.carriers import smpp_pdu as wire
from mmsgate.carriers.smpp_receipt import parse_receipt_text
from mmsgate.sim.smsc import Smsc
from mmsgate.sms_text import Concat, encode_part, udh

pytestmark = pytest.mark.anyio
DEADLINE = 20.0

Esme = Callable[..., Awaitable[smpp34.Smsc]]


@pytest.fixture
async def smsc() -> AsyncIterator[Smsc]:
    sim = Smsc(report_delay=0.0)
    await sim.start()
    yield sim
    await sim.stop()


@pytest.fixture
async def esme(smsc: Smsc) -> AsyncIterator[Esme]:
    clients: list[smpp34.Client] = []

    async def bind(system_id: str = "esme", bind_type: str = "TRX") -> smpp34.Smsc:
        client = smpp34.Client("127.0.0.1", smsc.port, system_id, "pw", bind_type=bind_type)
        clients.append(client)
        async with asyncio.timeout(DEADLINE):
            return await client.connect()

    yield bind
    for client in clients:
        await client.stop()


async def submit(
    session: smpp34.Smsc, number: str, text: str = "hello", **options: Any
) -> smpp34.SubmitSmResp:
    async with asyncio.timeout(DEADLINE):
        return await session.submit_sm(
            number, text.encode(), source_addr="28444", registered_delivery=1, **options
        )


async def next_receipt(session: smpp34.Smsc) -> smpp34.DeliverSmEvent:
    async with asyncio.timeout(DEADLINE):
        event = await session.next()
    assert isinstance(event, smpp34.DeliverSmEvent)
    return event


def tlv(event: smpp34.DeliverSmEvent, tag: int) -> bytes | None:
    return next((t.value for t in event.tlvs if t.tag == tag), None)


@pytest.mark.parametrize(
    ("number", "stat", "err"),
    [
        ("17745551000", "DELIVRD", 0),
        ("17745550005", "DELIVRD", 0),
        ("17745550003", "EXPIRED", 0),
        ("17745550008", "UNDELIV", 1),
    ],
)
async def test_scripted_receipts(smsc: Smsc, esme: Esme, number: str, stat: str, err: int) -> None:
    """Accepted numbers get one receipt with both the TLVs and the text: ordinary and 0005
    delivered, 0003 expired, 0008 undeliverable with err 001 and a network error code."""
    session = await esme()
    resp = await submit(session, number, "Pictures at the link below")
    assert (resp.is_success, resp.command_status) == (True, 0)
    event = await next_receipt(session)
    assert event.esm_class == 0x04
    assert (event.source_addr, event.destination_addr) == (number, "28444")
    assert tlv(event, wire.TLV_RECEIPTED_MESSAGE_ID) == resp.message_id.encode() + b"\x00"  # type: ignore[union-attr]
    state = tlv(event, wire.TLV_MESSAGE_STATE)
    assert state == bytes([{"DELIVRD": 2, "EXPIRED": 3, "UNDELIV": 5}[stat]])
    text = parse_receipt_text(event.short_message.decode("ascii"))
    assert (text.id, text.stat, text.err, text.text) == (
        resp.message_id,
        stat,
        err,
        "Pictures at the link",
    )
    assert (tlv(event, wire.TLV_NETWORK_ERROR_CODE) is not None) == bool(err)


@pytest.mark.parametrize("silent", ["17745550006", "17745550002"])
async def test_numbers_without_receipts(smsc: Smsc, esme: Esme, silent: str) -> None:
    """0006 is accepted and 0002 refused with ESME_RINVDSTADR; neither gets a receipt: the
    next receipt on the bind is the one for a later ordinary number."""
    session = await esme()
    first = await submit(session, silent)
    expected = (True, 0) if silent.endswith("0006") else (False, wire.ESME_RINVDSTADR)
    assert (first.is_success, first.command_status) == expected
    later = await submit(session, "17745551000")
    event = await next_receipt(session)
    assert tlv(event, wire.TLV_RECEIPTED_MESSAGE_ID) == later.message_id.encode() + b"\x00"  # type: ignore[union-attr]


async def test_throttled_twice_then_accepted(smsc: Smsc, esme: Esme) -> None:
    """0010 is answered ESME_RTHROTTLED twice, then accepted."""
    session = await esme()
    statuses = [(await submit(session, "17745550010")).command_status for _ in range(3)]
    assert statuses == [wire.ESME_RTHROTTLED, wire.ESME_RTHROTTLED, 0]
    assert smsc.tries["17745550010"] == 3


async def test_submitted_records_udh_and_decoded_text(smsc: Smsc, esme: Esme) -> None:
    """A UCS-2 part with a UDH is recorded with its concatenation element and decoded text."""
    session = await esme()
    body = udh(9, 2, 1) + encode_part("Привет 😀", "ucs2")
    async with asyncio.timeout(DEADLINE):
        await session.submit_sm(
            "17745551000", body, source_addr="Shop", esm_class=0x40, data_coding=8
        )
    [seen] = smsc.submitted
    assert (seen.coding, seen.concat, seen.text, seen.sender) == (
        "ucs2",
        Concat(9, 2, 1),
        "Привет 😀",
        "Shop",
    )
    assert seen.registered_delivery == 0


async def test_no_receipt_without_registered_delivery(smsc: Smsc, esme: Esme) -> None:
    """A submit that asks for no receipt gets none."""
    session = await esme()
    async with asyncio.timeout(DEADLINE):
        await session.submit_sm("17745551000", b"x", source_addr="28444")
    await submit(session, "17745551001")
    event = await next_receipt(session)
    assert event.source_addr == "17745551001"


async def test_receipts_wait_for_a_receiving_bind(smsc: Smsc, esme: Esme) -> None:
    """Receipts owed to a system_id bound as transmitter only are held, then delivered to its
    next receiver bind, as real SMSCs hold them."""
    sender = await esme("shop", "TX")
    resp = await submit(sender, "17745551000")
    assert smsc.owed("shop") == 1
    receiver = await esme("shop", "RX")
    event = await next_receipt(receiver)
    assert tlv(event, wire.TLV_RECEIPTED_MESSAGE_ID) == resp.message_id.encode() + b"\x00"  # type: ignore[union-attr]
    assert smsc.owed("shop") == 0


async def test_held_receipts_survive_a_dropped_connection(smsc: Smsc, esme: Esme) -> None:
    """Receipts held while a connection drops go to the same system_id's next bind."""
    smsc.hold_receipts()
    first = await esme()
    resp = await submit(first, "17745551000")
    assert smsc.drop_connections() == 1
    async with asyncio.timeout(DEADLINE):
        assert isinstance(await first.next(), smpp34.Disconnected)
    smsc.hold_receipts(False)
    second = await esme()
    event = await next_receipt(second)
    assert tlv(event, wire.TLV_RECEIPTED_MESSAGE_ID) == resp.message_id.encode() + b"\x00"  # type: ignore[union-attr]


async def test_mo_text(smsc: Smsc, esme: Esme) -> None:
    """deliver_mo sends a plain deliver_sm (esm_class 0) to the named system_id."""
    session = await esme()
    smsc.deliver_mo("esme", "17745551234", "28444", "STOP")
    event = await next_receipt(session)
    assert (event.esm_class, event.short_message, event.source_addr) == (0, b"STOP", "17745551234")


# --- session rules, on raw PDUs ---------------------------------------------------------


async def raw_request(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    command: int,
    seq: int,
    body: bytes = b"",
) -> wire.Frame:
    writer.write(wire.pdu(command, 0, seq, body))
    async with asyncio.timeout(DEADLINE):
        return await wire.read_frame(reader)


async def test_refused_receipt_is_offered_again_then_dropped(
    smsc: Smsc, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A receipt the ESME answers with ESME_RX_T_APPN comes again, and after MAX_REFUSALS
    refusals the SMSC gives it up."""
    monkeypatch.setattr("mmsgate.sim.smsc.MAX_REFUSALS", 3)
    reader, writer = await asyncio.open_connection("127.0.0.1", smsc.port)
    try:
        bound = await raw_request(
            reader, writer, wire.BIND_TRANSCEIVER, 1, wire.encode_bind(wire.Bind("esme", "pw"))
        )
        assert bound.status == 0
        submit = smpp34.SubmitSm(
            "28444", "17745551000", b"hi", registered_delivery=1, sequence_number=2
        )
        writer.write(submit.encode())
        offered: list[wire.Frame] = []
        async with asyncio.timeout(DEADLINE):
            while len(offered) < 3:
                frame = await wire.read_frame(reader)
                if frame.command_id == wire.DELIVER_SM:
                    offered.append(frame)
                    writer.write(
                        wire.pdu(
                            wire.DELIVER_SM | wire.RESPONSE, wire.ESME_RX_T_APPN, frame.seq, b"\x00"
                        )
                    )
            await smsc.until(lambda: smsc.counts["deliver_dropped"] == 1)
        assert len({f.body for f in offered}) == 1  # the same receipt each time
        assert smsc.counts["deliver_refused"] == 3
        assert smsc.owed("esme") == 0
    finally:
        writer.close()


async def test_session_rules(smsc: Smsc) -> None:
    """enquire_link is answered before a bind; submit_sm before a bind is ESME_RINVBNDSTS;
    a wrong password is ESME_RINVPASWD; a good bind answers with the SMSC's name."""
    smsc.password = "secret"
    reader, writer = await asyncio.open_connection("127.0.0.1", smsc.port)
    try:
        link = await raw_request(reader, writer, wire.ENQUIRE_LINK, 1)
        assert (link.command_id, link.status, link.seq) == (wire.ENQUIRE_LINK | wire.RESPONSE, 0, 1)
        early = await raw_request(reader, writer, wire.SUBMIT_SM, 2, b"\x00" * 17)
        assert early.status == wire.ESME_RINVBNDSTS
        bad = await raw_request(
            reader, writer, wire.BIND_TRANSCEIVER, 3, wire.encode_bind(wire.Bind("esme", "nope"))
        )
        assert bad.status == wire.ESME_RINVPASWD
        good = await raw_request(
            reader, writer, wire.BIND_TRANSCEIVER, 4, wire.encode_bind(wire.Bind("esme", "secret"))
        )
        assert (good.status, wire.message_id_of(good.body)) == (0, "mmsgate-sim")
        again = await raw_request(
            reader, writer, wire.BIND_TRANSCEIVER, 5, wire.encode_bind(wire.Bind("esme", "secret"))
        )
        assert again.status == wire.ESME_RALYBND
        unknown = await raw_request(reader, writer, 0x00000103, 6)  # data_sm: not simulated
        assert (unknown.command_id, unknown.status) == (wire.GENERIC_NACK, wire.ESME_RINVCMDID)
        bye = await raw_request(reader, writer, wire.UNBIND, 7)
        assert (bye.command_id, bye.status) == (wire.UNBIND | wire.RESPONSE, 0)
        async with asyncio.timeout(DEADLINE):
            assert await reader.read() == b""  # the SMSC closes after unbind_resp
    finally:
        writer.close()
    assert (smsc.counts["enquire_links"], smsc.counts["binds"], smsc.counts["unbinds"]) == (1, 1, 1)


async def test_ids_spelled_in_bases_of_their_own() -> None:
    """With msg_id_type 1 and the TLV asked in hex, submit_sm_resp is padded upper-case hex,
    the receipt's TLV lower-case hex and its text's id decimal, all of one number."""
    sim = Smsc(report_delay=0.0, msg_id_type=1, tlv_id_base=16, first_id=0x12345678)
    await sim.start()
    client = smpp34.Client("127.0.0.1", sim.port, "esme", "pw", bind_type="TRX")
    try:
        async with asyncio.timeout(DEADLINE):
            session = await client.connect()
        resp = await submit(session, "17745551000")
        event = await next_receipt(session)
    finally:
        await client.stop()
        await sim.stop()
    assert resp.message_id == "0012345678"
    assert tlv(event, wire.TLV_RECEIPTED_MESSAGE_ID) == b"12345678\x00"
    assert parse_receipt_text(event.short_message.decode("ascii")).id == str(0x12345678)
