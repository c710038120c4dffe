"""The request rules on plain values, apart from any wire format."""

from __future__ import annotations

import pytest

from mmsgate import codes, errors, models
from mmsgate.api import requests, rules, sinch_xml

E = codes.ErrorCode


def code_of(check: object, *args: object) -> str:
    with pytest.raises(errors.ApiError) as refused:
        check(*args)  # type: ignore[operator]
    return refused.value.code.value


def test_each_rule_refuses_with_its_sinch_code() -> None:
    """Plain values break the rules with the same codes the XML API answers."""
    image = models.MediaRef(models.MediaKind.IMAGE, "http://x/a.jpg")
    video = models.MediaRef(models.MediaKind.VIDEO, "http://x/a.mp4")
    assert code_of(rules.name, "") == "E311"
    assert code_of(rules.slide_count, 9) == "E225"
    assert code_of(rules.slide, 1, [image, video], 0, None) == "E227"
    assert code_of(rules.duration, "61", 1) == "E230"
    assert code_of(rules.positive, "0", 1, E.BAD_PAGE_NUMBER, "page", 10) == "E212"
    assert code_of(rules.mms_id, str(rules.MAX_MMS_ID + 1), "id") == "E241"
    assert code_of(rules.flag, "maybe", "flag") == "E100"


def test_the_xml_reader_names_the_fields_as_sinch_spells_them() -> None:
    """The XML reader passes Sinch's field names into the rules' messages."""
    doc = sinch_xml.parse(
        b"<request><action>getMMSTemplates</action><page-number>x</page-number></request>", 32
    )
    with pytest.raises(errors.ApiError, match="Invalid page-number 'x'"):
        requests.get_mms_templates(doc)
