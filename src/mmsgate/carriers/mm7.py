"""MM7 client: one HTTP POST per SubmitReq to the route's MMSC.

HTTP Basic auth when the route has credentials; a Content-Length body, never
`Expect: 100-continue` (several MMSCs stall on it); `SOAPAction: ""` as in the 3GPP example.
Network failures, timeouts, HTTP 5xx without a readable answer and the transient MM7 codes
come back as transient results for the worker to retry; everything else is final.

The HTTP is `mmsgate.http_client` (keep-alive, at most IN_FLIGHT connections to the MMSC):
at hundreds of submits a second httpx cost more CPU than composing the messages.
"""

from __future__ import annotations

from mmsgate import http_client
from mmsgate.carriers.base import SubmitResult
from mmsgate.mm7_codec import Mm7FormatError, Submit, decode_response, encode_submit
from mmsgate.settings import Route

TIMEOUT, CONNECT_TIMEOUT = 30.0, 5.0
IN_FLIGHT = 16  # connections (so submits in flight) per MMSC and worker


class Mm7Carrier:
    """Submits to one MMSC over MM7."""

    def __init__(self, route: Route, client: http_client.HttpClient | None = None) -> None:
        if not route.url:
            raise ValueError(f"route {route.name} has no url")
        self.route = route
        self._client = client or http_client.HttpClient(
            timeout=TIMEOUT, connect_timeout=CONNECT_TIMEOUT, max_connections=IN_FLIGHT
        )
        self._headers = {"SOAPAction": '""'}
        if route.username:
            self._headers["Authorization"] = http_client.basic_auth(
                route.username, route.password or ""
            )

    async def submit(self, submit: Submit) -> SubmitResult:
        content_type, body = encode_submit(submit)
        headers = {"Content-Type": content_type, **self._headers}
        try:
            response = await self._client.post(self.route.url or "", body, headers)
        except http_client.HttpError as exc:
            return SubmitResult(False, None, 0, f"{type(exc).__name__} talking to the MMSC", True)
        try:
            answer = decode_response(
                response.headers.get("content-type", "text/xml"), response.body
            )
        except Mm7FormatError as exc:
            transient = response.status >= 500 or response.status == 429
            return SubmitResult(False, None, 0, f"HTTP {response.status}: {exc}", transient)
        if answer.ok and not answer.message_id:
            return SubmitResult(
                False, None, answer.status_code, "accepted without a MessageID", True
            )
        return SubmitResult(
            answer.ok, answer.message_id, answer.status_code, answer.status_text, answer.transient
        )

    async def close(self) -> None:
        await self._client.aclose()
