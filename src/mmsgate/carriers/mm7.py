"""MM7 client: one HTTP POST per SubmitReq to the route's MMSC.

HTTP Basic auth when the route has credentials; a Content-Length body, never
`Expect: 100-continue` (several MMSCs stall on it); `SOAPAction: ""` as in the 3GPP example.
Network failures, timeouts, HTTP 5xx without a readable answer and the transient MM7 codes
come back as transient results for the worker to retry; everything else is final.
"""

from __future__ import annotations

import asyncio

import httpx

from mmsgate.carriers.base import SubmitResult
from mmsgate.mm7_codec import Mm7FormatError, Submit, decode_response, encode_submit
from mmsgate.settings import Route

TIMEOUT = httpx.Timeout(30.0, connect=5.0)
IN_FLIGHT = 16


class Mm7Carrier:
    """Submits to one MMSC over MM7."""

    def __init__(self, route: Route, client: httpx.AsyncClient | None = None) -> None:
        if not route.url:
            raise ValueError(f"route {route.name} has no url")
        self.route = route
        auth = httpx.BasicAuth(route.username, route.password or "") if route.username else None
        self._client = client or httpx.AsyncClient(timeout=TIMEOUT, auth=auth)
        # A small pool kept busy beats a big one: httpx scans every queued request and
        # connection on each change, which costs more than the requests themselves.
        self._in_flight = asyncio.Semaphore(IN_FLIGHT)

    async def submit(self, submit: Submit) -> SubmitResult:
        content_type, body = encode_submit(submit)
        headers = {"Content-Type": content_type, "SOAPAction": '""'}
        try:
            async with self._in_flight:
                response = await self._client.post(
                    self.route.url or "", content=body, headers=headers
                )
        except httpx.HTTPError as exc:
            return SubmitResult(False, None, 0, f"{type(exc).__name__} talking to the MMSC", True)
        try:
            answer = decode_response(
                response.headers.get("content-type", "text/xml"), response.content
            )
        except Mm7FormatError as exc:
            transient = response.status_code >= 500 or response.status_code == 429
            return SubmitResult(False, None, 0, f"HTTP {response.status_code}: {exc}", transient)
        if answer.ok and not answer.message_id:
            return SubmitResult(
                False, None, answer.status_code, "accepted without a MessageID", True
            )
        return SubmitResult(
            answer.ok, answer.message_id, answer.status_code, answer.status_text, answer.transient
        )

    async def close(self) -> None:
        await self._client.aclose()
