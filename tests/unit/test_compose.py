"""SMIL and multipart/related composition: golden SMIL, parts read back by an independent parser."""

from __future__ import annotations

import email.parser
import email.policy
import re
import xml.etree.ElementTree as ET

from mmsgate.media import compose
from mmsgate.models import MediaKind
from tests.api.helpers import GOLDEN

IMG = compose.Part(MediaKind.IMAGE, "image/jpeg", b"\xff\xd8jpeg-bytes\xff\xd9", 320, 240)
TXT1 = compose.Part(MediaKind.TEXT, "text/plain", "Grüße 🎉".encode())
VID = compose.Part(MediaKind.VIDEO, "video/mp4", b"\x00\x00\x00\x18ftypmp42video")
TXT2 = compose.Part(MediaKind.TEXT, "text/plain", b"second")
AUD = compose.Part(MediaKind.AUDIO, "audio/mp4", b"m4a-audio")
IMG2 = compose.Part(MediaKind.IMAGE, "image/gif", b"GIF89a....")
CARD = compose.Part(MediaKind.VCARD, "text/vcard", b"BEGIN:VCARD\r\nEND:VCARD\r\n")
SLIDES = [
    compose.Slide((IMG, TXT1), 5000),
    compose.Slide((VID, TXT2), 12000),
    compose.Slide((AUD, IMG2), 8000),
    compose.Slide((CARD,), 5000),
]


def parse(composed: compose.Composed) -> email.message.EmailMessage:
    header = f"Content-Type: {composed.content_type}\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.default).parsebytes(
        header + composed.body
    )
    assert isinstance(message, email.message.EmailMessage)
    return message


def test_smil_is_golden() -> None:
    """The SMIL of a four-slide message is written byte for byte as the golden file."""
    composed = compose.compose(SLIDES, boundary="b")
    assert composed.smil == (GOLDEN / "compose_four_slides.smil").read_bytes()


def test_smil_follows_the_mms_subset() -> None:
    """Only regions Image and Text, one par per slide with dur, no nested par or seq."""
    root = ET.fromstring(compose.compose(SLIDES).smil)
    assert [r.get("id") for r in root.iter("region")] == ["Image", "Text"]
    pars = root.find("body").findall("par")  # type: ignore[union-attr]
    assert [p.get("dur") for p in pars] == ["5000ms", "12000ms", "8000ms", "5000ms"]
    assert all(p.find("par") is None and p.find("seq") is None for p in pars)
    assert [c.tag for c in pars[3]] == ["ref"]
    assert pars[2].find("audio").get("region") is None  # type: ignore[union-attr]


def test_every_cid_resolves_and_payloads_survive() -> None:
    """SMIL first; every cid: names exactly one part; decoded payloads equal the inputs."""
    composed = compose.compose(SLIDES)
    parts = list(parse(composed).iter_parts())
    assert parts[0].get_content_type() == "application/smil"
    assert parts[0]["Content-ID"] == "<smil>"
    by_id = {p["Content-ID"].strip("<>"): p for p in parts}
    assert len(by_id) == len(parts)
    cids = re.findall(rb'src="cid:([^"]+)"', composed.smil)
    assert sorted(c.decode() for c in cids) == sorted(k for k in by_id if k != "smil")
    payloads = [p.get_payload(decode=True) for p in parts[1:]]
    assert payloads == [p.data for s in SLIDES for p in s.parts]
    text = by_id["txt1"]
    assert text.get_content_type() == "text/plain"
    assert text.get_content_charset() == "utf-8"
    assert text["Content-Location"] == "txt1.txt"
    assert by_id["img1"]["Content-Location"] == "img1.jpg"


def test_lines_end_with_crlf_and_sizes_add_up() -> None:
    """No bare LF in the body; size is the decoded payload plus SMIL; the estimate bounds it."""
    composed = compose.compose(SLIDES)
    assert b"\n" not in composed.body.replace(b"\r\n", b"")
    assert composed.size == len(composed.smil) + sum(len(p.data) for s in SLIDES for p in s.parts)
    assert composed.wire_size == len(composed.body)
    headers = composed.wire_size - sum(len(p.data) * 4 // 3 + 8 for s in SLIDES for p in s.parts)
    assert compose.overhead_estimate(SLIDES) >= headers


def test_boundary_never_collides_with_data() -> None:
    """A random boundary is chosen that no part contains."""
    tricky = compose.Part(MediaKind.TEXT, "text/plain", b"--mms-" + b"0" * 24)
    composed = compose.compose([compose.Slide((tricky,), 1000)])
    boundary = composed.content_type.split('boundary="')[1].rstrip('"')
    assert boundary.encode() not in tricky.data
    assert [p.get_payload(decode=True) for p in parse(composed).iter_parts()][1] == tricky.data


def test_parts_carry_only_the_headers_they_need() -> None:
    """Binary parts say base64; a UTF-8 text over ASCII says 8bit; the SMIL and an ASCII
    text, 7bit as they are, carry no encoding header at all (7bit is what none means)."""
    composed = compose.compose(SLIDES)
    by_id = {p["Content-ID"].strip("<>"): p for p in parse(composed).iter_parts()}
    encodings = {cid: part.get("Content-Transfer-Encoding") for cid, part in by_id.items()}
    assert encodings == {
        "smil": None,
        "img1": "base64",
        "txt1": "8bit",
        "vid1": "base64",
        "txt2": None,
        "aud1": "base64",
        "img2": "base64",
        "card1": "base64",
    }
    for part in by_id.values():
        names = {"Content-Type", "Content-ID", "Content-Location", "Content-Transfer-Encoding"}
        assert set(part.keys()) <= names
