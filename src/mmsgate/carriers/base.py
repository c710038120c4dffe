"""The carrier interfaces: `Carrier` submits an MMS (MM7); `SmsConnector` submits the fallback
SMS (SMPP or Kannel) and hands its receipts to a `ReceiptSink`."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Protocol

from mmsgate.mm7_codec import Submit


@dataclasses.dataclass(frozen=True, slots=True)
class SubmitResult:
    """What the MMSC said: accepted with a MessageID, or refused (permanently or not).

    `status_text` says what happened in words, naming the HTTP status and the MM7 status
    code (`HTTP 200, MM7 2002 Address Error`); `status_code` is the MM7 code, 0 when the
    MMSC gave none. `route_working` is what the submit tells of the route itself: False when
    the route failed (unreachable, our credentials refused: every message would fail
    alike), True when the MMSC took the request and answered in MM7, None when it tells
    nothing either way (an unreadable HTTP 5xx)."""

    accepted: bool
    message_id: str | None
    status_code: int
    status_text: str
    transient: bool = False
    route_working: bool | None = True


class Carrier(Protocol):
    async def submit(self, submit: Submit) -> SubmitResult: ...

    async def close(self) -> None: ...


# --- the SMS leg of the fallback ------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class SmsSubmit:
    """One fallback SMS, already split into parts (see `mmsgate.sms_text.segment`).

    `reference` is mmsgate's id for this SMS; part n (from 1) is known as `{reference}.{n}`
    where the connector can carry an id of ours (Kannel's dlr-url). A submit sends parts
    `first` to the last, so a retry after the SMSC took some parts sends only the rest."""

    reference: str
    sender: str  # short code, long number or alphanumeric name
    recipient: str  # international digits, no '+'
    coding: str  # "gsm7" or "ucs2"
    parts: tuple[str, ...]  # the text of each part; more than one: sent with a UDH
    concat_ref: int = 0  # the concatenation reference (0-255) shared by the parts
    first: int = 1  # the part to start at: those before it were taken by an earlier submit


@dataclasses.dataclass(frozen=True, slots=True)
class SmsResult:
    """What the SMSC (or Kannel) said to the submit of every part."""

    accepted: bool
    # One per part sent (from `first`), as receipts will name them; when not accepted, the
    # ids of the parts taken before the refusal, so a retry can start after them.
    message_ids: tuple[str, ...]
    status: int  # SMPP command_status or HTTP status; 0 when accepted over SMPP
    text: str
    transient: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class SmsReceipt:
    """A delivery receipt for one part."""

    route: str
    message_id: str  # in the form SmsResult.message_ids gave it
    stat: str  # DELIVRD, EXPIRED, DELETED, UNDELIV, ACCEPTD, UNKNOWN, REJECTD, ENROUTE
    error: str | None = None
    done_at: dt.datetime | None = None

    @property
    def final(self) -> bool:
        return self.stat not in ("ENROUTE", "ACCEPTD")

    @property
    def delivered(self) -> bool:
        return self.stat == "DELIVRD"


# Called for each receipt; the connector acknowledges the receipt to the SMSC only after this
# returns, so a receipt is never lost to a crash between the two.
ReceiptSink = Callable[[SmsReceipt], Awaitable[None]]


class SmsConnector(Protocol):
    async def start(self) -> None:
        """Connect ahead of the first submit (SMPP: to take receipts held for us)."""
        ...

    def known_ids(self, sms: SmsSubmit) -> tuple[str, ...] | None:
        """The part ids receipts will use, when they are ours and known before the submit
        (Kannel's dlr-url); None when the SMSC assigns them (SMPP)."""
        ...

    async def submit(self, sms: SmsSubmit) -> SmsResult: ...

    async def close(self) -> None: ...
