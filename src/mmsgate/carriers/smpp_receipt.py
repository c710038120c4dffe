"""SMPP delivery receipts: the TLVs, the de-facto receipt text, and message id spellings.

A receipt is a deliver_sm whose esm_class message type is "SMSC delivery receipt"
(`esm_class & 0x3C == 0x04`, SMPP 3.4 §5.2.12). Its id and state are read from the TLVs
`receipted_message_id` (0x001E) and `message_state` (0x0427) when present, else from the
text of SMPP 3.4 Appendix B, which every SMSC writes a little differently:
10- or 12-digit dates, `err` in decimal or hex, `Text:`
capitalised, fields missing. `parse_receipt_text` takes all of those.

Some SMSCs write the id in hex in one place and in decimal in the other; `msg_id_type` says
which, with Kannel's meaning (bit 0: submit_sm_resp in hex, bit 1: receipt in hex), and both
ids are put in one canonical spelling of the submit_sm_resp's base so they compare equal.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re

import smpp34

from mmsgate.carriers.base import SmsReceipt
from mmsgate.carriers.smpp_pdu import (
    TLV_MESSAGE_PAYLOAD,
    TLV_MESSAGE_STATE,
    TLV_NETWORK_ERROR_CODE,
    TLV_RECEIPTED_MESSAGE_ID,
)

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


def submit_id(message_id: str, msg_id_type: int | None) -> str:
    """The submit_sm_resp's id in canonical spelling: decimal without leading zeros, or
    upper-case hex without them (Kannel msg-id-type bit 0); as given when the type is None."""
    message_id = message_id.strip().strip("\x00")
    if msg_id_type is None:
        return message_id
    hex_ = bool(msg_id_type & 1)
    return _rebase(message_id, 16 if hex_ else 10, hex_)


def receipt_id(message_id: str, msg_id_type: int | None) -> str:
    """A receipt's id in the spelling `submit_id` gives the submit_sm_resp's id (Kannel
    msg-id-type bit 1: the receipt writes it in hex)."""
    message_id = message_id.strip().strip("\x00")
    if msg_id_type is None:
        return message_id
    return _rebase(message_id, 16 if msg_id_type & 2 else 10, bool(msg_id_type & 1))


def _rebase(message_id: str, base: int, to_hex: bool) -> str:
    try:
        number = int(message_id, base)
    except ValueError:
        return message_id  # not a number in that base: the SMSC is not what msg_id_type says
    return f"{number:X}" if to_hex else str(number)


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
    message_id = raw_id.split(b"\x00")[0].decode("latin-1") if raw_id else parsed.id
    if not message_id:
        return None
    state = tlvs.get(TLV_MESSAGE_STATE, b"")
    stat = (STATE_STAT.get(state[0]) if len(state) == 1 else None) or parsed.stat or "UNKNOWN"
    return SmsReceipt(
        route=route,
        message_id=receipt_id(message_id, msg_id_type),
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
