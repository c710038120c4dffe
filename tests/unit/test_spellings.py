"""Where wire spellings live: MM7 element names and status values only in mm7_codec."""

from __future__ import annotations

import pathlib
import re

import mmsgate

SRC = pathlib.Path(mmsgate.__file__).parent
# MM7 element names and MMStatus values as string literals or XML tags (TS 23.140 §8).
MM7_SPELLING = re.compile(
    r"[\"'<](Sender|Recipients?|MessageID|MMStatus|StatusText|StatusCode|UACapabilities"
    r"|TransactionID|MM7Version|Subject|Content|(?:DeliveryReport|Deliver|Submit|ReadReply)"
    r"(?:Req|Rsp)|RSErrorRsp|Retrieved|Forwarded|Expired|Rejected)[\"'>]"
)


def test_mm7_spellings_live_only_in_the_codec() -> None:
    """No module but mm7_codec.py writes an MM7 element name or status value."""
    found = [
        f"{path.relative_to(SRC)}:{n}"
        for path in sorted(SRC.rglob("*.py"))
        if path.name != "mm7_codec.py"
        for n, line in enumerate(path.read_text("utf-8").splitlines(), 1)
        if MM7_SPELLING.search(line)
    ]
    assert found == []
