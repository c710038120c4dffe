"""Kannel connector: fallback SMS through an existing Kannel's smsbox (HTTP `sendsms`), with
delivery receipts coming back through Kannel's `dlr-url` to mmsgate's `/kannel/dlr`.

Each part goes as its own sendsms request with the concatenation UDH we made (`udh`), so the
link is never split by Kannel's own splitting and every part has an id of ours: the dlr-url
carries `{reference}.{seq}`, which is also the id the part is recorded under. `dlr-mask=19`
asks for final states only (1 delivered to phone + 2 not delivered + 16 not delivered to
SMSC; Kannel user guide, sendsms table).

Kannel (1.4.5, checked against it in tests/carriers/test_kannel.py) cuts a text longer than
the sendsms-user's `max-messages` allows (1 by default) and still answers "Accepted", so each
part must fit one SMS with its UDH: 153 septets (extension characters count two) or 67 UCS-2
units, as `sms_text` splits them.

Kannel answers 202 "0: Accepted for delivery" or "3: Queued for later delivery" when it took
the message (neither means delivered), 503 for a temporary failure, 4xx for a bad request or
configuration.
"""

from __future__ import annotations

import urllib.parse

from mmsgate import http_client, sms_text
from mmsgate.carriers.base import SmsResult, SmsSubmit
from mmsgate.settings import SmsRoute

TIMEOUT, CONNECT_TIMEOUT = 10.0, 5.0
IN_FLIGHT = 100  # connections (so sendsms requests in flight) to one Kannel
# How a failed request is named in the SMS's error text (the words it has always used).
FAILURE_WORDS = {
    http_client.ConnectTimeout: "ConnectTimeout",
    http_client.ConnectFailed: "ConnectError",
    http_client.Timeout: "ReadTimeout",
    http_client.ProtocolError: "RemoteProtocolError",
}
DLR_MASK = 19
CODING = {"gsm7": "0", "ucs2": "2"}
SHORT_CODE_DIGITS = 8  # longer all-digit addresses are international numbers (as for SMPP)
# sendsms answers 403 to a wrong username or password: a fault of the route's set-up that
# would refuse every SMS alike, so the SMS waits (retried until the message expires).
REFUSED_CREDENTIALS = frozenset({401, 403})


class KannelConnector:
    """Submits fallback SMS to one Kannel sendsms URL."""

    def __init__(
        self, route: SmsRoute, dlr_base: str, client: http_client.HttpClient | None = None
    ) -> None:
        if not route.url:
            raise ValueError(f"sms route {route.name} has no url")
        self.route = route
        self.token = route.receipt_token()
        self.dlr_base = dlr_base.rstrip("/")
        self._client = client or http_client.HttpClient(
            timeout=TIMEOUT, connect_timeout=CONNECT_TIMEOUT, max_connections=IN_FLIGHT
        )

    async def start(self) -> None:
        """Nothing to connect: each submit is an HTTP request."""

    def known_ids(self, sms: SmsSubmit) -> tuple[str, ...] | None:
        """The ids receipts will name each part by: ours, carried in the dlr-url."""
        return self._ids(sms)

    def _ids(self, sms: SmsSubmit) -> tuple[str, ...]:
        return tuple(f"{sms.reference}.{seq}" for seq in range(1, len(sms.parts) + 1))

    def dlr_url(self, part_id: str) -> str:
        """Where Kannel reports a part's fate; %d is the DLR type, %A the SMSC's reply.

        Kannel expands every `%` + letter in a dlr-url, so a percent-escape of ours such as
        `%C3%A9` would become the charset and the reply text; `%%` is its literal `%`. The
        route's token is what makes /kannel/dlr believe the request came from this URL."""
        fields = {"route": self.route.name, "token": self.token, "id": part_id}
        query = urllib.parse.urlencode(fields)
        ours = f"{self.dlr_base}/kannel/dlr?{query}".replace("%", "%%")
        return f"{ours}&type=%d&reply=%A"

    def params(self, sms: SmsSubmit, seq: int, part_id: str) -> dict[str, str | bytes]:
        params: dict[str, str | bytes] = {
            "username": self.route.username or "",
            "password": self.route.password or "",
            "from": kannel_address(sms.sender),
            "to": kannel_address(sms.recipient),
            "text": sms.parts[seq - 1],
            "charset": "UTF-8",
            "coding": CODING[sms.coding],
            "dlr-mask": str(DLR_MASK),
            "dlr-url": self.dlr_url(part_id),
        }
        if len(sms.parts) > 1:
            udh = sms_text.udh(sms.concat_ref, len(sms.parts), seq)
            params["udh"] = udh  # bytes: urlencode makes each byte %XX, as Kannel expects
        if self.route.smsc:
            params["smsc"] = self.route.smsc
        return params

    async def submit(self, sms: SmsSubmit) -> SmsResult:
        ids = self._ids(sms)[sms.first - 1 :]
        for seq, part_id in enumerate(ids, start=sms.first):
            query = urllib.parse.urlencode(self.params(sms, seq, part_id))
            taken = ids[: seq - sms.first]
            try:
                response = await self._client.get(f"{self.route.url}?{query}")
            except http_client.HttpError as exc:
                return _not_taken(seq, taken, 0, f"{_failure(exc)} talking to Kannel", True)
            said = response.body.decode("utf-8", "replace").strip()[:200]
            status = response.status
            if status in REFUSED_CREDENTIALS:  # the route's fault, not the SMS's: try again
                said = f"Kannel refused our credentials: {said}"
                return _not_taken(seq, taken, status, said, True)
            if status not in (200, 202):
                transient = status >= 500 or status == 429
                return _not_taken(seq, taken, status, said, transient)
        return SmsResult(True, ids, 0, "accepted by Kannel")

    async def close(self) -> None:
        await self._client.aclose()


def kannel_address(address: str) -> str:
    """A number as Kannel's SMPP link reads it. Kannel sends `+digits` as TON 1/NPI 1 with the
    `+` removed, but bare digits as TON 2 (national), so an SMSC would take our international
    digits for a national number: international numbers get their `+`. Short codes (up to 8
    digits) and alphanumeric senders go as they are (Kannel autodetects the latter, 5/0)."""
    digits = address.removeprefix("+")
    if digits.isdecimal() and digits.isascii() and len(digits) > SHORT_CODE_DIGITS:
        return "+" + digits
    return address


def _failure(exc: http_client.HttpError) -> str:
    kind = next((kind for kind in FAILURE_WORDS if isinstance(exc, kind)), None)
    return FAILURE_WORDS[kind] if kind is not None else "HTTPError"


def _not_taken(
    seq: int, taken: tuple[str, ...], status: int, said: str, transient: bool
) -> SmsResult:
    text = f"part {seq}: {said} (parts before it were accepted)" if seq > 1 else said
    return SmsResult(False, taken, status, text, transient)
