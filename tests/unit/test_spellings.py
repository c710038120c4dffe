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
# Sinch's JSON postback status words (API reference §8.3) share two MM7 statuses' spelling:
# the JSON postback codec may write those two words, and no other MM7 spelling.
SINCH_STATUS_WORDS = {"postback_json.py": re.compile(r"[\"'](Expired|Rejected)[\"']")}
NOTHING = re.compile(r"(?!)")


def test_mm7_spellings_live_only_in_the_codec() -> None:
    """No module but mm7_codec.py writes an MM7 element name or status value."""
    found = [
        f"{path.relative_to(SRC)}:{n}"
        for path in sorted(SRC.rglob("*.py"))
        if path.name != "mm7_codec.py"
        for n, line in enumerate(path.read_text("utf-8").splitlines(), 1)
        if MM7_SPELLING.search(SINCH_STATUS_WORDS.get(path.name, NOTHING).sub("", line))
    ]
    assert found == []


# Sinch element names as string literals (the XML API's answers and requests).
SINCH_SPELLING = re.compile(
    r"[\"'](mms-id|tracking-id|status-details|error-code|error-info|api-key|sending"
    r"|mms-template|total-results|page-number|items-per-page|start-date|fallback-sms-text)[\"']"
)
# Where Sinch names may be written: the XML codec, the request reader, the postback writer,
# the /v1 JSON answers, the account command's output label, and errors.py's docstring (it
# draws each answer's shape).
SINCH_CODECS = {
    "errors.py",
    "api/sinch_xml.py",
    "api/requests.py",
    "postback_xml.py",
    "postback_json.py",
    "api/json_errors.py",
    "api/status.py",
    "api/reports.py",
    "cli_accounts.py",
}


def test_sinch_spellings_live_only_in_the_codecs() -> None:
    """Actions, the app, the store and the pipeline name no Sinch element: results are values."""
    found = [
        f"{path.relative_to(SRC)}:{n}"
        for path in sorted(SRC.rglob("*.py"))
        if str(path.relative_to(SRC)) not in SINCH_CODECS
        for n, line in enumerate(path.read_text("utf-8").splitlines(), 1)
        if SINCH_SPELLING.search(line)
    ]
    assert found == []
