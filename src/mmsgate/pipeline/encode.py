"""Step for saveMMS templates: prepare them for every carrier profile in use, then mark them
ready (postback N003) or failed (E002 audio, E003 video, E004 image, naming the URL)."""

from __future__ import annotations

import structlog

from mmsgate import metrics, models
from mmsgate.media import prepare
from mmsgate.pipeline import postbacks
from mmsgate.pipeline.deps import Deps
from mmsgate.pipeline.transcodes import StoreCache
from mmsgate.pipeline.worker import Outcome
from mmsgate.store import templates
from mmsgate.store.jobs import Job

log = structlog.get_logger(__name__)
T = models.PostbackKind.TEMPLATE


async def encode_template(job: Job, deps: Deps) -> Outcome:
    """Prepare the template for each profile and record the outcome with its postback."""
    assert job.template_id is not None
    row = await templates.for_encoding(deps.db, job.template_id)
    if row is None:
        return Outcome()  # deleted while it waited: nothing left to encode
    cache = StoreCache(deps.db, deps.blobs)
    slides = [slide.to_data() for slide in row.slides]
    reports: dict[str, object] = {}
    try:
        for profile in deps.profiles:
            prepared = await prepare.prepare(slides, profile, deps.blobs.get, cache)
            reports[profile.name] = prepared.report.to_json()
    except prepare.PartFailed as failed:
        code = prepare.failure_code(failed.kind)
        metrics.TEMPLATES.labels("failed").inc()
        log.warning("template.encoding_failed", template_id=row.id, code=code, error=str(failed))
        event = models.PostbackEvent(
            T,
            row.account_id,
            code,
            mms_id=row.id,
            failed=failed.kind,
            failed_url=failed.url,
            client_reference=row.client_reference,
        )
        await templates.finish_encoding(
            deps.db,
            row.id,
            models.TemplateState.FAILED,
            reports,
            postbacks.postback_job(event, deps.clock()),
        )
        return Outcome()
    event = models.PostbackEvent(
        T, row.account_id, "N003", mms_id=row.id, client_reference=row.client_reference
    )
    await templates.finish_encoding(
        deps.db,
        row.id,
        models.TemplateState.READY,
        reports,
        postbacks.postback_job(event, deps.clock()),
    )
    metrics.TEMPLATES.labels("ready").inc()
    log.info("template.ready", template_id=row.id, profiles=list(reports))
    return Outcome()
