"""to-displayonly, from-mask and cache-content through the XML API: what is accepted and
stored, what is refused (and leaves nothing behind), and what the status API shows."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from mmsgate.settings import Route
from mmsgate.store import schema
from tests import samples
from tests.api.helpers import failure_code, fields, send_saved, text_template
from tests.api.test_errors import TEXT, send_mms, snapshot
from tests.conftest import Gateway, MediaServer

pytestmark = pytest.mark.anyio

UK = "447900000100"  # outside North America: a mask may reach it
MASKED = (Route(name="sim-masked", kind="simulator", sender_mask=True, default=True),)
PLAIN = (Route(name="sim-plain", kind="simulator", default=True),)


async def stored_message(gw: Gateway) -> sa.Row[tuple[object, ...]]:
    async with gw.services.db.read() as conn:
        return (await conn.execute(sa.select(schema.messages))).one()


async def status_of(gw: Gateway, body: bytes) -> dict[str, object]:
    tracking_id = fields(body)["tracking-id"]
    answer = await gw.client.get(f"/v1/messages/{tracking_id}", headers={"x-api-key": gw.api_key})
    assert answer.status_code == 200, answer.text
    found: dict[str, object] = answer.json()
    return found


@pytest.mark.config(routes=MASKED)
async def test_a_masked_send_with_display_only_members_is_stored_and_shown(
    gateway: Gateway,
) -> None:
    """Accepted over a sender_mask route: the message keeps the mask and the display-only
    numbers (checked, as digits), and both the status item and the list show them."""
    head = "<from-mask>Acme_Shop</from-mask><to-displayonly>+447900000201, 447900000202</to-displayonly>"
    response = await gateway.xml(send_mms(gateway.api_key, TEXT, head=head, to=UK))
    assert fields(response.content)["status"] == "Success", response.text
    row = await stored_message(gateway)
    assert row.sender_mask == "Acme_Shop"
    assert row.to_displayonly == ["447900000201", "447900000202"]
    assert row.sender == "28444"
    item = await status_of(gateway, response.content)
    assert item["from"] == "28444"
    assert item["from-mask"] == "Acme_Shop"
    assert item["to-displayonly"] == ["447900000201", "447900000202"]
    assert item["to"] == UK
    listed = await gateway.client.get("/v1/messages", headers={"x-api-key": gateway.api_key})
    [first] = listed.json()["messages"]
    assert first["from-mask"] == "Acme_Shop"
    assert first["to-displayonly"] == ["447900000201", "447900000202"]


async def test_a_plain_send_shows_no_mask_and_no_display_only_members(
    gateway: Gateway,
) -> None:
    """Without the fields, the message stores neither and the status item shows null and []."""
    response = await gateway.xml(send_mms(gateway.api_key, TEXT))
    row = await stored_message(gateway)
    assert row.sender_mask is None
    assert row.to_displayonly is None
    item = await status_of(gateway, response.content)
    assert item["from-mask"] is None
    assert item["to-displayonly"] == []


@pytest.mark.config(routes=MASKED)
async def test_repeated_display_only_elements_and_the_skycore_spelling(gateway: Gateway) -> None:
    """Repeated <to-displayonly> join like repeated <to>; Skycore's FROM_MASK is from-mask."""
    head = (
        "<FROM_MASK>Acme</FROM_MASK><to-displayonly>447900000201</to-displayonly>"
        "<TO_DISPLAYONLY>447900000202</TO_DISPLAYONLY>"
    )
    response = await gateway.xml(send_mms(gateway.api_key, TEXT, head=head, to=UK))
    assert fields(response.content)["status"] == "Success", response.text
    row = await stored_message(gateway)
    assert row.sender_mask == "Acme"
    assert row.to_displayonly == ["447900000201", "447900000202"]


@pytest.mark.config(routes=MASKED)
@pytest.mark.parametrize(
    ("head", "to", "code", "says"),
    [
        ("<from-mask>Acme</from-mask>", "17745550100", "E115", "US or Canada"),
        ("<from-mask>Acme Shop</from-mask>", UK, "E115", "Invalid from-mask"),
        ("<from-mask>123456</from-mask>", UK, "E115", "not only digits"),
        ("<from-mask>TwelveChars1</from-mask>", UK, "E115", "1 to 11"),
        ("<to-displayonly>447900000201,12</to-displayonly>", UK, "E110", "to-displayonly"),
        (
            "<to-displayonly>"
            + ",".join(f"4479000{n:05d}" for n in range(101))
            + "</to-displayonly>",
            UK,
            "E623",
            "at most 100",
        ),
        ("<cache-content>perhaps</cache-content>", UK, "E100", "cache-content"),
    ],
)
async def test_bad_values_are_refused_and_nothing_is_stored(
    gateway: Gateway, head: str, to: str, code: str, says: str
) -> None:
    """A mask toward NANP or of the wrong form (E115), a bad display-only number (E110), too
    many of them (E623), a cache-content that is no yes/no (E100): Failure, no rows."""
    before = await snapshot(gateway)
    response = await gateway.xml(send_mms(gateway.api_key, TEXT, head=head, to=to))
    assert failure_code(response.content) == code
    assert says in fields(response.content)["error-info"]
    assert await snapshot(gateway) == before


@pytest.mark.config(routes=PLAIN)
async def test_a_mask_over_a_route_that_cannot_carry_one_is_e115(gateway: Gateway) -> None:
    """A route without sender_mask refuses a from-mask, naming itself; nothing is stored."""
    before = await snapshot(gateway)
    head = "<from-mask>Acme</from-mask>"
    response = await gateway.xml(send_mms(gateway.api_key, TEXT, head=head, to=UK))
    assert failure_code(response.content) == "E115"
    assert "route sim-plain" in fields(response.content)["error-info"]
    assert await snapshot(gateway) == before


async def test_the_built_in_simulator_takes_no_mask_unless_configured(gateway: Gateway) -> None:
    """With no routes configured, the built-in simulator route has sender_mask off: E115."""
    head = "<from-mask>Acme</from-mask>"
    response = await gateway.xml(send_mms(gateway.api_key, TEXT, head=head, to=UK))
    assert failure_code(response.content) == "E115"


@pytest.mark.config(routes=MASKED)
async def test_in_a_list_only_the_numbers_a_mask_cannot_reach_are_refused(
    gateway: Gateway,
) -> None:
    """A masked send to a UK and a US number: the UK one is accepted, the US one gets E115."""
    head = "<from-mask>Acme</from-mask>"
    body = send_mms(gateway.api_key, TEXT, head=head, to=f"{UK},17745550100")
    response = await gateway.xml(body)
    text = response.text
    assert "<status>Success</status>" in text
    assert text.count("<tracking-id>") == 1
    assert "<error-code>E115</error-code>" in text
    async with gateway.services.db.read() as conn:
        numbers = (await conn.scalars(sa.select(schema.recipients.c.msisdn))).all()
    assert numbers == [UK]


@pytest.mark.config(routes=MASKED)
async def test_send_saved_mms_takes_the_mask_and_display_only_members(gateway: Gateway) -> None:
    """sendSavedMMS reads both fields as sendMMS does: stored with the send, or E115."""
    saved = await gateway.xml(text_template(gateway.api_key))
    mms_id = fields(saved.content)["mms-id"]
    extra = "<from-mask>Acme</from-mask><to-displayonly>447900000201</to-displayonly>"
    refused = await gateway.xml(send_saved(gateway.api_key, mms_id, extra=extra))
    assert failure_code(refused.content) == "E115"  # its default `to` is a US number
    response = await gateway.xml(send_saved(gateway.api_key, mms_id, to=UK, extra=extra))
    assert fields(response.content)["status"] == "Success", response.text
    row = await stored_message(gateway)
    assert (row.sender_mask, row.to_displayonly) == ("Acme", ["447900000201"])


def image_slide(base: str) -> str:
    return f"<slide><image><url>{base}/images/1.jpg</url></image></slide>"


async def test_cache_content_false_fetches_the_media_anew(
    gateway: Gateway, media_server: MediaServer
) -> None:
    """By default a second send revalidates its cached image (304); with cache-content false
    it downloads it whole, and writes nothing to the fetch cache."""
    media_server.add("/images/1.jpg", "image/jpeg", samples.jpeg(), ETag='"img-1"')
    slides = image_slide(media_server.base)
    no_cache = "<cache-content>false</cache-content>"
    first = await gateway.xml(send_mms(gateway.api_key, slides, head=no_cache))
    assert fields(first.content)["status"] == "Success", first.text
    async with gateway.services.db.read() as conn:
        cached = await conn.scalar(sa.select(sa.func.count()).select_from(schema.media_cache))
    assert cached == 0  # not written
    await gateway.xml(send_mms(gateway.api_key, slides))  # cached now
    await gateway.xml(send_mms(gateway.api_key, slides))  # revalidated: 304
    assert media_server.revalidated.get("/images/1.jpg") == 1
    await gateway.xml(send_mms(gateway.api_key, slides, head=no_cache))  # not read: 200
    await gateway.xml(send_mms(gateway.api_key, slides, head="<cache-content>true</cache-content>"))
    assert media_server.hits["/images/1.jpg"] == 5
    assert media_server.revalidated["/images/1.jpg"] == 2


async def test_save_mms_with_cache_content_false_leaves_the_fetch_cache_alone(
    gateway: Gateway, media_server: MediaServer
) -> None:
    """saveMMS takes cache-content too: false fetches without reading or writing the cache."""
    media_server.add("/images/1.jpg", "image/jpeg", samples.jpeg(), ETag='"img-1"')
    body = (
        f"<request><action>saveMMS</action><api-key>{gateway.api_key}</api-key><name>n</name>"
        f"<cache-content>no</cache-content>{image_slide(media_server.base)}</request>"
    )
    for _ in range(2):
        response = await gateway.xml(body)
        assert fields(response.content)["status"] == "Success", response.text
    async with gateway.services.db.read() as conn:
        cached = await conn.scalar(sa.select(sa.func.count()).select_from(schema.media_cache))
    assert cached == 0
    assert media_server.hits["/images/1.jpg"] == 2
    assert media_server.revalidated == {}
