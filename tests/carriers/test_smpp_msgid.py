"""Message id spellings: an SMSC writing ids in other bases in submit_sm_resp, the receipt's
receipted_message_id TLV and its text still has each receipt matched to its part, both over
loopback against the simulated SMSC and in the normalisation functions themselves."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator

import pytest
import smpp34
from structlog.testing import capture_logs

from mmsgate.carriers.base import SmsReceipt, SmsSubmit
from mmsgate.carriers.smpp import SmppConnector
from mmsgate.carriers.smpp_pdu import TLV_RECEIPTED_MESSAGE_ID, cstring
from mmsgate.carriers.smpp_receipt import read_receipt, receipted_id, submit_id
from mmsgate.settings import SmsRoute
from mmsgate.sim.smsc import Smsc
from mmsgate.sim.smsc_ids import IdSpelling
from mmsgate.sms_text import segment

pytestmark = pytest.mark.anyio
DEADLINE = 20.0
LETTERS, DIGITS = 0x2A000001, 0x12345678  # hex "2a000001" has letters, "12345678" has not


def _decidable(msg_id_type: int, tlv: int | None, text: int, first: int) -> bool:
    """Whether a receipt written this way names one message: a TLV and a text in different
    bases pin each other down; one base alone must be the configured one, or hex with letters.
    (All-digit ids in the wrong base alone are other numbers, for mmsgate as for Kannel.)"""
    if tlv is not None and tlv != text:
        return True
    configured = 16 if msg_id_type & 2 else 10
    return text == configured or (text == 16 and first == LETTERS)


FORMS = [
    pytest.param(kind, tlv, text, first, id=f"type{kind}-tlv{tlv or '-absent'}-text{text}-{name}")
    for kind, tlv, text, (name, first) in itertools.product(
        (0, 1, 2, 3), (10, 16, None), (10, 16), (("letters", LETTERS), ("digits", DIGITS))
    )
    if _decidable(kind, tlv, text, first)
]


class Sink:
    def __init__(self) -> None:
        self.receipts: list[SmsReceipt] = []

    async def __call__(self, receipt: SmsReceipt) -> None:
        self.receipts.append(receipt)


@pytest.fixture
async def smsc_and_connector() -> AsyncIterator[list[Smsc | SmppConnector]]:
    made: list[Smsc | SmppConnector] = []
    yield made
    for thing in reversed(made):
        await (thing.close() if isinstance(thing, SmppConnector) else thing.stop())


@pytest.mark.parametrize(("msg_id_type", "tlv_base", "text_base", "first_id"), FORMS)
async def test_receipt_matches_its_part_whatever_base_each_id_is_in(
    smsc_and_connector: list[Smsc | SmppConnector],
    msg_id_type: int,
    tlv_base: int | None,
    text_base: int,
    first_id: int,
) -> None:
    """For every msg_id_type, a receipt whose TLV is in hex or decimal or absent and whose
    text's id is in hex or decimal names the id the part was recorded under."""
    smsc = Smsc(
        report_delay=0.0,
        msg_id_type=msg_id_type,
        receipt_tlvs=tlv_base is not None,
        tlv_id_base=tlv_base,
        text_id_base=text_base,
        first_id=first_id,
    )
    smsc_and_connector.append(smsc)
    await smsc.start("127.0.0.1", 0)
    sink = Sink()
    route = SmsRoute(
        name="smsc",
        kind="smpp",
        host="127.0.0.1",
        port=smsc.port,
        system_id="mmsgate",
        password="secret",
        msg_id_type=msg_id_type,
    )
    connector = SmppConnector(route, sink, backoff=(0.02, 0.2), bind_wait=10.0)
    smsc_and_connector.append(connector)
    seg = segment("Your MMS is at the link.")
    submit = SmsSubmit("m1", "28444", "17745551000", coding=seg.coding, parts=seg.parts)
    result = await connector.submit(submit)
    assert result.accepted
    async with asyncio.timeout(DEADLINE):
        await smsc.until(lambda: len(sink.receipts) == 1)
    assert sink.receipts[0].message_id == result.message_ids[0]
    canonical = f"{first_id:X}" if msg_id_type & 1 else str(first_id)
    assert result.message_ids[0] == canonical


def test_the_simulated_smsc_spells_each_id_its_own_way() -> None:
    """The simulated SMSC writes submit_sm_resp as msg_id_type says, and the receipt text and
    TLV each in the base asked for (as the text when the TLV's is not given)."""
    hostile = IdSpelling(1, text_base=10, tlv_base=16)
    assert (hostile.submit(42), hostile.text(42), hostile.tlv(42)) == ("000000002A", "42", "2a")
    plain = IdSpelling(2)
    assert (plain.submit(42), plain.text(42), plain.tlv(42)) == ("000000000042", "2a", "2a")
    assert IdSpelling().tlv(42) == IdSpelling().submit(42) == "0000000042"
    with pytest.raises(ValueError, match="tlv_base"):
        IdSpelling(1, tlv_base=8)


# --- the normalisation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("msg_id_type", "given", "canonical"),
    [
        (None, " 00ab12\x00", "00ab12"),
        (0, "000123", "123"),
        (0, "2a", "42"),  # not all digits: hex, whatever the setting says (as Kannel)
        (1, "0000007b", "7B"),
        (1, "0x7B", "7B"),
        (2, "123", "123"),
        (3, "00007b", "7B"),
        (0, "id-7", "id-7"),  # no number at all: kept as the SMSC wrote it
        (0, "١٢٣", "١٢٣"),  # digits of another script are not an SMPP id's digits
        (0, "1_0", "1_0"),
    ],
)
def test_submit_id_spelling(msg_id_type: int | None, given: str, canonical: str) -> None:
    """submit_sm_resp ids become upper-case hex or decimal without padding, as the setting's
    bit 0 says, ids that are not all digits read as hex, and anything else is left as is."""
    assert submit_id(given, msg_id_type) == canonical


@pytest.mark.parametrize(
    ("msg_id_type", "tlv", "text", "canonical"),
    [
        # msg_id_type 1: hex in submit_sm_resp, decimal in receipts.
        (1, "305419896", "305419896", "12345678"),  # both as the setting says
        (1, "12345678", "305419896", "12345678"),  # TLV in hex of digits alone, text decimal
        (1, "2a000001", "704643073", "2A000001"),
        (1, "00012345678", "0305419896", "12345678"),  # padded, both
        (1, None, "305419896", "12345678"),  # text alone
        (1, "305419896", None, "12345678"),  # TLV alone
        (1, None, "2a000001", "2A000001"),  # text alone in hex: it has letters
        (1, "12345678", "12345678", "BC614E"),  # agreeing, all digits: the setting decides
        # msg_id_type 0 and 2: decimal in submit_sm_resp.
        (0, "12345678", "305419896", "305419896"),
        (0, "2a000001", "2a000001", "704643073"),
        (2, "2a000001", "704643073", "704643073"),
        (2, "704643073", "2a000001", "704643073"),  # TLV in decimal as submit_sm_resp, text hex
        (2, None, "12345678", "305419896"),
        # msg_id_type 3: hex everywhere, an SMSC writing the TLV in decimal.
        (3, "305419896", "12345678", "12345678"),
        # No msg_id_type: ids are opaque strings, the TLV first.
        (None, "0012AB", "12ab", "0012AB"),
        (None, None, "12ab", "12ab"),
        (None, None, None, None),
        (1, "\x00", " ", None),
    ],
)
def test_receipted_id_spelling(
    msg_id_type: int | None, tlv: str | None, text: str | None, canonical: str | None
) -> None:
    """A receipt's TLV and text id are read as the numbers that agree, else as the setting's
    bit 1 says, and spelled as submit_id spells the submit_sm_resp's."""
    assert receipted_id(tlv, text, msg_id_type) == canonical


def test_submit_and_receipt_meet_for_every_msg_id_type() -> None:
    """For each msg_id_type, the submit_sm_resp id and every receipt spelling that names the
    same number come out as one string."""
    for kind in (0, 1, 2, 3):
        spelling = IdSpelling(kind)
        for serial in (7, LETTERS, DIGITS, 2**63 + 5):
            part = submit_id(spelling.submit(serial), kind)
            for tlv_base, text_base in itertools.product((10, 16), (10, 16)):
                ids = IdSpelling(kind, text_base, tlv_base)
                if tlv_base != text_base:
                    assert receipted_id(ids.tlv(serial), ids.text(serial), kind) == part
            assert receipted_id(None, spelling.text(serial), kind) == part


def _deliver(tlv: str | None, text: str) -> smpp34.DeliverSm:
    tlvs = [smpp34.Tlv(TLV_RECEIPTED_MESSAGE_ID, cstring(tlv))] if tlv is not None else []
    body = f"id:{text} sub:001 dlvrd:001 submit date:2401011200 done date:2401011201 "
    return smpp34.DeliverSm(
        "17745551000",
        "28444",
        (body + "stat:DELIVRD err:000 text:hi").encode(),
        esm_class=0x04,
        tlvs=tlvs,
    )


def test_read_receipt_takes_the_tlv_and_text_together() -> None:
    """A deliver_sm with the TLV in hex and the text in decimal (msg_id_type 1) names the
    part's id; its text alone does too."""
    both = read_receipt(_deliver("2a000001", "704643073"), "smsc", 1)
    alone = read_receipt(_deliver(None, "704643073"), "smsc", 1)
    assert both is not None
    assert alone is not None
    assert both.message_id == alone.message_id == submit_id("002A000001", 1) == "2A000001"


def test_ids_that_name_different_numbers_take_the_tlv_and_warn() -> None:
    """A TLV and a text naming different messages: the TLV wins, as SMPP 3.4 makes it the
    receipted message's id, and a warning names both."""
    with capture_logs() as logs:
        receipt = read_receipt(_deliver("305419896", "111"), "smsc", 1)
        assert read_receipt(_deliver("12ab", "12AB"), "smsc", None) is not None
    assert receipt is not None
    assert receipt.message_id == "12345678"
    warned = [e for e in logs if e["event"] == "smpp.receipt_ids_disagree"]
    assert [(e["route"], e["tlv"], e["text"]) for e in warned] == [
        ("smsc", "305419896", "111"),
        ("smsc", "12ab", "12AB"),
    ]
