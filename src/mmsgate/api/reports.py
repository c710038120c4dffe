"""Beyond Sinch: what transcoding did to a template (GET /v1/templates/{mms-id}), and a dry
run of a send or save (POST /v1/preview) that stores and sends nothing."""

from __future__ import annotations

from collections.abc import Sequence

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mmsgate import codes, errors, http_server, models
from mmsgate.api import requests, sinch_xml
from mmsgate.api.actions import Services
from mmsgate.media import prepare
from mmsgate.store import queries, templates


async def template_report(svc: Services, request: Request) -> Response:
    """The template's encoding state and, per carrier profile, the transcode report."""
    account = await svc.guard.authenticate(request.headers.get("x-api-key"))
    raw = request.path_params["mms_id"]
    mms_id = requests.template_id(raw)
    row = None if mms_id is None else await templates.report(svc.db, account.id, mms_id)
    if row is None:
        raise errors.NotFound(codes.ErrorCode.BAD_MMS_ID, f"no template with mms-id {raw}")
    return JSONResponse({"mms-id": raw, "state": row.state.value, "profiles": row.reports or {}})


async def preview(svc: Services, request: Request) -> Response:
    """Prepare a sendMMS/saveMMS/sendSavedMMS request for every profile in use; keep nothing."""
    account = await svc.guard.authenticate(request.headers.get("x-api-key"))
    body = await http_server.read_body(request, svc.settings.api.max_body_bytes)
    profiles = await preview_document(svc, account, body)
    answer = {name: report.to_json() for name, report in profiles.items()}
    return JSONResponse({"state": "preview", "profiles": answer})


async def preview_document(
    svc: Services, account: models.Account, body: bytes
) -> dict[str, prepare.PreparedReport]:
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
) -> tuple[Sequence[prepare.Json], prepare.Load]:
    action = requests.action_of(doc)
    if action is models.Action.SEND_SAVED_MMS:
        mms_id = requests.mms_id(doc)
        info = await queries.template_info(svc.db, account.id, mms_id)
        row = await templates.for_encoding(svc.db, mms_id) if info is not None else None
        if row is None:
            raise errors.ApiError(
                codes.ErrorCode.BAD_MMS_ID, f"Invalid mms-id {mms_id} / MMS don't exist"
            )
        return [slide.to_data() for slide in row.slides], svc.blobs.get
    if action not in (models.Action.SEND_MMS, models.Action.SAVE_MMS):
        raise errors.ApiError(
            codes.ErrorCode.INVALID_REQUEST, f"Nothing to preview for {action.value}"
        )
    checked, data = await svc.content.check(requests.content(doc), account.id)

    async def load(key: str) -> bytes:
        return data[key]

    return checked.slides, load
