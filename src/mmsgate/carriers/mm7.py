"""MM7 client: one HTTP POST per SubmitReq to the route's MMSC.

HTTP Basic auth when the route has credentials; a Content-Length body, never
`Expect: 100-continue` (several MMSCs stall on it); `SOAPAction: ""` as in the 3GPP example.

Every answer becomes a `SubmitResult` whose text names the HTTP status and the MM7 status
code (`HTTP 200, MM7 2002 Address Error`), and says "XML" only when the MMSC's XML was the
problem. Three kinds of failure:

- the route's own fault, the same for every message: the MMSC unreachable (refused,
  TLS, timeout), refusing our credentials (HTTP 401, 403; MM7 4001 Improper
  identification, 4002 Unsupported version: TS 23.140 §8.7.4 puts both on the VASP's
  configuration), or no MM7 service at the URL (HTTP 404 without an MM7 answer). Retried
  until the message expires, and `route_working` is False so the route is marked unhealthy.
- transient for this message: HTTP 5xx or 429 without a readable answer, the MM7 busy codes.
- final: every other MM7 refusal, and a 2xx or 4xx that is not MM7.

The HTTP is `mmsgate.http_lean`, the lean client for requests sent for every message
(keep-alive, at most IN_FLIGHT connections to the MMSC).
"""

from __future__ import annotations

from mmsgate import http_client, http_lean
from mmsgate.carriers.base import SubmitResult
from mmsgate.mm7_codec import Mm7FormatError, Response, Submit, decode_response, encode_submit
from mmsgate.settings import Route

TIMEOUT, CONNECT_TIMEOUT = 30.0, 5.0
IN_FLIGHT = 16  # connections (so submits in flight) per MMSC and worker
# HTTP statuses that say the route, not the message, is wrong (RFC 9110 §15.5.2, .4, .5)
ROUTE_REFUSALS = {401: "MMSC refused our credentials", 403: "MMSC refused access"}
NOT_FOUND = 404
# MM7 codes about the VASP's set-up, never one message (TS 23.140 §8.7.4)
ROUTE_CODES = frozenset({4001, 4002})


class Mm7Carrier:
    """Submits to one MMSC over MM7."""

    def __init__(self, route: Route, client: http_client.Client | None = None) -> None:
        if not route.url:
            raise ValueError(f"route {route.name} has no url")
        self.route = route
        self._client = client or http_lean.LeanClient(
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
            return unreachable(exc)
        return answered(response)

    async def close(self) -> None:
        await self._client.aclose()


def unreachable(exc: http_client.HttpError) -> SubmitResult:
    """No HTTP answer: the route's fault when it never got to the MMSC or the MMSC never
    answered; unknown when the connection broke in the middle of an answer."""
    if isinstance(exc, http_client.Timeout):
        return SubmitResult(False, None, 0, f"MMSC did not answer: {exc}", True, False)
    if isinstance(exc, http_client.ProtocolError):
        return SubmitResult(False, None, 0, f"MMSC answer broken off: {exc}", True, None)
    return SubmitResult(False, None, 0, f"MMSC unreachable: {exc}", True, False)


def answered(response: http_client.Response) -> SubmitResult:
    """Sort an HTTP answer into accepted, refused (final or not), or the route's fault."""
    status = response.status
    content_type = response.headers.get("content-type", "")
    try:
        answer: Response | None = decode_response(content_type or "text/xml", response.body)
        unreadable = ""
    except Mm7FormatError as exc:
        answer, unreadable = None, _unreadable(content_type, response.body, exc)
    mm7 = f"MM7 {answer.status_code} {answer.status_text}".strip() if answer else ""
    code = answer.status_code if answer else 0
    if status in ROUTE_REFUSALS:
        said = f"{ROUTE_REFUSALS[status]} (HTTP {status}{', ' + mm7 if mm7 else ''})"
        return SubmitResult(False, None, code, said, True, False)
    if answer is None:
        said = f"HTTP {status} from the MMSC, no MM7 status: {unreadable}"
        if status == NOT_FOUND:
            return SubmitResult(False, None, 0, f"no MM7 service at the url ({said})", True, False)
        transient = status >= 500 or status == 429
        return SubmitResult(False, None, 0, said, transient, None)
    said = f"HTTP {status}, {mm7}"
    if answer.status_code in ROUTE_CODES:
        return SubmitResult(False, None, code, f"MMSC refused our set-up ({said})", True, False)
    if answer.ok and not answer.message_id:
        return SubmitResult(False, None, code, f"{said}, but no MessageID", True)
    return SubmitResult(answer.ok, answer.message_id, code, said, answer.transient)


def _unreadable(content_type: str, body: bytes, problem: Mm7FormatError) -> str:
    """Why an answer is not MM7, in words: its XML only when it was XML (or multipart)."""
    media_type = content_type.split(";", 1)[0].strip().lower()
    text = body.lstrip()
    if not text:
        return "empty body"
    if "html" in media_type or text[:15].lower().startswith((b"<!doctype html", b"<html")):
        return "an HTML page"
    if text.startswith(b"<") or media_type.startswith("multipart/"):
        return str(problem)
    snippet = text[:60].decode("utf-8", "replace").strip()
    return f"{media_type or 'untyped'} body {snippet!r}"
