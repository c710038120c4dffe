"""Beyond Sinch: what transcoding did to a template (GET /v1/templates/{mms-id}), and a dry
run of a send or save (POST /v1/preview) that stores and sends nothing."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Literal, TypedDict

import msgspec
from msgspec import Meta
from starlette.requests import Request
from starlette.responses import JSONResponse

from mmsgate import codes, errors, http_server, models
from mmsgate.api import requests, sinch_xml
from mmsgate.api.actions import Services
from mmsgate.media import prepare
from mmsgate.store import queries, templates


class PartAnswer(TypedDict):
    """What one part became for one profile."""

    slide: Annotated[int, Meta(description="its slide, from 1")]
    kind: Annotated[str, Meta(description="image, audio, video, text, vcard, ical, pdf, passbook")]
    content_type: Annotated[str, Meta(description="the MIME type sent")]
    source_bytes: Annotated[int, Meta(description="its size as fetched")]
    output_bytes: Annotated[int, Meta(description="its size as sent")]
    width: Annotated[int | None, Meta(description="pixels, images and video")]
    height: Annotated[int | None, Meta(description="pixels, images and video")]
    duration_ms: Annotated[int | None, Meta(description="audio and video")]
    codec: Annotated[str | None, Meta(description="the codec or format it was encoded to")]
    quality: Annotated[int | None, Meta(description="the JPEG quality chosen")]
    dropped: Annotated[list[str], Meta(description="what was dropped: metadata, frames …")]
    kept: Annotated[str | None, Meta(description="why its bytes are the source's, if they are")]


class ProfileAnswer(TypedDict):
    """The message prepared for one carrier profile."""

    total_bytes: Annotated[int, Meta(description="the whole message as it would be sent")]
    budget_bytes: Annotated[int, Meta(description="what the profile allows")]
    fits: Annotated[bool, Meta(description="whether it goes as MMS")]
    fallback: Annotated[str | None, Meta(description="why it cannot go as MMS, or null")]
    parts: Annotated[list[PartAnswer], Meta(description="each part, in slide order")]


StateName = Literal["encoding", "ready", "failed"]
_STATES: dict[models.TemplateState, StateName] = {
    models.TemplateState.ENCODING: "encoding",
    models.TemplateState.READY: "ready",
    models.TemplateState.FAILED: "failed",
}
Profiles = Annotated[dict[str, ProfileAnswer], Meta(description="by carrier profile name")]
TemplateReport = TypedDict(
    "TemplateReport",
    {
        "mms-id": Annotated[str, Meta(description="the template")],
        "state": Annotated[StateName, Meta(description="where its encoding is")],
        "profiles": Profiles,
    },
)


class PreviewAnswer(TypedDict):
    """A dry run: what each profile in use would make of the request."""

    state: Literal["preview"]
    profiles: Profiles


async def template_report(svc: Services, request: Request) -> JSONResponse:
    """The template's encoding state and, per carrier profile, the transcode report."""
    account = await svc.guard.authenticate(request.headers.get("x-api-key"))
    raw = request.path_params["mms_id"]
    mms_id = requests.template_id(raw)
    row = None if mms_id is None else await templates.report(svc.db, account.id, mms_id)
    if row is None:
        raise errors.NotFound(codes.ErrorCode.BAD_MMS_ID, f"no template with mms-id {raw}")
    answer: TemplateReport = {
        "mms-id": raw,
        "state": _STATES[row.state],
        "profiles": stored(row.reports),
    }
    return JSONResponse(answer)


async def preview(svc: Services, request: Request) -> JSONResponse:
    """Prepare a sendMMS/saveMMS/sendSavedMMS request for every profile in use; keep nothing."""
    account = await svc.guard.authenticate(request.headers.get("x-api-key"))
    body = await http_server.read_body(request, svc.settings.api.max_body_bytes)
    profiles = await preview_document(svc, account, body)
    answer: PreviewAnswer = {
        "state": "preview",
        "profiles": {name: profile_answer(report) for name, report in profiles.items()},
    }
    return JSONResponse(answer)


def profile_answer(report: prepare.PreparedReport) -> ProfileAnswer:
    """A profile's report as the API answers it."""
    return {
        "total_bytes": report.total_bytes,
        "budget_bytes": report.budget_bytes,
        "fits": report.fits,
        "fallback": report.fallback,
        "parts": [
            {
                "slide": p.slide,
                "kind": p.kind.value,
                "content_type": p.content_type,
                "source_bytes": p.source_bytes,
                "output_bytes": p.output_bytes,
                "width": p.width,
                "height": p.height,
                "duration_ms": p.duration_ms,
                "codec": p.codec,
                "quality": p.quality,
                "dropped": list(p.dropped),
                "kept": p.kept,
            }
            for p in report.parts
        ],
    }


def stored(reports: Mapping[str, object] | None) -> dict[str, ProfileAnswer]:
    """The reports a template keeps (or a preview made), typed; a part stored by an older
    mmsgate, without the measures added since, has them null."""
    profiles = {
        name: {**report, "parts": [{**_PART_DEFAULTS, **p} for p in report.get("parts", ())]}
        for name, report in (reports or {}).items()
        if isinstance(report, dict)
    }
    return msgspec.convert(profiles, dict[str, ProfileAnswer])


_PART_DEFAULTS: dict[str, object] = {
    "width": None,
    "height": None,
    "duration_ms": None,
    "codec": None,
    "quality": None,
    "dropped": [],
    "kept": None,
}


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
