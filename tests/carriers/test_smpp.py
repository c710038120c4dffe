"""The SMPP connector against the simulated SMSC on 127.0.0.1, and its receipt parsing."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import smpp34

from mmsgate.carriers.base import SmsReceipt, SmsSubmit
from mmsgate.carriers.smpp import SmppConnector, dest_address, source_address
from mmsgate.carriers.smpp_pdu import ESME_RINVDSTADR, ESME_RTHROTTLED
from mmsgate.carriers.smpp_receipt import (
    parse_receipt_text,
    read_receipt,
    receipted_id,
    submit_id,
)
from mmsgate.settings import SmsRoute
from mmsgate.sim.smsc import Smsc
from mmsgate.sms_text import Concat, segment

pytestmark = pytest.mark.anyio
LINK = "https://mms.example.com/m/Qm9vbGVhbkxpbmtUb2tlbjEyMw"
DEADLINE = 20.0  # seconds any wait in these tests may take before it counts as hung


@dataclasses.dataclass
class Sink:
    """A receipt sink that records, and raises for its first `fail_first` calls."""

    fail_first: int = 0
    calls: int = 0
    receipts: list[SmsReceipt] = dataclasses.field(default_factory=list)

    async def __call__(self, receipt: SmsReceipt) -> None:
        self.calls += 1
        if self.fail_first:
            self.fail_first -= 1
            raise RuntimeError("the store is down")
        self.receipts.append(receipt)


StartSmsc = Callable[..., Awaitable[Smsc]]
Connect = Callable[..., SmppConnector]


@pytest.fixture
async def start_smsc() -> AsyncIterator[StartSmsc]:
    started: list[Smsc] = []

    async def start(**options: Any) -> Smsc:
        smsc = Smsc(**{"report_delay": 0.0, **options})
        await smsc.start("127.0.0.1", 0)
        started.append(smsc)
        return smsc

    yield start
    for smsc in started:
        await smsc.stop()


@pytest.fixture
async def smsc(start_smsc: StartSmsc) -> Smsc:
    return await start_smsc()


@pytest.fixture
async def connect() -> AsyncIterator[Connect]:
    made: list[SmppConnector] = []

    def make(
        smsc: Smsc, sink: Sink, connector: dict[str, Any] | None = None, **route: Any
    ) -> SmppConnector:
        fields = {"system_id": "mmsgate", "password": "secret", **route}
        sms_route = SmsRoute(name="smsc", kind="smpp", host="127.0.0.1", port=smsc.port, **fields)
        options = {"backoff": (0.02, 0.2), "bind_wait": 10.0, "throttle_pause": 0.01}
        made.append(SmppConnector(sms_route, sink, **{**options, **(connector or {})}))
        return made[-1]

    yield make
    for connector in made:
        await connector.close()


def sms(
    recipient: str = "17745551000", text: str = "Your MMS is at the link.", **changes: Any
) -> SmsSubmit:
    seg = segment(text, keep_whole=[LINK])
    fields: dict[str, Any] = {
        "reference": "m1",
        "sender": "28444",
        "recipient": recipient,
        "coding": seg.coding,
        "parts": seg.parts,
        "concat_ref": 42,
    }
    return SmsSubmit(**{**fields, **changes})


async def until(smsc: Smsc, predicate: Callable[[], bool]) -> None:
    async with asyncio.timeout(DEADLINE):
        await smsc.until(predicate)


# --- submitting -----------------------------------------------------------------------------


async def test_single_gsm7_sms(smsc: Smsc, connect: Connect) -> None:
    """A short GSM-7 text goes out as one submit_sm: data_coding 0 unpacked, no UDH,
    receipt requested, short code 3/0 and the recipient 1/1 without '+'."""
    connector = connect(smsc, Sink())
    result = await connector.submit(sms(recipient="+17745551000", text="Hello {you} €5"))
    assert (result.accepted, result.status, len(result.message_ids)) == (True, 0, 1)
    [seen] = smsc.submitted
    assert (seen.coding, seen.text, seen.concat, seen.esm_class) == (
        "gsm7",
        "Hello {you} €5",
        None,
        0,
    )
    assert seen.registered_delivery == 1
    assert (seen.sender, seen.source_ton, seen.source_npi) == ("28444", 3, 0)
    assert (seen.recipient, seen.dest_ton, seen.dest_npi) == ("17745551000", 1, 1)
    assert seen.message_id == result.message_ids[0]


async def test_ucs2_sms(smsc: Smsc, connect: Connect) -> None:
    """A text with an emoji goes out as UCS-2 (data_coding 8) and arrives intact."""
    connector = connect(smsc, Sink())
    text = "Ваши фото готовы 😀"
    result = await connector.submit(sms(text=text))
    assert result.accepted
    [seen] = smsc.submitted
    assert (seen.coding, seen.text) == ("ucs2", text)


async def test_three_part_message_and_its_receipts(smsc: Smsc, connect: Connect) -> None:
    """A 3-part text goes out as three submit_sm with UDH 42/3/n and UDHI, in order, and each
    part's receipt reaches the sink under the id its submit_sm_resp gave."""
    sink = Sink()
    connector = connect(smsc, sink)
    text = "Your multimedia message could not be shown on this phone. " * 5 + LINK
    message = sms(text=text)
    assert len(message.parts) == 3
    result = await connector.submit(message)
    assert result.accepted
    assert len(result.message_ids) == 3
    assert [s.concat for s in smsc.submitted] == [Concat(42, 3, n) for n in (1, 2, 3)]
    assert [s.esm_class & 0x40 for s in smsc.submitted] == [0x40] * 3
    assert tuple(s.text for s in smsc.submitted) == message.parts
    assert "".join(s.text for s in smsc.submitted) == text
    await until(smsc, lambda: len(sink.receipts) == 3)
    assert sorted(r.message_id for r in sink.receipts) == sorted(result.message_ids)
    assert {(r.route, r.stat, r.error) for r in sink.receipts} == {("smsc", "DELIVRD", None)}


@pytest.mark.parametrize(
    ("recipient", "stat", "error"),
    [
        ("17745550008", "UNDELIV", "001"),
        ("17745550003", "EXPIRED", None),
        ("17745550005", "DELIVRD", None),
    ],
)
async def test_receipt_outcomes(
    smsc: Smsc, connect: Connect, recipient: str, stat: str, error: str | None
) -> None:
    """The simulated outcomes reach the sink: 0008 undeliverable (err 001), 0003 expired,
    0005 delivered (SMS works where MMS did not)."""
    sink = Sink()
    result = await connect(smsc, sink).submit(sms(recipient=recipient))
    await until(smsc, lambda: len(sink.receipts) == 1)
    [receipt] = sink.receipts
    assert (receipt.message_id, receipt.stat, receipt.error) == (result.message_ids[0], stat, error)
    assert receipt.final


async def test_refused_address_is_permanent(smsc: Smsc, connect: Connect) -> None:
    """ESME_RINVDSTADR (0002) is a permanent failure with its status and name."""
    result = await connect(smsc, Sink()).submit(sms(recipient="17745550002"))
    assert (result.accepted, result.transient, result.status) == (False, False, ESME_RINVDSTADR)
    assert "ESME_RINVDSTADR" in result.text


async def test_a_retry_sends_only_the_parts_not_taken(smsc: Smsc, connect: Connect) -> None:
    """0011 throttles part 2 of a long SMS once: the result names part 1's id, and a retry
    from part 2 sends part 2 alone; each part reaches the SMSC accepted exactly once."""
    connector = connect(smsc, Sink())
    long = sms(recipient="17745550011", text="A long message. " * 12 + LINK)
    assert len(long.parts) == 2
    first = await connector.submit(long)
    assert (first.accepted, first.transient, first.status) == (False, True, ESME_RTHROTTLED)
    assert len(first.message_ids) == 1
    assert "part 2 of 2" in first.text
    assert "parts 1-1 were accepted" in first.text
    retry = await connector.submit(dataclasses.replace(long, first=2))
    assert (retry.accepted, len(retry.message_ids)) == (True, 1)
    taken = [s for s in smsc.submitted if s.message_id is not None]
    assert [(s.concat.seq if s.concat else None) for s in taken] == [1, 2]
    assert [s.message_id for s in taken] == [*first.message_ids, *retry.message_ids]
    assert "".join(s.text for s in taken) == "".join(long.parts)


async def test_throttled_is_transient(smsc: Smsc, connect: Connect) -> None:
    """ESME_RTHROTTLED (0010, twice) is transient; the third try is accepted."""
    connector = connect(smsc, Sink())
    results = [await connector.submit(sms(recipient="17745550010")) for _ in range(3)]
    assert [(r.accepted, r.transient, r.status) for r in results] == [
        (False, True, ESME_RTHROTTLED),
        (False, True, ESME_RTHROTTLED),
        (True, False, 0),
    ]


async def test_later_part_failing_says_earlier_parts_were_accepted(
    smsc: Smsc, connect: Connect
) -> None:
    """When the connection drops under part 2 after part 1 was accepted, the result is
    transient, keeps part 1's id, says so in its text, and part 3 is never sent."""
    connector = connect(smsc, Sink())
    smsc.hold_answers()
    task = asyncio.create_task(connector.submit(sms(text="x" * 400)))
    await until(smsc, lambda: smsc.held == 1)
    smsc.hold_answers(False)  # answers part 1 ...
    smsc.hold_answers()  # ... and holds part 2
    await until(smsc, lambda: smsc.held == 1 and smsc.counts["accepted"] == 1)
    smsc.drop_connections()
    async with asyncio.timeout(DEADLINE):
        result = await task
    [part1] = [s.message_id for s in smsc.submitted]
    assert (result.accepted, result.transient, result.message_ids) == (False, True, (part1,))
    assert result.text.startswith("part 2 of 3: ")
    assert f"parts 1-1 were accepted: {part1}" in result.text
    assert smsc.counts["submits"] == 2


async def test_recipient_that_is_not_a_number_is_refused_before_sending(
    smsc: Smsc, connect: Connect
) -> None:
    """A recipient with letters is refused without a submit_sm."""
    result = await connect(smsc, Sink()).submit(sms(recipient="1774555abc"))
    assert (result.accepted, result.transient) == (False, False)
    assert smsc.counts["submits"] == 0


async def test_window_bounds_unanswered_submits(smsc: Smsc, connect: Connect) -> None:
    """With window 3 and six submits, only three are unanswered at the SMSC at once."""
    connector = connect(smsc, Sink(), window=3)
    smsc.hold_answers()
    tasks = [
        asyncio.create_task(connector.submit(sms(recipient=f"177455510{n:02d}"))) for n in range(6)
    ]
    await until(smsc, lambda: smsc.held == 3)
    # A round trip behind the submits on the same connection: anything else the connector
    # had written would have been read before this MO's answer.
    smsc.deliver_mo("mmsgate", "17745551234", "28444", "hi")
    await until(smsc, lambda: smsc.counts["deliver_acked"] == 1)
    assert smsc.held == 3
    smsc.hold_answers(False)
    async with asyncio.timeout(DEADLINE):
        results = await asyncio.gather(*tasks)
    assert all(r.accepted for r in results)
    assert smsc.counts["accepted"] == 6


async def test_max_sps_spaces_submits(smsc: Smsc, connect: Connect) -> None:
    """With max_sps 50, five submits take at least four intervals of 1/50 s."""
    connector = connect(smsc, Sink(), max_sps=50.0)
    async with asyncio.timeout(DEADLINE):
        await connector.wait_bound()
    loop = asyncio.get_running_loop()
    started = loop.time()
    results = await asyncio.gather(*(connector.submit(sms()) for _ in range(5)))
    assert all(r.accepted for r in results)
    assert loop.time() - started >= 4 / 50


# --- the session ----------------------------------------------------------------------------


async def test_enquire_link_is_sent(smsc: Smsc, connect: Connect) -> None:
    """The connector sends enquire_link every enquire_link_seconds while bound."""
    connector = connect(smsc, Sink(), enquire_link_seconds=0.05)
    await connector.start()
    await until(smsc, lambda: smsc.counts["enquire_links"] >= 2)
    assert connector.binds == 1


async def test_bind_carries_credentials_and_close_unbinds(
    start_smsc: StartSmsc, connect: Connect
) -> None:
    """An SMSC checking system_id and password binds the connector; close() unbinds."""
    smsc = await start_smsc(system_id="mmsgate", password="secret")
    connector = connect(smsc, Sink())
    assert (await connector.submit(sms())).accepted
    await connector.close()
    assert smsc.counts["unbinds"] == 1
    await until(smsc, lambda: smsc.bound == 0)


async def test_refused_bind_is_retried_and_submits_are_transient(
    start_smsc: StartSmsc, connect: Connect
) -> None:
    """A wrong password: binds are retried with backoff, and a submit returns transient
    once its bind wait runs out, naming the refusal."""
    smsc = await start_smsc(password="other")
    connector = connect(smsc, Sink(), connector={"bind_wait": 0.3})
    result = await connector.submit(sms())
    assert (result.accepted, result.transient) == (False, True)
    assert "ESME_RINVPASWD" in result.text
    await until(smsc, lambda: smsc.counts["binds_refused"] >= 2)
    assert smsc.counts["submits"] == 0


async def test_drop_mid_window(smsc: Smsc, connect: Connect) -> None:
    """A connection dropped with a full window: every submit returns (the unanswered ones
    transient, the rest accepted after the re-bind), none is counted twice, and receipts the
    SMSC held for earlier submits arrive after the re-bind."""
    sink = Sink()
    connector = connect(smsc, sink, window=4)
    smsc.hold_receipts()
    early = [await connector.submit(sms(recipient=f"177455520{n:02d}")) for n in range(3)]
    assert all(r.accepted for r in early)
    smsc.hold_answers()
    tasks = [
        asyncio.create_task(connector.submit(sms(recipient=f"177455530{n:02d}"))) for n in range(8)
    ]
    await until(smsc, lambda: smsc.held == 4)
    assert smsc.drop_connections() == 1
    smsc.hold_answers(False)
    smsc.hold_receipts(False)
    async with asyncio.timeout(DEADLINE):
        results = await asyncio.gather(*tasks)
    lost = [r for r in results if not r.accepted]
    sent = [r for r in results if r.accepted]
    assert (len(lost), len(sent)) == (4, 4)
    assert all(r.transient and "connection" in r.text for r in lost)
    assert connector.binds == 2
    accepted_ids = {i for r in early + sent for i in r.message_ids}
    assert {s.message_id for s in smsc.submitted if s.message_id} == accepted_ids
    assert smsc.counts["accepted"] == 7
    assert smsc.counts["discarded"] == 4
    await until(smsc, lambda: len(sink.receipts) == 7)
    assert {r.message_id for r in sink.receipts} == accepted_ids


async def test_sink_failure_gets_the_receipt_redelivered(smsc: Smsc, connect: Connect) -> None:
    """A sink that raises makes the connector answer ESME_RX_T_APPN; the SMSC redelivers
    and the second delivery reaches the sink."""
    sink = Sink(fail_first=1)
    result = await connect(smsc, sink).submit(sms())
    await until(smsc, lambda: len(sink.receipts) == 1)
    assert sink.calls == 2
    assert smsc.counts["deliver_refused"] == 1
    assert sink.receipts[0].message_id == result.message_ids[0]


async def test_mo_is_acknowledged_and_not_a_receipt(smsc: Smsc, connect: Connect) -> None:
    """A mobile-originated deliver_sm is acknowledged and never reaches the receipt sink."""
    sink = Sink()
    connector = connect(smsc, sink)
    await connector.start()
    smsc.deliver_mo("mmsgate", "17745551234", "28444", "STOP")
    await until(smsc, lambda: smsc.counts["deliver_acked"] == 1)
    assert sink.calls == 0


@pytest.mark.parametrize("msg_id_type", [0, 1, 2, 3])
@pytest.mark.parametrize("tlvs", [True, False])
async def test_msg_id_type_matches_receipts(
    start_smsc: StartSmsc, connect: Connect, msg_id_type: int, tlvs: bool
) -> None:
    """An SMSC spelling ids in other bases in submit_sm_resp and receipts (Kannel's
    msg-id-type 0-3), with or without TLVs: the receipt's id matches the submit's."""
    smsc = await start_smsc(msg_id_type=msg_id_type, receipt_tlvs=tlvs, receipt_seconds=True)
    sink = Sink()
    result = await connect(smsc, sink, msg_id_type=msg_id_type).submit(sms())
    await until(smsc, lambda: len(sink.receipts) == 1)
    assert sink.receipts[0].message_id == result.message_ids[0]
    assert sink.receipts[0].stat == "DELIVRD"
    assert sink.receipts[0].done_at is not None


async def test_without_msg_id_type_mismatched_bases_do_not_match(
    start_smsc: StartSmsc, connect: Connect
) -> None:
    """The same SMSC (hex submit, decimal receipt) without msg_id_type: ids differ, which is
    why the setting exists."""
    smsc = await start_smsc(msg_id_type=1)
    sink = Sink()
    result = await connect(smsc, sink).submit(sms())
    await until(smsc, lambda: len(sink.receipts) == 1)
    assert sink.receipts[0].message_id != result.message_ids[0]


# --- receipts, pure -------------------------------------------------------------------------


def test_parse_receipt_text_standard() -> None:
    """The Appendix B text with 10-digit dates reads field by field."""
    got = parse_receipt_text(
        "id:0123456789 sub:001 dlvrd:001 submit date:2407011230 done date:2407011231 stat:DELIVRD err:000 text:Hello there"
    )
    assert (got.id, got.sub, got.dlvrd, got.stat, got.err, got.text) == (
        "0123456789",
        "001",
        "001",
        "DELIVRD",
        0,
        "Hello there",
    )
    assert got.submit_date == dt.datetime(2024, 7, 1, 12, 30, tzinfo=dt.UTC)
    assert got.done_date == dt.datetime(2024, 7, 1, 12, 31, tzinfo=dt.UTC)


def test_parse_receipt_text_twelve_digit_dates_and_hex_err() -> None:
    """12-digit dates carry seconds; err may be hex with 0x."""
    got = parse_receipt_text(
        "id:abc sub:001 dlvrd:000 submit date:240701123005 done date:240701123159 stat:UNDELIV err:0x0B text:"
    )
    assert got.done_date == dt.datetime(2024, 7, 1, 12, 31, 59, tzinfo=dt.UTC)
    assert (got.stat, got.err, got.text) == ("UNDELIV", 11, "")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ID:77 Stat:delivrd Err:5 Text:hi", ("77", "DELIVRD", 5, "hi")),
        ("id:77 stat:EXPIRED", ("77", "EXPIRED", None, None)),
        ("id:77 stat:DELIVERED err:00B", ("77", "DELIVRD", 11, None)),
        ("id:77 stat:WHATEVER err:", ("77", "UNKNOWN", None, None)),
        ("stat:REJECTD text:id:99 stat:DELIVRD", (None, "REJECTD", None, "id:99 stat:DELIVRD")),
        ("no receipt here", (None, None, None, None)),
    ],
)
def test_parse_receipt_text_variants(text: str, expected: tuple[Any, ...]) -> None:
    """Keys in any case, spelled-out or unknown stats, missing fields, and a text: that looks
    like keys are all read without error."""
    got = parse_receipt_text(text)
    assert (got.id, got.stat, got.err, got.text) == expected


def test_parse_receipt_text_bad_dates_are_none() -> None:
    """A date of the wrong length or impossible value is None, not an exception."""
    got = parse_receipt_text("id:1 submit date:2413011200 done date:24070112 stat:DELIVRD")
    assert (got.submit_date, got.done_date) == (None, None)


@pytest.mark.parametrize(
    ("msg_id_type", "submitted", "receipted", "canonical"),
    [
        (None, "00AB12", "00AB12", "00AB12"),
        (0, "000123", "123", "123"),
        (1, "0000007b", "123", "7B"),
        (2, "123", "7B", "123"),
        (3, "00007B", "7b", "7B"),
    ],
)
def test_message_id_normalisation(
    msg_id_type: int | None, submitted: str, receipted: str, canonical: str
) -> None:
    """submit_sm_resp and receipt ids meet in one spelling for every msg_id_type."""
    assert submit_id(submitted, msg_id_type) == canonical
    assert receipted_id(None, receipted, msg_id_type) == canonical


def test_read_receipt_prefers_tlvs() -> None:
    """receipted_message_id and message_state win over the text; err comes from the text."""
    deliver = smpp34.DeliverSm(
        "17745551000",
        "28444",
        b"id:999 sub:001 dlvrd:001 submit date:2407011230 done date:2407011231 stat:DELIVRD err:004 text:x",
        esm_class=0x04,
        tlvs=[smpp34.Tlv(0x001E, b"abc\x00"), smpp34.Tlv(0x0427, b"\x05")],
    )
    receipt = read_receipt(deliver, "smsc", None)
    assert receipt is not None
    assert (receipt.message_id, receipt.stat, receipt.error) == ("abc", "UNDELIV", "004")


def test_read_receipt_without_any_id_is_none() -> None:
    """A receipt naming no message id cannot be matched: None."""
    deliver = smpp34.DeliverSm("1", "2", b"stat:DELIVRD", esm_class=0x04)
    assert read_receipt(deliver, "smsc", None) is None


# --- addresses ------------------------------------------------------------------------------


ROUTE = SmsRoute(name="smsc", kind="smpp", host="h", port=1, system_id="s")


@pytest.mark.parametrize(
    ("sender", "expected"),
    [
        ("28444", ("28444", 3, 0)),
        ("12345678", ("12345678", 3, 0)),
        ("+17745550100", ("17745550100", 1, 1)),
        ("17745550100", ("17745550100", 1, 1)),
        ("MMSGate", ("MMSGate", 5, 0)),
    ],
)
def test_source_address(sender: str, expected: tuple[str, int, int]) -> None:
    """Short codes are 3/0, longer numbers international 1/1 without '+', names 5/0."""
    assert source_address(sender, ROUTE) == expected


def test_source_address_route_override() -> None:
    """The route's source_ton/source_npi override the guess (short codes vary by carrier)."""
    route = dataclasses.replace(ROUTE, source_ton=0, source_npi=1)
    assert source_address("28444", route) == ("28444", 0, 1)


def test_dest_address() -> None:
    """The destination is digits only with the route's TON/NPI; anything else is None."""
    assert dest_address("+17745550100", ROUTE) == ("17745550100", 1, 1)
    assert dest_address("17745550100", dataclasses.replace(ROUTE, dest_ton=2)) == (
        "17745550100",
        2,
        1,
    )
    assert dest_address("1774555O100", ROUTE) is None
    assert dest_address("١٢٣", ROUTE) is None  # Arabic-Indic digits are not ASCII digits
