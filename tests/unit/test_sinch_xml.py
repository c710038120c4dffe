"""The XML codec: name normalisation, hardened parsing, rendering."""

from __future__ import annotations

import pytest

from mmsgate import errors
from mmsgate.api import requests, sinch_xml


def test_aliases_map_to_current_names() -> None:
    """Older and upper-case spellings become the current Sinch element names."""
    doc = sinch_xml.parse(
        b"<REQUEST><API_KEY>k</API_KEY><OPERATORID>31004</OPERATORID><SUBJECT>s</SUBJECT>"
        b"<MMSID>7</MMSID><CUSTOMTEXT><VALUE>v</VALUE><SLIDE>1</SLIDE></CUSTOMTEXT></REQUEST>",
        32,
    )
    assert [c.name for c in doc.children] == [
        "api-key",
        "operator-id",
        "message-subject",
        "mms-id",
        "custom-text",
    ]


def test_slides_keep_their_order() -> None:
    """Slides are read in document order whatever the order of other elements."""
    doc = sinch_xml.parse(
        b"<request><slide><text>1</text></slide><name>n</name><slide><text>2</text></slide></request>",
        32,
    )
    assert [s.text for s in requests.slides(doc)] == ["1", "2"]


def test_rendering_escapes_text() -> None:
    """Values are XML-escaped in responses."""
    body = sinch_xml.render([("status", "Failure"), ("error-info", "a < b & c")])
    assert b"<error-info>a &lt; b &amp; c</error-info>" in body


def test_depth_limit() -> None:
    """A document nested past the limit is E108."""
    with pytest.raises(errors.ApiError) as info:
        sinch_xml.parse(b"<request>" + b"<a>" * 40 + b"</a>" * 40 + b"</request>", 32)
    assert info.value.code.value == "E108"


def test_timestamps() -> None:
    """Dates and date-times in ISO 8601 read as aware UTC; anything else is None."""
    assert (
        requests.parse_timestamp("2026-03-31T11:30:00+02:00").isoformat()
        == "2026-03-31T09:30:00+00:00"
    )  # type: ignore[union-attr]
    assert requests.parse_timestamp("2026-03-31").isoformat() == "2026-03-31T00:00:00+00:00"  # type: ignore[union-attr]
    assert requests.parse_timestamp("yesterday") is None
