"""Every action's Success and Failure answers, byte for byte against tests/data/golden."""

from __future__ import annotations

import pytest

from tests.api.helpers import assert_golden, send_saved, text_template
from tests.conftest import Gateway

pytestmark = pytest.mark.anyio

TEXT = "<slide><message-text>hi</message-text></slide>"


def request(key: str, action: str, body: str = "") -> str:
    return f"<request><action>{action}</action><api-key>{key}</api-key>{body}</request>"


async def test_save_mms_failure_is_golden(gateway: Gateway) -> None:
    """A refused saveMMS answers status, error-code and error-info, with no to."""
    response = await gateway.xml(text_template(gateway.api_key).replace("<name>promo</name>", ""))
    assert_golden("save_mms_failure_e311.xml", response.content)


async def test_send_mms_list_failure_echoes_every_number(gateway: Gateway) -> None:
    """A send whose every number is refused echoes the whole to list in its Failure."""
    body = (
        "<to>12,0012345</to><from>28444</from><service-id>32113</service-id><name>n</name>"
        f"<fallback-sms-text>See it</fallback-sms-text>{TEXT}"
    )
    response = await gateway.xml(request(gateway.api_key, "sendMMS", body))
    assert_golden("send_mms_list_failure_e110.xml", response.content)


async def test_send_saved_mms_failure_is_golden(gateway: Gateway) -> None:
    """A sendSavedMMS of an unknown template answers E241 and echoes its to."""
    response = await gateway.xml(send_saved(gateway.api_key, "999"))
    assert_golden("send_saved_mms_failure_e241.xml", response.content)


async def test_delete_mms_id_failure_is_golden(gateway: Gateway) -> None:
    """A deleteMMSID of an unknown template answers E241 without a to."""
    response = await gateway.xml(request(gateway.api_key, "deleteMMSID", "<mms-id>999</mms-id>"))
    assert_golden("delete_mms_id_failure_e241.xml", response.content)


async def test_get_mms_templates_failure_is_golden(gateway: Gateway) -> None:
    """A getMMSTemplates with a bad page number answers E212."""
    body = "<page-number>0</page-number>"
    response = await gateway.xml(request(gateway.api_key, "getMMSTemplates", body))
    assert_golden("get_mms_templates_failure_e212.xml", response.content)


async def test_empty_template_page_is_golden(gateway: Gateway) -> None:
    """A getMMSTemplates that finds nothing answers its paging fields and the start-date given."""
    body = "<start-date>2030-01-02</start-date><items-per-page>5</items-per-page>"
    response = await gateway.xml(request(gateway.api_key, "getMMSTemplates", body))
    assert_golden("get_mms_templates_empty.xml", response.content)


async def test_unreadable_request_is_golden(gateway: Gateway) -> None:
    """A body that is not XML answers E108 before any action is known."""
    response = await gateway.xml(b"<request><action>saveMMS</action>")
    assert_golden("bad_xml_e108.xml", response.content)
