"""SMPP 3.4 framing and the small PDUs, shared by the connector and the simulated SMSC.

`submit_sm` and `deliver_sm` are encoded and decoded by smpp34's codec (`smpp34.SubmitSm`,
`smpp34.DeliverSm`, `smpp34.decode`); this module frames PDUs on a stream and writes the
session PDUs the codec has no class for (bind, enquire_link, unbind, the responses), whose
bodies are a few C-strings (SMPP 3.4 §4.1-§4.11).
"""

from __future__ import annotations

import asyncio
import dataclasses
import struct

from mmsgate import errors

# SMPP 3.4 §5.1.2 command_id values; a response is its request's id with bit 31 set.
RESPONSE = 0x80000000
GENERIC_NACK = 0x80000000
BIND_RECEIVER = 0x00000001
BIND_TRANSMITTER = 0x00000002
SUBMIT_SM = 0x00000004
DELIVER_SM = 0x00000005
UNBIND = 0x00000006
BIND_TRANSCEIVER = 0x00000009
ENQUIRE_LINK = 0x00000015
BINDS = frozenset((BIND_RECEIVER, BIND_TRANSMITTER, BIND_TRANSCEIVER))

# SMPP 3.4 §5.1.3 command_status values mmsgate uses or meets.
ESME_ROK = 0x00
ESME_RINVMSGLEN = 0x01
ESME_RINVCMDLEN = 0x02
ESME_RINVCMDID = 0x03
ESME_RINVBNDSTS = 0x04
ESME_RALYBND = 0x05
ESME_RSYSERR = 0x08
ESME_RINVSRCADR = 0x0A
ESME_RINVDSTADR = 0x0B
ESME_RBINDFAIL = 0x0D
ESME_RINVPASWD = 0x0E
ESME_RINVSYSID = 0x0F
ESME_RMSGQFUL = 0x14
ESME_RTHROTTLED = 0x58
ESME_RX_T_APPN = 0x64  # "ESME receiver temporary app error": the SMSC retries the deliver_sm
ESME_RUNKNOWNERR = 0xFF
STATUS_NAMES = {
    ESME_ROK: "ESME_ROK",
    ESME_RINVMSGLEN: "ESME_RINVMSGLEN",
    ESME_RINVCMDLEN: "ESME_RINVCMDLEN",
    ESME_RINVCMDID: "ESME_RINVCMDID",
    ESME_RINVBNDSTS: "ESME_RINVBNDSTS",
    ESME_RALYBND: "ESME_RALYBND",
    ESME_RSYSERR: "ESME_RSYSERR",
    ESME_RINVSRCADR: "ESME_RINVSRCADR",
    ESME_RINVDSTADR: "ESME_RINVDSTADR",
    ESME_RBINDFAIL: "ESME_RBINDFAIL",
    ESME_RINVPASWD: "ESME_RINVPASWD",
    ESME_RINVSYSID: "ESME_RINVSYSID",
    ESME_RMSGQFUL: "ESME_RMSGQFUL",
    ESME_RTHROTTLED: "ESME_RTHROTTLED",
    ESME_RX_T_APPN: "ESME_RX_T_APPN",
    ESME_RUNKNOWNERR: "ESME_RUNKNOWNERR",
}
# Throttling (0x58) and a full queue (0x14) pass; every other refusal is final.
TRANSIENT_STATUSES = frozenset((ESME_RTHROTTLED, ESME_RMSGQFUL))

# SMPP 3.4 §5.3.2 optional parameter tags the receipts carry.
TLV_RECEIPTED_MESSAGE_ID = 0x001E
TLV_SC_INTERFACE_VERSION = 0x0210
TLV_NETWORK_ERROR_CODE = 0x0423
TLV_MESSAGE_PAYLOAD = 0x0424
TLV_MESSAGE_STATE = 0x0427

INTERFACE_VERSION = 0x34
HEADER = struct.Struct(">IIII")
MAX_PDU = 70_000  # a message_payload TLV holds up to 64 KB; anything larger is garbage


class PduError(errors.MmsgateError):
    """Bytes that are not an SMPP PDU (bad length); the connection cannot be trusted after."""


@dataclasses.dataclass(frozen=True, slots=True)
class Frame:
    """One PDU off the wire: the header fields, its body, and the whole PDU for the codec."""

    command_id: int
    status: int
    seq: int
    raw: bytes

    @property
    def body(self) -> bytes:
        return self.raw[HEADER.size :]


def status_name(status: int) -> str:
    return STATUS_NAMES.get(status, f"0x{status:08X}")


async def read_frame(reader: asyncio.StreamReader) -> Frame:
    """The next PDU; IncompleteReadError at the end of the stream, PduError on a bad length."""
    header = await reader.readexactly(HEADER.size)
    length, command_id, status, seq = HEADER.unpack(header)
    if not HEADER.size <= length <= MAX_PDU:
        raise PduError(f"command_length {length}")
    body = await reader.readexactly(length - HEADER.size) if length > HEADER.size else b""
    return Frame(command_id, status, seq, header + body)


def pdu(command_id: int, status: int, seq: int, body: bytes = b"") -> bytes:
    return HEADER.pack(HEADER.size + len(body), command_id, status, seq) + body


def with_seq(encoded: bytes, seq: int) -> bytes:
    """A PDU encoded once, renumbered for sending (the header's last field)."""
    return encoded[:12] + seq.to_bytes(4, "big") + encoded[16:]


def cstring(value: str) -> bytes:
    """SMPP C-Octet String (§3.1): ASCII (Latin-1 passes through), NUL-terminated."""
    return value.encode("latin-1", "replace") + b"\x00"


def cstrings(body: bytes, count: int) -> tuple[list[str], bytes]:
    """The first `count` C-strings of a body, and what follows them."""
    values: list[str] = []
    at = 0
    for _ in range(count):
        end = body.find(b"\x00", at)
        if end < 0:
            raise PduError("C-string without its NUL")
        values.append(body[at:end].decode("latin-1"))
        at = end + 1
    return values, body[at:]


def tlv(tag: int, value: bytes) -> bytes:
    return struct.pack(">HH", tag, len(value)) + value


# --- bind (§4.1) ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Bind:
    system_id: str
    password: str
    system_type: str = ""
    interface_version: int = INTERFACE_VERSION
    addr_ton: int = 0
    addr_npi: int = 0
    address_range: str = ""


def encode_bind(bind: Bind) -> bytes:
    return (
        cstring(bind.system_id)
        + cstring(bind.password)
        + cstring(bind.system_type)
        + bytes((bind.interface_version, bind.addr_ton, bind.addr_npi))
        + cstring(bind.address_range)
    )


def decode_bind(body: bytes) -> Bind:
    (system_id, password, system_type), rest = cstrings(body, 3)
    if len(rest) < 4:
        raise PduError("bind body too short")
    (address_range,), _ = cstrings(rest[3:], 1)
    return Bind(system_id, password, system_type, rest[0], rest[1], rest[2], address_range)


def encode_bind_resp(system_id: str) -> bytes:
    """The SMSC's system_id and, as §4.1.2 suggests, the interface version it speaks."""
    return cstring(system_id) + tlv(TLV_SC_INTERFACE_VERSION, bytes((INTERFACE_VERSION,)))


def message_id_of(body: bytes) -> str:
    """The message_id C-string of a submit_sm_resp (§4.4.2); empty when the body is."""
    if not body:
        return ""
    (message_id,), _ = cstrings(body, 1)
    return message_id
