"""saveMMS, sendSavedMMS, deleteMMSID and getMMSTemplates against both databases."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
import sqlalchemy as sa

from mmsgate.store import schema
from tests.api.helpers import (
    assert_golden,
    failure_code,
    fields,
    send_saved,
    sendings,
    text_template,
)
from tests.conftest import Gateway

pytestmark = pytest.mark.anyio


async def save(gw: Gateway, **kwargs: object) -> str:
    response = await gw.xml(text_template(gw.api_key, **kwargs))  # type: ignore[arg-type]
    got = fields(response.content)
    assert got["status"] == "Success", response.text
    return got["mms-id"]


async def count(gw: Gateway, table: sa.Table) -> int:
    async with gw.services.db.read() as conn:
        return int(await conn.scalar(sa.select(sa.func.count()).select_from(table)))


async def test_save_mms_answers_success_and_mms_id(gateway: Gateway) -> None:
    """A text-only saveMMS answers Success with an integer mms-id, in the golden shape."""
    response = await gateway.xml(text_template(gateway.api_key))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/xml")
    assert_golden("save_mms_success.xml", response.content, "mms-id")
    assert fields(response.content)["mms-id"].isdigit()


async def test_send_saved_mms_is_stored_with_recipient_and_job(gateway: Gateway) -> None:
    """sendSavedMMS answers the Sinch success shape with `from`, after storing its rows."""
    mms_id = await save(gateway)
    response = await gateway.xml(send_saved(gateway.api_key, mms_id))
    assert_golden("send_saved_mms_success.xml", response.content, "mms-id", "tracking-id")
    got = fields(response.content)
    assert got["mms-id"] == mms_id
    assert await count(gateway, schema.recipients) == 1
    async with gateway.services.db.read() as conn:
        job = (
            await conn.execute(sa.select(schema.jobs).where(schema.jobs.c.kind == "deliver"))
        ).one()
    assert job.tracking_id == got["tracking-id"]
    assert job.state == "pending"


async def test_send_saved_mms_keeps_merge_data_and_custom_text(gateway: Gateway) -> None:
    """custom-text, custom-subject and data merge tags are kept on the message for delivery."""
    mms_id = await save(gateway, slides=2)
    extra = (
        "<custom-subject>Just for you</custom-subject>"
        "<custom-text><value>Replaced text</value><slide>2</slide></custom-text>"
        "<data><FirstName>Ann</FirstName></data>"
    )
    response = await gateway.xml(send_saved(gateway.api_key, mms_id, extra=extra))
    assert fields(response.content)["status"] == "Success"
    async with gateway.services.db.read() as conn:
        message = (await conn.execute(sa.select(schema.messages))).one()
    assert message.subject == "Just for you"
    assert message.custom_texts == {"2": "Replaced text"}
    assert message.merge_data == {"firstname": "Ann"}


async def test_recipient_list_gives_one_sending_per_number(gateway: Gateway) -> None:
    """A comma list of numbers answers one <sending> each; bad numbers fail alone."""
    mms_id = await save(gateway)
    response = await gateway.xml(
        send_saved(gateway.api_key, mms_id, to="17745550100,12,17745550101")
    )
    assert_golden("send_list_success.xml", response.content, "mms-id", "tracking-id")
    blocks = sendings(response.content)
    assert [b["to"] for b in blocks] == ["17745550100", "12", "17745550101"]
    assert blocks[1]["error-code"] == "E110"
    assert "tracking-id" in blocks[0]
    assert "tracking-id" in blocks[2]
    assert await count(gateway, schema.recipients) == 2


async def test_repeated_to_elements_are_a_list(gateway: Gateway) -> None:
    """Several <to> elements are read as a recipient list."""
    mms_id = await save(gateway)
    body = send_saved(gateway.api_key, mms_id).replace(
        "<to>17745550100</to>", "<to>17745550100</to><to>17745550102</to>"
    )
    response = await gateway.xml(body)
    assert len(sendings(response.content)) == 2


async def test_delete_then_send_is_e241(gateway: Gateway) -> None:
    """A deleted template can no longer be sent, and deleting it twice is E241."""
    mms_id = await save(gateway)
    key = gateway.api_key
    delete = f"<request><action>deleteMMSID</action><api-key>{key}</api-key><mms-id>{mms_id}</mms-id></request>"
    response = await gateway.xml(delete)
    assert_golden("delete_mms_id_success.xml", response.content, "mms-id")
    assert failure_code((await gateway.xml(send_saved(key, mms_id))).content) == "E241"
    assert failure_code((await gateway.xml(delete)).content) == "E241"


async def test_get_mms_templates_lists_newest_first_by_page(gateway: Gateway) -> None:
    """getMMSTemplates pages through saved templates, newest first, without deleted ones."""
    ids = [await save(gateway, name=f"t{n}", slides=n) for n in (1, 2, 3)]
    key = gateway.api_key
    await gateway.xml(
        f"<request><action>deleteMMSID</action><api-key>{key}</api-key><mms-id>{ids[0]}</mms-id></request>"
    )
    response = await gateway.xml(
        f"<request><action>getMMSTemplates</action><api-key>{key}</api-key>"
        "<page-number>1</page-number><items-per-page>1</items-per-page></request>"
    )
    assert_golden("get_mms_templates.xml", response.content, "mms-id", "date-created", "mms-size")
    got = fields(response.content)
    assert got["total-results"] == "2"
    listed = ET.fromstring(response.content).findall("mms-template/mms-id")
    assert [e.text for e in listed] == [ids[2]]
    page2 = await gateway.xml(
        f"<request><action>getMMSTemplates</action><api-key>{key}</api-key>"
        "<page-number>2</page-number><items-per-page>1</items-per-page></request>"
    )
    assert [e.text for e in ET.fromstring(page2.content).findall("mms-template/mms-id")] == [ids[1]]


async def test_legacy_uppercase_tags_are_understood(gateway: Gateway) -> None:
    """Skycore 1.3 upper-case tags (<REQUEST>, <ACTION>, <MMSID>, <TEXT>) work the same."""
    body = (
        f"<REQUEST><ACTION> saveMMS </ACTION><API_KEY>{gateway.api_key}</API_KEY><NAME>old</NAME>"
        "<SUBJECT>Hi</SUBJECT><SLIDE><TEXT>Hello</TEXT><DURATION>5</DURATION></SLIDE></REQUEST>"
    )
    mms_id = fields((await gateway.xml(body)).content)["mms-id"]
    send = (
        f"<REQUEST><ACTION>sendSavedMMS</ACTION><API_KEY>{gateway.api_key}</API_KEY>"
        f"<MMSID>{mms_id}</MMSID><TO>17745550100</TO><FROM>28444</FROM><SERVICEID>32113</SERVICEID>"
        "<FALLBACKSMSTEXT>See it</FALLBACKSMSTEXT><OPERATORID>31004</OPERATORID></REQUEST>"
    )
    assert fields((await gateway.xml(send)).content)["status"] == "Success"


async def test_legacy_content_sequence_layout_is_understood(gateway: Gateway) -> None:
    """The 2013 <CONTENT><SEQUENCE><SLIDE duration="5"> layout saves as ordinary slides."""
    body = (
        f"<REQUEST><ACTION>saveMMS</ACTION><API_KEY>{gateway.api_key}</API_KEY><CONTENT>"
        '<NAME>legacy</NAME><SEQUENCE><SLIDE duration="5"><TEXT>one</TEXT></SLIDE>'
        '<SLIDE duration="7"><TEXT>two</TEXT></SLIDE></SEQUENCE></CONTENT></REQUEST>'
    )
    assert fields((await gateway.xml(body)).content)["status"] == "Success"
    async with gateway.services.db.read() as conn:
        template = (await conn.execute(sa.select(schema.templates))).one()
    assert [s["duration"] for s in template.slides] == [5, 7]
    assert [s["text"] for s in template.slides] == ["one", "two"]


async def test_xml_form_field_is_accepted(gateway: Gateway) -> None:
    """The legacy form variable `xml` works urlencoded and as multipart/form-data."""
    doc = text_template(gateway.api_key)
    form = await gateway.client.post("/ep/v1/", data={"xml": doc})
    assert fields(form.content)["status"] == "Success"
    multipart = await gateway.client.post("/ep/v1/", files={"xml": (None, doc)})
    assert fields(multipart.content)["status"] == "Success"


async def test_raw_xml_labelled_as_a_form_is_read_as_xml(gateway: Gateway) -> None:
    """A raw XML body sent with a form Content-Type (curl --data-binary does this) works."""
    response = await gateway.xml(
        text_template(gateway.api_key),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert fields(response.content)["status"] == "Success"


async def test_another_accounts_template_is_e241(gateway: Gateway) -> None:
    """One account can neither send nor delete another account's template."""
    from mmsgate.store import accounts

    # A sender belongs to one account only: the other account sends from a number of its own.
    other = await accounts.create(gateway.services.db, "other", senders=["28445"])
    assert other is not None
    mms_id = await save(gateway)
    send = send_saved(other.api_key, mms_id).replace("<service-id>32113</service-id>", "")
    send = send.replace("<from>28444</from>", "<from>28445</from>")
    assert failure_code((await gateway.xml(send)).content) == "E241"
    delete = f"<request><action>deleteMMSID</action><api-key>{other.api_key}</api-key><mms-id>{mms_id}</mms-id></request>"
    assert failure_code((await gateway.xml(delete)).content) == "E241"
