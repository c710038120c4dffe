"""SMPP delivery receipts: the TLVs, the de-facto receipt text, and message id spellings.

A receipt is a deliver_sm whose esm_class message type is "SMSC delivery receipt"
(`esm_class & 0x3C == 0x04`, SMPP 3.4 §5.2.12). Its id and state are read from the TLVs
`receipted_message_id` (0x001E) and `message_state` (0x0427) when present, else from the
text of SMPP 3.4 Appendix B, which every SMSC writes a little differently:
10- or 12-digit dates, `err` in decimal or hex, `Text:`
capitalised, fields missing. `parse_receipt_text` takes all of those.

Some SMSCs write the id in hex in one place and in decimal in another; `msg_id_type` says
which, with Kannel's meaning (bit 0: submit_sm_resp in hex, bit 1: receipt in hex), and the
submit_sm_resp's id and the receipt's (its TLV and its text read together) are put in one
canonical spelling so they compare equal.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import re

import smpp34
import structlog

from mmsgate.carriers.base import SmsReceipt
from mmsgate.carriers.smpp_pdu import (
    TLV_MESSAGE_PAYLOAD,
    TLV_MESSAGE_STATE,
    TLV_NETWORK_ERROR_CODE,
    TLV_RECEIPTED_MESSAGE_ID,
)

log = structlog.get_logger(__name__)

RECEIPT = 0x04  # esm_class message type bits (0x3C) of an SMSC delivery receipt
STATS = ("DELIVRD", "EXPIRED", "DELETED", "UNDELIV", "ACCEPTD", "UNKNOWN", "REJECTD", "ENROUTE")
# SMPP 3.4 §5.2.28 message_state → the receipt text's stat word.
STATE_STAT = {
    1: "ENROUTE",
    2: "DELIVRD",
    3: "EXPIRED",
    4: "DELETED",
    5: "UNDELIV",
    6: "ACCEPTD",
    7: "UNKNOWN",
    8: "REJECTD",
}
STAT_STATE = {stat: state for state, stat in STATE_STAT.items()}
# Spelled-out stats some SMSCs write instead of the 7-letter words.
_STAT_ALIASES = {
    "DELIVERED": "DELIVRD",
    "UNDELIVERABLE": "UNDELIV",
    "UNDELIVERED": "UNDELIV",
    "ACCEPTED": "ACCEPTD",
    "REJECTED": "REJECTD",
}

_TEXT_KEY = re.compile(r"\btext\s*:", re.IGNORECASE)
_KEY = re.compile(r"\b(id|sub|dlvrd|submit[ _]?date|done[ _]?date|stat|err)\s*:", re.IGNORECASE)


@dataclasses.dataclass(frozen=True, slots=True)
class ReceiptText:
    """The fields of an Appendix B receipt text; None where the SMSC left one out."""

    id: str | None = None
    sub: str | None = None
    dlvrd: str | None = None
    submit_date: dt.datetime | None = None
    done_date: dt.datetime | None = None
    stat: str | None = None  # one of STATS (unknown words become UNKNOWN)
    err: int | None = None
    text: str | None = None


def parse_receipt_text(text: str) -> ReceiptText:
    """Read `id:… sub:… dlvrd:… submit date:… done date:… stat:… err:… text:…` whatever the
    case of the keys, with missing fields, dates of 10 or 12 digits, `err` decimal or hex.
    Everything after `text:` is the message's first characters, even if it looks like a key."""
    text_key = _TEXT_KEY.search(text)
    head = text[: text_key.start()] if text_key else text
    found: dict[str, str] = {}
    keys = list(_KEY.finditer(head))
    for i, key in enumerate(keys):
        name = re.sub(r"[ _]", "", key.group(1).lower())
        end = keys[i + 1].start() if i + 1 < len(keys) else len(head)
        found.setdefault(name, head[key.end() : end].strip())
    return ReceiptText(
        id=found.get("id") or None,
        sub=found.get("sub"),
        dlvrd=found.get("dlvrd"),
        submit_date=_date(found.get("submitdate")),
        done_date=_date(found.get("donedate")),
        stat=_stat(found.get("stat")),
        err=_err(found.get("err")),
        text=text[text_key.end() :] if text_key else None,
    )


def format_receipt_text(
    message_id: str,
    stat: str,
    err: int,
    submitted: dt.datetime,
    done: dt.datetime,
    text: str,
    *,
    seconds: bool = False,
) -> str:
    """The Appendix B text, as the simulated SMSC writes it (12-digit dates with `seconds`)."""
    fmt = "%y%m%d%H%M%S" if seconds else "%y%m%d%H%M"
    delivered = "001" if stat == "DELIVRD" else "000"
    return (
        f"id:{message_id} sub:001 dlvrd:{delivered} submit date:{submitted.strftime(fmt)} "
        f"done date:{done.strftime(fmt)} stat:{stat} err:{err:03d} text:{text[:20]}"
    )


def _date(value: str | None) -> dt.datetime | None:
    """YYMMDDhhmm or YYMMDDhhmmss (SMSC time, taken as UTC: the text carries no zone)."""
    if not value or not value.isdigit():
        return None
    fmt = {10: "%y%m%d%H%M", 12: "%y%m%d%H%M%S", 14: "%Y%m%d%H%M%S"}.get(len(value))
    if fmt is None:
        return None
    try:
        return dt.datetime.strptime(value, fmt).replace(tzinfo=dt.UTC)
    except ValueError:
        return None


def _stat(value: str | None) -> str | None:
    if not value:
        return None
    word = value.split()[0].upper()
    word = _STAT_ALIASES.get(word, word)
    return word if word in STATS else "UNKNOWN"


def _err(value: str | None) -> int | None:
    """`000`, `11`, `0x0B`, or hex without the prefix (`00B`) as some SMSCs write it."""
    if not value:
        return None
    word = value.split()[0]
    if word[:2].lower() == "0x":
        word, base = word[2:], 16
    else:
        base = 10 if word.isdecimal() else 16
    try:
        return int(word, base)
    except ValueError:
        return None


# --- message ids ----------------------------------------------------------------------------
#
# An SMPP message id is a C-string the SMSC may spell as it likes (SMPP 3.4 §5.2.23); Kannel's
# `msg-id-type` (gw/smsc/smsc_smpp.c) says which base it writes where: bit 0 hex in
# submit_sm_resp, bit 1 hex in deliver_sm receipts, and an id that is not all digits is read
# as hex whatever the bits say. Kannel keeps both in decimal; mmsgate keeps the
# submit_sm_resp's own base (upper-case hex or decimal, no padding), the spelling it has
# always stored parts under, so parts in flight across an upgrade still match.

_DECIMAL = re.compile(r"[0-9]+")  # ASCII only: str.isdigit() and int() also take "١٢" or "1_0"
_HEX = re.compile(r"(?:0[xX])?([0-9A-Fa-f]+)")


def submit_id(message_id: str, msg_id_type: int | None) -> str:
    """The submit_sm_resp's id in canonical spelling; as given (stripped) without a
    msg_id_type, or when it is no number in either base."""
    message_id = _clean(message_id)
    if msg_id_type is None:
        return message_id
    number = _number(message_id, _bases(hex_first=bool(msg_id_type & 1)))
    return message_id if number is None else _canonical(number, msg_id_type)


def receipted_id(tlv: str | None, text: str | None, msg_id_type: int | None) -> str | None:
    """A receipt's id, from its receipted_message_id TLV and its text's `id:`, in the spelling
    `submit_id` gives the submit_sm_resp's; None when neither names one.

    Some SMSCs write the TLV as their submit_sm_resp (which is what §5.3.2.12 asks) and only
    the text in the receipt's base, so the TLV alone, read as msg_id_type says, can name
    another number ("12345678" is hex here, decimal there). When both are given they are
    read as the one number they agree on. Spellings that differ by more than leading zeros
    agree on one number at most (digits read larger in hex than in decimal); the same
    spelling twice is read in the receipt's base. When they agree on none, the TLV wins, as
    in Kannel: §5.3.2.12 makes it the receipted message's id, the text is "vendor specific"
    (Appendix B)."""
    tlv, text = _clean(tlv or "") or None, _clean(text or "") or None
    if tlv is None or text is None or msg_id_type is None:
        lone = tlv or text
        if lone is None or msg_id_type is None:
            return lone
        return _receipt_reading(lone, msg_id_type)
    number = _agreed(tlv, text, _bases(hex_first=bool(msg_id_type & 2)))
    if number is None:
        return _receipt_reading(tlv, msg_id_type)
    return _canonical(number, msg_id_type)


def ids_agree(tlv: str, text: str, msg_id_type: int | None) -> bool:
    """Whether a receipt's TLV and text name one message (as strings without msg_id_type)."""
    tlv, text = _clean(tlv), _clean(text)
    if tlv == text or msg_id_type is None:
        return tlv == text
    return _agreed(tlv, text, _bases(hex_first=bool(msg_id_type & 2))) is not None


def _receipt_reading(message_id: str, msg_id_type: int) -> str:
    number = _number(message_id, _bases(hex_first=bool(msg_id_type & 2)))
    return message_id if number is None else _canonical(number, msg_id_type)


def _agreed(tlv: str, text: str, bases: tuple[int, int]) -> int | None:
    """The number both spell, each read in either base, the text's setting tried first."""
    for text_base, tlv_base in itertools.product(bases, bases):
        number = _number(tlv, (tlv_base,))
        if number is not None and number == _number(text, (text_base,)):
            return number
    return None


def _number(message_id: str, bases: tuple[int, ...]) -> int | None:
    """The id read in the first of `bases` it is written in; None if in none."""
    for base in bases:
        if base == 10 and _DECIMAL.fullmatch(message_id):
            return int(message_id)
        hex_ = _HEX.fullmatch(message_id) if base == 16 else None
        if hex_:
            return int(hex_.group(1), 16)
    return None


def _bases(*, hex_first: bool) -> tuple[int, int]:
    return (16, 10) if hex_first else (10, 16)


def _canonical(number: int, msg_id_type: int) -> str:
    return f"{number:X}" if msg_id_type & 1 else str(number)


def _clean(message_id: str) -> str:
    return message_id.strip().strip("\x00").strip()


# --- a receipt deliver_sm -------------------------------------------------------------------


def is_receipt(esm_class: int) -> bool:
    return esm_class & 0x3C == RECEIPT


def read_receipt(
    deliver: smpp34.DeliverSm, route: str, msg_id_type: int | None
) -> SmsReceipt | None:
    """The receipt a deliver_sm carries, TLVs first; None when it names no message id."""
    tlvs = {t.tag: t.value for t in deliver.tlvs}
    body = deliver.short_message or tlvs.get(TLV_MESSAGE_PAYLOAD, b"")
    parsed = parse_receipt_text(body.decode("latin-1"))  # receipts are ASCII; never fails
    raw_id = tlvs.get(TLV_RECEIPTED_MESSAGE_ID)
    tlv_id = raw_id.split(b"\x00")[0].decode("latin-1") if raw_id else None
    message_id = receipted_id(tlv_id, parsed.id, msg_id_type)
    if message_id is None:
        return None
    if tlv_id and parsed.id and not ids_agree(tlv_id, parsed.id, msg_id_type):
        log.warning("smpp.receipt_ids_disagree", route=route, tlv=tlv_id, text=parsed.id)
    state = tlvs.get(TLV_MESSAGE_STATE, b"")
    stat = (STATE_STAT.get(state[0]) if len(state) == 1 else None) or parsed.stat or "UNKNOWN"
    return SmsReceipt(
        route=route,
        message_id=message_id,
        stat=stat,
        error=_error(parsed.err, tlvs.get(TLV_NETWORK_ERROR_CODE)),
        done_at=parsed.done_date,
    )


def _error(err: int | None, network_error: bytes | None) -> str | None:
    """The text's `err` when non-zero, else the network_error_code TLV's code (§5.3.2.31:
    one byte of network type, two of code); three digits, as receipts write them."""
    if err:
        return f"{err:03d}"
    if network_error and len(network_error) == 3:
        code = int.from_bytes(network_error[1:], "big")
        if code:
            return f"{code:03d}"
    return None
