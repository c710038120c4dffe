"""saveMMS's client-reference: read from the XML request, kept with the template, echoed in
its N003 or E002/E003/E004 postback in the account's format; one too long is refused."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from mmsgate.store import accounts
from mmsgate.store.schema import templates
from tests.api.helpers import failure_code, fields, text_template
from tests.api.test_errors import snapshot
from tests.conftest import Gateway
from tests.pipeline.encoding import insert_encoding_template, run_encoder
from tests.pipeline.test_postbacks import Receiver, receiver

pytestmark = pytest.mark.anyio
__all__ = ["receiver"]  # the fixture, for these tests


@pytest.mark.parametrize("form", ["xml", "json"])
async def test_n003_echoes_the_saves_client_reference(
    gateway: Gateway, receiver: Receiver, form: str
) -> None:
    """A saveMMS with a client-reference gets N003 naming it, in XML or in JSON as the
    account's format says."""
    db = gateway.services.db
    await accounts.update(db, "acme", postback_url=receiver.url, postback_format=form)
    extra = "<client-reference>tpl-7 &amp; co</client-reference>"
    answer = await gateway.xml(text_template(gateway.api_key, extra=extra))
    mms_id = fields(answer.content)["mms-id"]
    await run_encoder(gateway)
    [(headers, body)] = receiver.received
    if form == "json":
        assert headers["content-type"] == "application/json"
        assert json.loads(body) == {
            "origin": "MMS_MT",
            "code": "N003",
            "mms-id": mms_id,
            "client-reference": "tpl-7 & co",
        }
    else:
        assert headers["content-type"] == "application/xml"
        assert b"<client-reference>tpl-7 &amp; co</client-reference>" in body


async def test_an_encoding_failure_echoes_the_client_reference(
    gateway: Gateway, receiver: Receiver
) -> None:
    """E002 for a template saved with a client-reference names the URL and the reference."""
    db = gateway.services.db
    await accounts.update(db, "acme", postback_url=receiver.url, postback_format="json")
    key = await gateway.services.blobs.put(b"ID3" + b"\x00" * 4000)
    url = "http://media.example/broken.mp3"
    part = {"kind": "audio", "url": url, "blob_key": key, "content_type": "audio/mpeg"}
    template_id = await insert_encoding_template(
        gateway, [{"text": None, "duration": None, "parts": [{**part, "size": 4003}]}]
    )
    async with db.write() as conn:
        await conn.execute(
            templates.update().where(templates.c.id == template_id).values(client_reference="tpl-8")
        )
    await run_encoder(gateway)
    [(_headers, body)] = receiver.received
    assert json.loads(body) == {
        "origin": "MMS_MT",
        "code": "E002",
        "mms-id": str(template_id),
        "client-reference": "tpl-8",
        "audio-name": url,
    }


async def test_a_save_without_a_reference_keeps_none(gateway: Gateway) -> None:
    """A saveMMS without client-reference stores the template with none."""
    answer = await gateway.xml(text_template(gateway.api_key))
    mms_id = int(fields(answer.content)["mms-id"])
    async with gateway.services.db.read() as conn:
        query = sa.select(templates.c.client_reference).where(templates.c.id == mms_id)
        assert await conn.scalar(query) is None


async def test_a_client_reference_over_64_characters_is_refused(gateway: Gateway) -> None:
    """A saveMMS with a client-reference of 65 characters gets E100 and stores nothing."""
    before = await snapshot(gateway)
    extra = f"<client-reference>{'x' * 65}</client-reference>"
    answer = await gateway.xml(text_template(gateway.api_key, extra=extra))
    assert failure_code(answer.content) == "E100"
    assert "client-reference" in fields(answer.content)["error-info"]
    assert await snapshot(gateway) == before
