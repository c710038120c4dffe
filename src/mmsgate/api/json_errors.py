"""The one place an error becomes an answer on the `/v1` JSON routes.

Every refusal there is `{"error-code": …, "error-info": …}`, the names and codes the Sinch
API uses; the HTTP status says the kind: 401 without a valid key, 404 for what does not
exist (or is another account's), 413 for a body over its limit, 400 for any other refusal,
500 (E503, logged with its trace, answered without it) for anything unexpected. A path
under `/v1` that no route serves is 404, a method its route does not take 405 (with
`Allow`), both E100, in the same shape; elsewhere they keep Starlette's plain text.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, TypedDict

import structlog
from msgspec import Meta
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from mmsgate import codes, errors
from mmsgate.api import request_log
from mmsgate.media import prepare

log = structlog.get_logger(__name__)
Endpoint = Callable[[Request], Awaitable[Response]]
V1 = "/v1"

ErrorBody = TypedDict(
    "ErrorBody",
    {
        "error-code": Annotated[
            str, Meta(description="the Sinch code, e.g. E104", pattern="^E[0-9]{3}$")
        ],
        "error-info": Annotated[str, Meta(description="why, in words")],
    },
)

# By kind of refusal, most specific first: the first class the error is an instance of wins.
STATUSES: tuple[tuple[type[errors.MmsgateError], int], ...] = (
    (errors.Unauthenticated, 401),
    (errors.NotFound, 404),
    (errors.BodyTooLarge, 413),
    (errors.ApiError, 400),
    (prepare.PartFailed, 400),
)


def answered(endpoint: Endpoint) -> Endpoint:
    """`endpoint` with every error it raises answered in the `/v1` shape."""

    async def guarded(request: Request) -> Response:
        try:
            return await endpoint(request)
        except ClientDisconnect:
            raise  # no one to answer: the app's guard notes it
        except Exception as exc:  # the /v1 routes' error boundary: never a trace to the client
            response = answer(exc)
            if response.status_code == 500:  # unexpected: the trace goes to the log only
                log.exception("api.internal_error", path=request.url.path, error=repr(exc))
            return response

    return guarded


async def not_routed(request: Request, exc: Exception) -> Response:
    """The router's 404 (no route) and 405 (a method the route does not take)."""
    assert isinstance(exc, HTTPException)
    path = request.url.path
    if path != V1 and not path.startswith(V1 + "/"):
        return PlainTextResponse(exc.detail, exc.status_code, exc.headers)
    if exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow", "")
        info = f"Invalid request: {path} takes {allowed}, not {request.method}"
    else:
        info = f"Invalid request: no route {request.method} {path}"
    code = codes.ErrorCode.INVALID_REQUEST.value
    request_log.note(code=code, info=info)
    body: ErrorBody = {"error-code": code, "error-info": info}
    return JSONResponse(body, exc.status_code, exc.headers)


def answer(exc: Exception) -> JSONResponse:
    """The JSON answer to `exc`, noted on the request's log line."""
    code, info = _code_and_info(exc)
    status = next((s for kind, s in STATUSES if isinstance(exc, kind)), 500)
    request_log.note(code=code, info=info)
    body: ErrorBody = {"error-code": code, "error-info": info}
    return JSONResponse(body, status)


def _code_and_info(exc: Exception) -> tuple[str, str]:
    if isinstance(exc, errors.ApiError):
        return exc.code.value, exc.info
    if isinstance(exc, errors.BodyTooLarge):
        return codes.ErrorCode.INVALID_REQUEST.value, f"Invalid request: {exc}"
    if isinstance(exc, prepare.PartFailed):
        return prepare.failure_code(exc.kind), str(exc)
    return codes.ErrorCode.INTERNAL.value, codes.ErrorCode.INTERNAL.text
