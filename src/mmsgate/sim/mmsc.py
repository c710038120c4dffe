"""A simulated MMSC speaking MM7: it checks each SubmitReq like a strict carrier would,
answers with MM7 status codes, and sends DeliveryReportReqs back, scripted by the last four
digits of the recipient (the table is in the README and in `OUTCOMES`).
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import dataclasses
import io
import json
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import structlog
from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mmsgate import errors, http_client, http_lean, http_server
from mmsgate import mm7_codec as mm7

log = structlog.get_logger(__name__)

# last four digits → (what the MMSC answers, the reports it sends afterwards)
M = mm7.MMStatus
OUTCOMES: dict[str, tuple[str, tuple[str, ...]]] = {
    "0002": ("address-error", ()),
    "0003": ("accept", (M.EXPIRED,)),
    "0004": ("accept", (M.RETRIEVED, M.FORWARDED, M.RETRIEVED)),
    "0005": ("not-mms-capable", ()),
    "0006": ("accept", ()),
    "0007": ("busy-twice", (M.RETRIEVED,)),
    "0008": ("not-mms-capable", ()),
    "0009": ("accept", (M.REJECTED,)),
}
DEFAULT = ("accept", (M.RETRIEVED,))
# The UAProf a simulated handset reports on retrieval; N102 carries it as `handset`.
SIM_HANDSET = "http://uaprof.mmsgate.invalid/sim-phone-1.xml"
MO_ORDER_MAX_BYTES = 64 * 1024  # POST /mo: a small JSON order
SEEN_MAX = 10_000  # SubmitReqs kept in `seen`, the newest: a long run's memory stays flat


@dataclasses.dataclass(slots=True)
class SimulatedMmsc:
    """State of one simulated MMSC: where reports go, its size limit, what it has seen."""

    report_url: str | None
    max_bytes: int = 1_000 * 1024
    report_delay: float = 0.05
    submits: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    accepted: dict[str, str] = dataclasses.field(default_factory=dict)
    # What each accepted SubmitReq said, by MessageID: its sender (a number or a mask) and
    # the display-only members it listed, which are never treated as recipients (the
    # newest SEEN_MAX).
    seen: dict[str, mm7.SubmitRequest] = dataclasses.field(default_factory=dict)
    tasks: set[asyncio.Task[None]] = dataclasses.field(default_factory=set)
    client: http_lean.LeanClient | None = None  # one pool for all reports, made on first use
    # Reports owed, kept on disk like a real MMSC's store: a restarted simulator sends the
    # ones it had not delivered before it stopped (one JSON line per report and per "sent").
    journal: Path | None = None
    in_flight: int = 16  # reports in flight at once (connections to the gateway)
    # The HTTP Basic pair presented on every report and DeliverReq, as a real MMSC does.
    report_auth: tuple[str, str] | None = None

    def app(self) -> http_server.Guarded:
        @contextlib.asynccontextmanager
        async def lifespan(_app: Starlette) -> AsyncIterator[None]:
            self.resume()
            yield
            await self.aclose()

        return http_server.Guarded(
            Starlette(
                routes=[
                    Route("/mm7", self.handle, methods=["POST"]),
                    Route("/mo", self.send_mo, methods=["POST"]),
                ],
                lifespan=lifespan,
            )
        )

    async def aclose(self) -> None:
        """Stop sending reports and close their connections. Owed reports stay in the
        journal (when there is one) for the next start."""
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.client is not None:
            await self.client.aclose()
            self.client = None

    def resume(self) -> None:
        """Schedule the reports the journal owes (those never marked sent)."""
        if self.journal is None or not self.journal.exists():
            return
        owed: dict[str, dict[str, str]] = {}
        for line in self.journal.read_text().splitlines():
            entry = json.loads(line)
            if "sent" in entry:
                owed.pop(entry["sent"], None)
            else:
                owed[entry["key"]] = entry
        for entry in owed.values():
            self.schedule(entry["id"], entry["number"], entry["status"], entry["key"])
        log.info("sim.resumed", reports=len(owed))

    def _note(self, entry: dict[str, str]) -> None:
        if self.journal is not None:
            with self.journal.open("a") as out:
                out.write(json.dumps(entry) + "\n")

    async def send_mo(self, request: Request) -> Response:
        """POST /mo {"from", "to", "subject"?, "text"?, "image"?: true}: the simulated MMSC
        sends that MMS from a handset to the gateway as a DeliverReq, and answers with the
        gateway's MM7 status."""
        try:
            order = json.loads(await http_server.read_body(request, MO_ORDER_MAX_BYTES))
            sender, recipient = str(order["from"]), str(order["to"])
        except errors.BodyTooLarge as exc:
            return Response(json.dumps({"error": str(exc)}) + "\n", 413)
        except (ValueError, KeyError, TypeError):
            return Response('{"error": "expected JSON with from and to"}\n', 400)
        parts = [("text/plain; charset=utf-8", str(order.get("text") or "").encode("utf-8"))]
        if order.get("image"):
            parts.insert(0, ("image/jpeg", _photo()))
        if self.report_url is None:
            return Response('{"error": "no gateway URL (--report-url)"}\n', 409)
        content_type, body = mm7.encode_deliver(
            "mo-" + secrets.token_hex(6), sender, recipient, parts, subject=order.get("subject")
        )
        try:
            answer = await self.http().post(self.report_url, body, self.headers(content_type))
        except http_client.HttpError as exc:
            return Response(json.dumps({"error": str(exc)}) + "\n", 502)
        status = mm7.decode_response(answer.headers.get("content-type", ""), answer.body)
        reply = {"status": status.status_code, "text": status.status_text}
        return Response(json.dumps(reply) + "\n", media_type="application/json")

    async def handle(self, request: Request) -> Response:
        # Room for content up to max_bytes in base64 with its MIME and SOAP around it; more is
        # refused unread, as a real MMSC refuses an oversized submit (2004).
        limit = self.max_bytes * 2 + 1024 * 1024
        try:
            body = await http_server.read_body(request, limit)
        except errors.BodyTooLarge:
            return fault(None, 2004, f"Multimedia content refused: body over {limit} bytes")
        try:
            incoming = mm7.decode_request(request.headers.get("content-type", ""), body)
        except mm7.Mm7FormatError as exc:
            return fault(None, 2007, f"Message format corrupt: {exc}")
        if incoming.operation is not mm7.Operation.SUBMIT:
            return fault(incoming.transaction_id, 4003, f"Unsupported operation {incoming.kind}")
        problem = self.check(incoming)
        if problem is not None:
            return fault(incoming.transaction_id, *problem)
        return self.answer(incoming)

    def check(self, incoming: mm7.Incoming) -> tuple[int, str] | None:
        """Structure and size, as a strict MMSC checks them (TS 23.140 status codes)."""
        submit = incoming.submit
        if not submit.version or not submit.recipient:
            return 4004, "Validation error: MM7Version and Recipients are required"
        if not submit.content_href.startswith("cid:") or not incoming.parts:
            return 4004, "Validation error: Content href resolves to no attachment"
        size = sum(len(data) for _, data in incoming.parts)
        if size > self.max_bytes:
            return 2004, f"Multimedia content refused: {size} bytes over {self.max_bytes}"
        return None

    def answer(self, incoming: mm7.Incoming) -> Response:
        number = incoming.submit.recipient
        behaviour, reports = OUTCOMES.get(number[-4:], DEFAULT)
        self.submits[number] += 1
        if behaviour == "address-error":
            return fault(incoming.transaction_id, 2002, f"Address Error: {number}")
        if behaviour == "not-mms-capable":
            return fault(
                incoming.transaction_id, 3001, f"Not Possible: {number} cannot receive MMS"
            )
        if behaviour == "busy-twice" and self.submits[number] <= 2:
            return Response(b"server busy", status_code=500, media_type="text/plain")
        message_id = "sim-" + secrets.token_hex(8)
        self.accepted[message_id] = number
        self.seen[message_id] = incoming.submit
        if len(self.seen) > SEEN_MAX:
            del self.seen[next(iter(self.seen))]
        log.debug(
            "sim.accepted",
            message_id=message_id,
            to=number,
            sender=incoming.submit.sender,
            display_only=list(incoming.submit.display_only),
        )
        for n, status in enumerate(reports):
            key = f"{message_id}/{n}"
            self._note({"key": key, "id": message_id, "number": number, "status": status})
            self.schedule(message_id, number, status, key)
        body = mm7.encode_response(
            mm7.Operation.SUBMIT.answer, incoming.transaction_id, message_id=message_id
        )
        return Response(body, media_type="text/xml; charset=utf-8")

    def headers(self, content_type: str = "text/xml") -> dict[str, str]:
        """The headers of a request to the gateway, with the Basic pair when there is one."""
        headers = {"Content-Type": content_type}
        if self.report_auth is not None:
            pair = ":".join(self.report_auth).encode("utf-8")
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
        return headers

    def http(self) -> http_lean.LeanClient:
        if self.client is None:
            self.client = http_lean.LeanClient(timeout=10, max_connections=self.in_flight)
        return self.client

    def schedule(self, message_id: str, number: str, status: str, key: str = "") -> None:
        task = asyncio.get_running_loop().create_task(self.report(message_id, number, status, key))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def report(self, message_id: str, number: str, status: str, key: str = "") -> None:
        """Send one DeliveryReportReq, retrying a few times if the gateway is not there."""
        if self.report_url is None:
            return
        await asyncio.sleep(self.report_delay * (1 + len(self.tasks) % 3))
        body = delivery_report(message_id, number, status)
        for attempt in range(5):
            try:
                response = await self.http().post(self.report_url, body, self.headers())
                if response.status < 300:
                    self._note({"sent": key})
                    return
            except http_client.HttpError:
                pass
            await asyncio.sleep(0.2 * 2**attempt)
        log.warning("sim.report_undelivered", message_id=message_id, status=status)


def _photo() -> bytes:
    """A small JPEG, as a handset's camera would attach."""
    out = io.BytesIO()
    Image.linear_gradient("L").resize((320, 240)).convert("RGB").save(out, "JPEG", quality=80)
    return out.getvalue()


def delivery_report(message_id: str, number: str, status: str) -> bytes:
    """A DeliveryReportReq as MMSCs send them, naming the handset when it was retrieved."""
    handset = SIM_HANDSET if status == mm7.MMStatus.RETRIEVED else None
    return mm7.encode_delivery_report(
        message_id, number, status, handset, f"dr-{secrets.token_hex(6)}"
    )


def fault(transaction_id: str | None, code: int, text: str) -> Response:
    """A SOAP Fault with RSErrorRsp detail, sent with HTTP 500 as SOAP 1.1 says."""
    body = mm7.encode_fault(transaction_id, code, text)
    return Response(body, status_code=500, media_type="text/xml; charset=utf-8")
