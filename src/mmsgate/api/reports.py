"""Beyond Sinch: what transcoding did to a template (GET /v1/templates/{mms-id}), and a dry
run of a send or save (POST /v1/preview) that stores and sends nothing."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mmsgate import codes, errors, http_server, models
from mmsgate.api import request_log, requests, sinch_xml
from mmsgate.api.actions import Services
from mmsgate.media import prepare
from mmsgate.store import queries, templates


async def _account(svc: Services, request: Request) -> models.Account | JSONResponse:
    try:
        return await svc.guard.authenticate(request.headers.get("x-api-key"))
    except errors.ApiError as exc:
        request_log.note(code=exc.code.value, info=exc.info)
        return JSONResponse({"error-code": exc.code.value, "error-info": exc.info}, 401)


async def template_report(svc: Services, request: Request) -> Response:
    """The template's encoding state and, per carrier profile, the transcode report."""
    account = await _account(svc, request)
    if isinstance(account, JSONResponse):
        return account
    raw = request.path_params["mms_id"]
    mms_id = requests.template_id(raw)
    row = None if mms_id is None else await templates.report(svc.db, account.id, mms_id)
    if row is None:
        return JSONResponse({"error": f"no template with mms-id {raw}"}, 404)
    return JSONResponse({"mms-id": raw, "state": row.state, "profiles": row.reports or {}})


async def preview(svc: Services, request: Request) -> Response:
    """Prepare a sendMMS/saveMMS/sendSavedMMS request for every profile in use; keep nothing."""
    account = await _account(svc, request)
    if isinstance(account, JSONResponse):
        return account
    limit = svc.settings.api.max_body_bytes
    try:
        body = await http_server.read_body(request, limit)
    except errors.BodyTooLarge:
        info = f"Invalid request: the body is larger than {limit} bytes"
        request_log.note(code=codes.ErrorCode.INVALID_REQUEST.value, info=info)
        return JSONResponse(
            {"error-code": codes.ErrorCode.INVALID_REQUEST.value, "error-info": info}, 413
        )
    try:
        profiles = await preview_document(svc, account, body)
    except errors.ApiError as exc:
        request_log.note(code=exc.code.value, info=exc.info)
        return JSONResponse({"error-code": exc.code.value, "error-info": exc.info}, 400)
    except prepare.PartFailed as exc:
        code = prepare.failure_code(exc.kind)
        request_log.note(code=code, info=str(exc))
        return JSONResponse({"error-code": code, "error-info": str(exc)}, 400)
    return JSONResponse({"state": "preview", "profiles": profiles})


async def preview_document(
    svc: Services, account: models.Account, body: bytes
) -> dict[str, dict[str, Any]]:
    """The transcode report per profile in use for one request document (the dry run).

    Raises ApiError for a request a send would refuse, PartFailed for media that cannot be
    transcoded."""
    doc = sinch_xml.parse(body, svc.settings.api.max_xml_depth)
    slides, load = await _slides_of(svc, account, doc)
    profiles = {}
    for profile in svc.settings.profiles_in_use:
        prepared = await prepare.prepare(slides, profile, load)
        profiles[profile.name] = prepared.report
    return profiles


async def _slides_of(
    svc: Services, account: models.Account, doc: sinch_xml.Node
) -> tuple[list[dict[str, Any]], prepare.Load]:
    action = requests.action_of(doc)
    if action is models.Action.SEND_SAVED_MMS:
        mms_id = requests.mms_id(doc)
        info = await queries.template_info(svc.db, account.id, mms_id)
        row = await templates.for_encoding(svc.db, mms_id) if info is not None else None
        if row is None:
            raise errors.ApiError(
                codes.ErrorCode.BAD_MMS_ID, f"Invalid mms-id {mms_id} / MMS don't exist"
            )
        return list(row.slides), svc.blobs.get
    if action not in (models.Action.SEND_MMS, models.Action.SAVE_MMS):
        raise errors.ApiError(
            codes.ErrorCode.INVALID_REQUEST, f"Nothing to preview for {action.value}"
        )
    checked, data = await svc.content.check(requests.content(doc), account.id)

    async def load(key: str) -> bytes:
        return data[key]

    return checked.slides, load
