"""Request builders and response readers for the API tests."""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path

GOLDEN = Path(__file__).parent.parent / "data" / "golden"


def fields(body: bytes | str) -> dict[str, str]:
    """The top-level children of a `<response>`, by name (first of each)."""
    root = ET.fromstring(body)
    assert root.tag == "response"
    result: dict[str, str] = {}
    for child in root:
        result.setdefault(child.tag, child.text or "")
    return result


def sendings(body: bytes | str) -> list[dict[str, str]]:
    root = ET.fromstring(body)
    return [{c.tag: c.text or "" for c in s} for s in root.findall("sending")]


def assert_golden(name: str, body: bytes, *dynamic: str) -> None:
    """Compare a response byte for byte with tests/data/golden/NAME, after blanking the
    values of the `dynamic` elements (ids that change on every run)."""
    text = body.decode("utf-8")
    for element in dynamic:
        text = re.sub(
            rf"<{element}>[^<]*</{element}>", f"<{element}>{{{element}}}</{element}>", text
        )
    path = GOLDEN / name
    if os.environ.get("MMSGATE_UPDATE_GOLDEN") == "1":
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8")


def failure_code(body: bytes) -> str:
    got = fields(body)
    assert got["status"] == "Failure", body.decode()
    return got["error-code"]


def text_template(key: str, *, name: str = "promo", slides: int = 1, extra: str = "") -> str:
    slide_xml = "".join(
        f"<slide><message-text>Hello {{$firstname|friend}}, slide {n}</message-text></slide>"
        for n in range(1, slides + 1)
    )
    return (
        f"<request><action>saveMMS</action><api-key>{key}</api-key><name>{name}</name>"
        f"<message-subject>Subject</message-subject>{slide_xml}{extra}</request>"
    )


def send_saved(key: str, mms_id: str, to: str = "17745550100", extra: str = "") -> str:
    return (
        f"<request><action>sendSavedMMS</action><api-key>{key}</api-key><mms-id>{mms_id}</mms-id>"
        f"<to>{to}</to><from>28444</from><service-id>32113</service-id>"
        f"<fallback-sms-text>See your MMS</fallback-sms-text>{extra}</request>"
    )
