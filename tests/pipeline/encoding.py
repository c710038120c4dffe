"""What the saveMMS tests share: a worker that runs the encoder and sends postbacks, run
until nothing is due, and a template row written as saveMMS would leave it."""

from __future__ import annotations

import datetime as dt

from mmsgate import models
from mmsgate.pipeline import encode, postbacks
from mmsgate.pipeline.deps import Deps
from mmsgate.pipeline.postback_sender import PostbackSender
from mmsgate.pipeline.worker import Worker
from mmsgate.profiles import PROFILES
from mmsgate.store.jobs import new_job
from mmsgate.store.schema import jobs, templates
from tests.conftest import Gateway


def worker_for(gw: Gateway) -> Worker:
    """A worker of the gateway's database that encodes templates for the default and legacy
    profiles and sends their postbacks (to private addresses too: the tests' receivers)."""
    deps = Deps(
        gw.services.db,
        gw.services.blobs,
        PostbackSender(allow_private_networks=True),
        profiles=[PROFILES["default"], PROFILES["legacy"]],
    )
    steps = {
        models.JobKind.ENCODE_TEMPLATE: encode.encode_template,
        models.JobKind.POSTBACK: postbacks.send_postback,
    }
    return Worker(gw.services.db, steps, deps)


async def run_encoder(gw: Gateway) -> None:
    """Run a `worker_for` the gateway until no job is due, then close its HTTP client."""
    worker = worker_for(gw)
    try:
        while await worker.run_once():
            pass
    finally:
        await worker.deps.http.aclose()


async def insert_encoding_template(gw: Gateway, slides: list[dict[str, object]]) -> int:
    """A template row waiting for the encoder, written directly (as saveMMS would)."""
    now = dt.datetime.now(dt.UTC)
    async with gw.services.db.write() as conn:
        result = await conn.execute(
            templates.insert()
            .values(
                account_id=gw.account.id,
                kind="saved",
                name="broken",
                subject=None,
                state="encoding",
                slides=slides,
                slide_count=len(slides),
                total_size=0,
                created_at=now,
            )
            .returning(templates.c.id)
        )
        template_id = int(result.scalar_one())
        job = new_job(models.JobKind.ENCODE_TEMPLATE, now, template_id=template_id)
        await conn.execute(jobs.insert().values(job))
    return template_id
