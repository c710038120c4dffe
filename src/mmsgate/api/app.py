"""The ASGI application: routes, the `POST /ep/v1/` error boundary (an error becomes a Sinch
`Failure`), and start-up/shut-down of parts. The `/v1` JSON routes answer their errors,
and the router's 404/405 under `/v1`, in api/json_errors.py; any other route's unexpected
error is a logged 500."""

from __future__ import annotations

import contextlib
import dataclasses
import email.parser
import email.policy
import os
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable

import structlog
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from mmsgate import codes, errors, http_server, logs, models, runtime
from mmsgate import settings as settings_mod
from mmsgate.api import (
    actions,
    docs_page,
    idempotency,
    json_errors,
    kannel,
    metrics_page,
    mm7,
    openapi,
    ready,
    reports,
    request_log,
    requests,
    results,
    sinch_xml,
    status,
)
from mmsgate.api.content import ContentStore, DbFetchCache
from mmsgate.api.guard import Guard
from mmsgate.api.json_errors import answered
from mmsgate.media.fetch import Fetcher
from mmsgate.settings import Settings
from mmsgate.store.blobs import FileBlobStore
from mmsgate.store.db import Database
from mmsgate.store.writer import Writer
from mmsgate.web import page, parts

log = structlog.get_logger(__name__)
XML = "application/xml; charset=utf-8"
XML_PATHS = frozenset({"/ep/v1/", "/ep/v1"})
CLIENT_GONE = "client gone"  # the request line's code when the client did not wait
SEND_ACTIONS = {models.Action.SEND_MMS, models.Action.SEND_SAVED_MMS}

Handler = Callable[
    [actions.Services, models.Account, sinch_xml.Node, idempotency.Claim | None],
    Awaitable[results.Result],
]
DISPATCH: dict[models.Action, Handler] = {
    models.Action.SEND_MMS: lambda s, a, d, c: idempotency.once(
        s, a, c, lambda k: actions.send_mms(s, a, requests.send_mms(d), k)
    ),
    models.Action.SAVE_MMS: lambda s, a, d, c: idempotency.once(
        s, a, c, lambda k: actions.save_mms(s, a, requests.save_mms(d), k)
    ),
    models.Action.SEND_SAVED_MMS: lambda s, a, d, c: idempotency.once(
        s, a, c, lambda k: actions.send_saved_mms(s, a, requests.send_saved_mms(d), k)
    ),
    models.Action.DELETE_MMS_ID: lambda s, a, d, _c: actions.delete_mms_id(
        s, a, requests.delete_mms_id(d)
    ),
    models.Action.GET_MMS_TEMPLATES: lambda s, a, d, _c: actions.get_mms_templates(
        s, a, requests.get_mms_templates(d)
    ),
}
IDEMPOTENCY_KEY = idempotency.HEADER.lower().encode()


def build_services(settings: Settings, db: Database) -> actions.Services:
    blobs = FileBlobStore(settings.blob_dir)
    fetcher = Fetcher(settings.media, DbFetchCache(db, blobs))
    return actions.Services(
        settings=settings,
        db=db,
        writer=Writer(db),
        guard=Guard(db, settings.api.account_cache_seconds),
        content=ContentStore(db, blobs, fetcher, settings.media),
        blobs=blobs,
    )


def app_from_environment() -> MmsgateApp:
    """The app built from `MMSGATE_*` variables: for server processes started by uvicorn."""
    settings = settings_mod.load(None, dict(os.environ))
    json_logs = settings.log_format is settings_mod.LogFormat.JSON
    logs.configure(os.environ.get("MMSGATE_LOG_LEVEL", "info"), json=json_logs)
    app = create_app(settings)
    runtime.tune_gc()
    return app


def create_app(
    settings: Settings,
    services: actions.Services | None = None,
    background: Callable[[], contextlib.AbstractAsyncContextManager[None]] | None = None,
) -> MmsgateApp:
    """The whole HTTP surface of one mmsgate process.

    `background` runs alongside the server and stops before it shuts down: `mmsgate run`
    puts the pipeline worker there (the API itself never imports the pipeline).
    """
    svc = services or build_services(settings, Database(settings.db_url))

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        svc.writer.start()
        try:
            async with contextlib.AsyncExitStack() as stack:
                if settings.metrics_address is not None:
                    await stack.enter_async_context(metrics_page.own_address(svc))
                if background is not None:
                    await stack.enter_async_context(background())
                yield
        finally:
            await svc.writer.close()
            await svc.content.aclose()
            await svc.db.close()

    async def status_endpoint(request: Request) -> Response:
        request_log.note(action="messageStatus", tracking_ids=(request.path_params["tracking_id"],))
        return await status.message_status(svc, request)

    async def list_endpoint(request: Request) -> Response:
        request_log.note(action="listMessages")
        return await status.list_messages(svc, request)

    async def template_endpoint(request: Request) -> Response:
        request_log.note(action="templateReport")
        return await reports.template_report(svc, request)

    async def preview_endpoint(request: Request) -> Response:
        request_log.note(action="preview")
        return await reports.preview(svc, request)

    async def mm7_endpoint(request: Request) -> Response:
        return await mm7.receive(svc, request)

    web = page.Web(db=svc.db, blobs=svc.blobs, clock=svc.clock)

    async def page_endpoint(request: Request) -> Response:
        return await page.hosted_page(web, request)

    async def media_endpoint(request: Request) -> Response:
        return await parts.media(web, request)

    async def kannel_endpoint(request: Request) -> Response:
        request_log.note(action="kannelReceipt")
        return await kannel.dlr(svc, request)

    async def metrics_endpoint(request: Request) -> Response:
        return await metrics_page.on_api_port(svc, request)

    spec = openapi.document()
    docs = docs_page.render(spec).encode("utf-8")

    async def openapi_endpoint(_request: Request) -> Response:
        return JSONResponse(spec)

    async def docs_endpoint(_request: Request) -> Response:
        return Response(docs, media_type="text/html; charset=utf-8", headers=docs_page.HEADERS)

    async def healthz(_request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        return await ready.readyz(svc, request)

    routes = Starlette(
        routes=[
            Route("/v1/messages", answered(list_endpoint), methods=["GET"]),
            Route("/v1/messages/{tracking_id}", answered(status_endpoint), methods=["GET"]),
            Route("/v1/templates/{mms_id}", answered(template_endpoint), methods=["GET"]),
            Route("/v1/preview", answered(preview_endpoint), methods=["POST"]),
            Route("/mm7", mm7_endpoint, methods=["POST"]),
            Route("/m/{token}", page_endpoint, methods=["GET", "HEAD"]),
            Route("/media/{token}/{n}", media_endpoint, methods=["GET", "HEAD"]),
            Route("/kannel/dlr", kannel_endpoint, methods=["GET", "POST"]),
            Route("/metrics", metrics_endpoint, methods=["GET"]),
            Route("/openapi.json", openapi_endpoint, methods=["GET"]),
            Route("/docs", docs_endpoint, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
        ],
        exception_handlers={
            ClientDisconnect: client_disconnected,
            HTTPException: json_errors.not_routed,
            Exception: internal_error,
        },
        lifespan=lifespan,
    )
    return MmsgateApp(svc, routes)


class MmsgateApp:
    """The ASGI entry: POST /ep/v1/ is served directly (it is the hot path, and needs none of
    the routing and middleware layers); everything else goes to the Starlette routes. API
    requests get their `api.request` log line around either. Every HTTP request is guarded
    (mmsgate/http_server.py): an answer before the body is read closes the connection, and
    a client that leaves before the commit stops its request."""

    def __init__(self, services: actions.Services, routes: Starlette) -> None:
        self.services = services
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.routes(scope, receive, send)
        elif request_log.is_logged(scope["path"]):
            await request_log.logged(self._guarded, scope, receive, send)
        else:
            await self._guarded(scope, receive, send)

    async def _guarded(self, scope: Scope, receive: Receive, send: Send) -> None:
        left = await http_server.guard(self._serve, scope, receive, send)
        if left is not None:
            request_log.note(code=CLIENT_GONE, info=f"the client left {left.value}", status=499)

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] in XML_PATHS:
            if scope["method"] != "POST":
                await send_bytes(send, 405, b"POST the request XML\n", "text/plain")
                return
            await send_bytes(send, 200, await handle_xml(self.services, scope, receive), XML)
            return
        await self.routes(scope, receive, send)


async def send_bytes(send: Send, status: int, body: bytes, content_type: str) -> None:
    headers = [
        (b"content-type", content_type.encode()),
        (b"content-length", str(len(body)).encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@dataclasses.dataclass(slots=True)
class _Echo:
    """What a Failure response repeats from the request (the `to` of send actions)."""

    to: str | None = None


async def handle_xml(svc: actions.Services, scope: Scope, receive: Receive) -> bytes:
    """POST /ep/v1/: the one place where an error becomes a Failure response."""
    echo = _Echo()
    try:
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        body = await read_body(scope, receive, svc.settings.api.max_body_bytes)
        doc = sinch_xml.parse(
            xml_of(headers.get("content-type", ""), body), svc.settings.api.max_xml_depth
        )
        action = requests.action_of(doc)
        request_log.note(action=action.value)
        if action in SEND_ACTIONS:
            echo.to = requests.echoed_to(doc)
        client = scope["client"][0] if scope.get("client") else None
        account = await svc.guard.check(requests.api_key(doc), action, client)
        claim = idempotency.claim(
            [v.decode("latin-1") for k, v in scope["headers"] if k == IDEMPOTENCY_KEY], "xml", body
        )
        result = await DISPATCH[action](svc, account, doc, claim)
    except errors.ApiError as exc:
        request_log.note(code=exc.code.value, info=exc.info)
        return sinch_xml.failure(exc, echo.to)
    except ClientDisconnect:
        raise  # no one to answer: the guard around the app notes it
    except Exception as exc:  # the endpoint's error boundary: never a trace to the client
        log.exception("api.internal_error", error=repr(exc))
        request_log.note(code=codes.ErrorCode.INTERNAL.value)
        return sinch_xml.failure(errors.ApiError(codes.ErrorCode.INTERNAL), echo.to)
    request_log.note(code=request_log.SUCCESS, tracking_ids=results.tracking_ids(result))
    return sinch_xml.answer(result)


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The request body, refused (E100) as soon as it is known to pass `limit` bytes."""
    try:
        body = await http_server.read_body(Request(scope, receive), limit)
    except errors.BodyTooLarge:
        raise errors.ApiError(
            codes.ErrorCode.INVALID_REQUEST,
            f"Invalid request: the body is larger than {limit} bytes",
        ) from None
    if not body.strip():
        raise errors.ApiError(codes.ErrorCode.INVALID_REQUEST, "Invalid request: the body is empty")
    return body


def xml_of(content_type: str, body: bytes) -> bytes:
    """The XML document: the raw body, or the legacy `xml` form field."""
    raw_type, content_type = content_type, content_type.lower()
    if body.lstrip().startswith(b"<"):
        # A raw XML body, whatever the header says: curl --data-binary and many HTTP
        # libraries label any POST body application/x-www-form-urlencoded.
        return body
    if content_type.startswith("application/x-www-form-urlencoded"):
        fields = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
        return _form_field(fields.get("xml", [""])[0].encode("utf-8"))
    if content_type.startswith("multipart/form-data"):
        header = f"Content-Type: {raw_type}\r\n\r\n".encode("latin-1")
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(header + body)
        for part in message.iter_parts():
            if part.get_param("name", header="content-disposition") == "xml":
                payload = part.get_payload(decode=True)
                return _form_field(payload if isinstance(payload, bytes) else b"")
        return _form_field(b"")
    return body


def _form_field(value: bytes) -> bytes:
    if not value.strip():
        raise errors.ApiError(
            codes.ErrorCode.INVALID_REQUEST, "Invalid request: the form has no 'xml' field"
        )
    return value


async def client_disconnected(_request: Request, _exc: Exception) -> Response:
    """The client left while sending its body: nothing was done, and no one hears an answer."""
    return Response(status_code=400)


async def internal_error(request: Request, exc: Exception) -> Response:
    """Anything unexpected outside `/ep/v1/` and `/v1`: logged with its trace, answered
    without one."""
    log.exception("api.internal_error", path=request.url.path, error=repr(exc))
    return JSONResponse({"error": "internal error"}, status_code=500)
