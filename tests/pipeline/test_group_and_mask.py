"""A send with to-displayonly and from-mask, accepted through the XML API over a route that
carries masks, delivered by the worker over MM7 to the simulated MMSC on loopback: the
MMSC sees the mask as sender and the display-only members apart from the one recipient,
and the status API shows what was sent."""

from __future__ import annotations

import dataclasses

import pytest

from mmsgate import models
from mmsgate.pipeline import deliver
from mmsgate.pipeline.deps import Deps
from mmsgate.pipeline.postback_sender import PostbackSender
from mmsgate.pipeline.worker import Worker
from mmsgate.profiles import PROFILES
from mmsgate.settings import Route
from mmsgate.sim.mmsc import SimulatedMmsc
from tests.api.helpers import fields
from tests.api.test_errors import TEXT, send_mms
from tests.conftest import Gateway
from tests.sim.test_mmsc import carrier_for

pytestmark = pytest.mark.anyio

MASKED = Route(name="sim-masked", kind="simulator", sender_mask=True, default=True)
UK = "447900000100"


async def deliver_over(gateway: Gateway, sim: SimulatedMmsc, route: Route) -> None:
    """Run the worker's deliver step once, `route` submitting to `sim` over real MM7."""
    async with carrier_for(sim) as carrier:
        deps = Deps(
            gateway.services.db,
            gateway.services.blobs,
            PostbackSender(),
            profiles=[PROFILES["default"]],
            routes=[route],
            carriers={route.name: carrier},
        )
        worker = Worker(gateway.services.db, {models.JobKind.DELIVER: deliver.deliver}, deps)
        try:
            await worker.run_once()
        finally:
            await deps.http.aclose()


async def masked_group_send(gateway: Gateway) -> str:
    head = "<from-mask>Acme</from-mask><to-displayonly>447900000201,447900000202</to-displayonly>"
    response = await gateway.xml(send_mms(gateway.api_key, TEXT, head=head, to=UK))
    assert fields(response.content)["status"] == "Success", response.text
    return fields(response.content)["tracking-id"]


@pytest.mark.config(routes=(MASKED,))
async def test_the_mmsc_gets_the_mask_and_the_display_only_members(gateway: Gateway) -> None:
    """One submit, to the `to` number only, from the mask, listing the display-only members;
    the recipient is submitted and its record shows the mask and the members."""
    tracking_id = await masked_group_send(gateway)
    sim = SimulatedMmsc(None)
    await deliver_over(gateway, sim, MASKED)
    await sim.aclose()
    assert dict(sim.submits) == {UK: 1}  # nobody else was delivered to
    [seen] = sim.seen.values()
    assert seen.recipient == UK
    assert seen.sender == "Acme"
    assert seen.display_only == ("447900000201", "447900000202")
    answer = await gateway.client.get(
        f"/v1/messages/{tracking_id}", headers={"x-api-key": gateway.api_key}
    )
    item = answer.json()
    assert item["state"] == "submitted"
    assert item["route"] == "sim-masked"
    assert item["from"] == "28444"
    assert item["from-mask"] == "Acme"
    assert item["to-displayonly"] == ["447900000201", "447900000202"]


@pytest.mark.config(routes=(MASKED,))
async def test_a_route_that_no_longer_carries_masks_gets_the_number(gateway: Gateway) -> None:
    """Accepted with a mask, delivered after the route lost sender_mask: the MMSC gets the
    `from` number, which every MMSC takes, not the mask."""
    await masked_group_send(gateway)
    sim = SimulatedMmsc(None)
    await deliver_over(gateway, sim, dataclasses.replace(MASKED, sender_mask=False))
    await sim.aclose()
    [seen] = sim.seen.values()
    assert seen.sender == "28444"
    assert seen.display_only == ("447900000201", "447900000202")
