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


def test_displayonly_numbers_are_checked_like_to_numbers() -> None:
    """to-displayonly gives international digits, drops repeats, refuses a bad number (E110)."""
    assert rules.displayonly(None, "to-displayonly") == ()
    assert rules.displayonly("", "to-displayonly") == ()
    assert rules.displayonly("+447900000001, 447900000002,447900000001", "f") == (
        "447900000001",
        "447900000002",
    )
    assert code_of(rules.displayonly, "447900000001,12", "to-displayonly") == "E110"
    assert code_of(rules.displayonly, "10005550100", "to-displayonly") == "E110"
    with pytest.raises(errors.ApiError, match="Invalid 'to-displayonly' number 'abc'"):
        rules.displayonly("abc", "to-displayonly")


def test_displayonly_holds_at_most_the_list_limit() -> None:
    """More than MAX_DISPLAYONLY display-only numbers is E623; exactly that many passes."""
    many = [f"4479000{n:05d}" for n in range(rules.MAX_DISPLAYONLY + 1)]
    assert len(rules.displayonly(",".join(many[:-1]), "f")) == rules.MAX_DISPLAYONLY
    assert code_of(rules.displayonly, ",".join(many), "to-displayonly") == "E623"


@pytest.mark.parametrize("mask", ["Acme", "ACME_Shop-1", "a", "1a", "12345678-90", "_"])
def test_a_sender_mask_of_up_to_11_allowed_characters_passes(mask: str) -> None:
    """A mask of 1 to 11 of a-z A-Z 0-9 _ - that is not only digits is taken as given."""
    assert rules.sender_mask(mask, "from-mask") == mask


@pytest.mark.parametrize(
    "mask", ["Acme Shop", "ACME_Shop-12", "12345", "Ācme", "acme!", "a.b", "١٢٣a", "x\n"]
)
def test_a_bad_sender_mask_is_e115(mask: str) -> None:
    """Spaces, other characters, more than 11, or only digits: E115 naming the field."""
    assert code_of(rules.sender_mask, mask, "from-mask") == "E115"
    with pytest.raises(errors.ApiError, match="Invalid from-mask"):
        rules.sender_mask(mask, "from-mask")


def test_an_absent_sender_mask_is_none() -> None:
    """No or an empty from-mask means the sender is the `from` number."""
    assert rules.sender_mask(None, "from-mask") is None
    assert rules.sender_mask("", "from-mask") is None
