"""The MIME writer and reader: what one writes the other reads back, part for part."""

from __future__ import annotations

import pytest

from mmsgate import mime


def test_a_related_body_reads_back_its_root_and_content() -> None:
    """A multipart/related of a root and a media part reads back as that root and that part."""
    root = mime.Attachment('text/xml; charset="utf-8"', "root", b"<x/>")
    image = mime.Attachment("image/jpeg", "img", b"\xff\xd8" * 100)
    content_type, body = mime.related(root, image, "b-1")
    assert content_type == 'multipart/related; boundary="b-1"; type="text/xml"; start="<root>"'
    assert mime.root_and_leaves(content_type, body) == (b"<x/>", (("image/jpeg", image.data),))


def test_a_mixed_content_is_flattened_into_its_leaves() -> None:
    """A multipart/mixed inside a related body comes out as its leaf parts, in order."""
    inner_type, inner = mime.mixed([("text/plain", b"hi"), ("image/png", b"\x89PNG")], "in")
    root = mime.Attachment("text/xml", "root", b"<x/>")
    content_type, body = mime.related(root, mime.Attachment(inner_type, "c", inner), "out")
    assert mime.root_and_leaves(content_type, body)[1] == (
        ("text/plain", b"hi"),
        ("image/png", b"\x89PNG"),
    )


def test_an_unreadable_body_is_a_mime_error() -> None:
    """A multipart body with no parts at all is refused with MimeError."""
    with pytest.raises(mime.MimeError):
        mime.root_and_leaves("multipart/related; boundary=b1", b"nothing here")
