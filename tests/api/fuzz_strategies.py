"""Hypothesis strategies for the fuzz test: valid requests of each route with hostile values
put in their fields, elements dropped, doubled or renamed, documents in declared encodings,
and damaged bytes, so that most inputs pass the parser and reach the code behind it."""

from __future__ import annotations

import datetime as dt
import urllib.parse
from typing import Any
from xml.sax.saxutils import escape

from hypothesis import strategies as st

from mmsgate import mm7_codec as mm7

Tree = list[tuple[str, Any]]  # (element name, text or a Tree of children)
Strategy = st.SearchStrategy
EDGE_DATES = [
    "0001-01-01T00:00:00+01:00",
    "0001-01-01",
    "9999-12-31",
    "9999-12-31T23:59:59-05:00",
    "9999-12-31T23:59:59.999999+00:00",
    "2026-02-30",
    "2026-13-01T00:00:00Z",
    "2026-01-01T24:00:00",
    "1970-01-01T00:00:00Z",
    "٢٠٢٦-٠١-٠١",
]
ENCODINGS = [
    "Shift_JIS",
    "EUC-JP",
    "GBK",
    "Big5",
    "utf-16-le",
    "utf-16",
    "utf-32",
    "cp1252",
    "iso-8859-1",
    "us-ascii",
    "koi8-r",
]
WORDS = ["", " ", "yes", "no", "true", "0", "-1", "+1", "1e9", "0x10", "NaN", "∞", "1.5", "1_000"]

unicode_digits = st.text(st.characters(categories=("Nd", "No", "Nl")), min_size=1, max_size=6)
huge_numbers = st.integers(min_value=10, max_value=6000).map(lambda n: "9" * n)
some_numbers = st.integers(min_value=-(10**20), max_value=10**20).map(str)
offsets = st.integers(min_value=-1439, max_value=1439).map(
    lambda m: dt.timezone(dt.timedelta(minutes=m))
)
dates = st.builds(
    lambda when, zone: when.replace(tzinfo=zone).isoformat(),
    st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 31, 23, 59)),
    offsets,
)
plain_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cc", "Cs")), max_size=40)
hostile: Strategy[str] = st.one_of(
    unicode_digits,
    huge_numbers,
    some_numbers,
    st.sampled_from(EDGE_DATES + WORDS),
    dates,
    plain_text,
    st.text(max_size=12),  # anything, control characters and lone surrogates included
)
# For values that pass through UTF-8 before mmsgate sees them (URLs, HTTP bodies we encode).
hostile_utf8 = hostile.map(lambda s: s.encode("utf-8", "replace").decode("utf-8"))


HOWS = ("hostile", "hostile", "hostile", "drop", "double", "rename")


@st.composite
def mutated(draw: st.DrawFn, tree: Tree) -> Tree:
    """`tree` with up to three of its elements given a hostile value, dropped, doubled or
    renamed, and the same done within the others' children."""
    changes = draw(
        st.dictionaries(st.integers(0, len(tree) - 1), st.sampled_from(HOWS), max_size=3)
    )
    out: Tree = []
    for n, (name, value) in enumerate(tree):
        how = changes.get(n)
        if how is None:
            out.append((name, draw(mutated(value)) if isinstance(value, list) else value))
        elif how == "hostile":
            out.append((name, draw(hostile)))
        elif how == "double":
            out += [(name, value), (name, draw(hostile))]
        elif how == "rename":  # the Skycore and underscore spellings the parser also takes
            out.append((draw(st.sampled_from((name.upper(), name.replace("-", "_")))), value))
    return out


def render(tree: Tree) -> str:
    parts = []
    for name, value in tree:
        inner = render(value) if isinstance(value, list) else escape(value)
        parts.append(f"<{name}>{inner}</{name}>")
    return "".join(parts)


@st.composite
def encoded(draw: st.DrawFn, document: str) -> bytes:
    """The document as bytes: UTF-8, or in an encoding its declaration names (sometimes a
    wrong or unknown one), now and then with some bytes damaged."""
    how = draw(st.sampled_from(("plain",) * 5 + ("declared", "declared", "wrong", "bogus")))
    if how == "plain":
        data = document.encode("utf-8", "surrogatepass")
    else:
        name = "bogus" if how == "bogus" else draw(st.sampled_from(ENCODINGS))
        head = f'<?xml version="1.0" encoding="{name}"?>'
        codec = name if how == "declared" else "utf-8"
        data = (head + document).encode(codec, "xmlcharrefreplace")
    if draw(st.integers(min_value=0, max_value=9)) == 0:
        data = draw(damaged(data))
    return data


@st.composite
def damaged(draw: st.DrawFn, data: bytes) -> bytes:
    """`data` with one to three byte ranges cut out or replaced by random bytes."""
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        start = draw(st.integers(min_value=0, max_value=len(data)))
        end = draw(st.integers(min_value=start, max_value=min(len(data), start + 8)))
        data = data[:start] + draw(st.binary(max_size=6)) + data[end:]
    return data


def sinch_bases(key: str, image_url: str, now: dt.datetime) -> dict[str, Tree]:
    """A valid request of every action (sendSavedMMS names template 1, saved beforehand)."""
    soon, later = (
        (now + dt.timedelta(days=1)).isoformat(),
        (now + dt.timedelta(days=30)).isoformat(),
    )
    head: Tree = [("api-key", key)]
    to: Tree = [("to", "17745550100"), ("from", "28444"), ("service-id", "32113")]
    slides: Tree = [
        ("slide", [("duration", "5"), ("message-text", "Hello")]),
        ("slide", [("image", [("url", image_url)]), ("duration", "3s")]),
    ]
    content: Tree = [("name", "promo"), ("message-subject", "Subject"), *slides]
    fallback: Tree = [
        ("fallback-sms-text", "See it"),
        ("disable-fallback-sms", "no"),
        ("fallback-sms-link-expiration", later),
    ]
    return {
        "sendMMS": [
            ("action", "sendMMS"), *head, *to, ("operator-id", "31062"), *content, *fallback,
            ("mms-expiry-timestamp", soon), ("client-reference", "ref-1"), ("campaign-ref", "c"),
        ],
        "saveMMS": [("action", "saveMMS"), *head, *content, *fallback],
        "sendSavedMMS": [
            ("action", "sendSavedMMS"), *head, ("mms-id", "1"), *to, ("operator-id", "31062"),
            ("fallback-sms-text", "See it"), ("custom-subject", "Hi"),
            ("custom-text", [("value", "Hi {$name}"), ("slide", "1")]),
            ("mms-expiry-timestamp", soon), ("data", [("name", "Ann")]),
        ],
        "deleteMMSID": [("action", "deleteMMSID"), *head, ("mms-id", "2")],
        "getMMSTemplates": [
            ("action", "getMMSTemplates"), *head, ("start-date", "2026-01-01T00:00:00Z"),
            ("page-number", "1"), ("items-per-page", "10"),
        ],
    }  # fmt: skip


@st.composite
def sinch_body(draw: st.DrawFn, bases: dict[str, Tree]) -> bytes:
    """A request document of some action, mutated and encoded (or, rarely, random bytes)."""
    if draw(st.integers(min_value=0, max_value=40)) == 0:
        return draw(st.binary(max_size=200))
    tree = draw(mutated(bases[draw(st.sampled_from(sorted(bases)))]))
    return draw(encoded(f"<request>{render(tree)}</request>"))


@st.composite
def sinch_post(draw: st.DrawFn, bases: dict[str, Tree]) -> tuple[bytes, dict[str, str]]:
    """The body and headers of a POST /ep/v1/: raw XML mostly, now and then the legacy form."""
    body = draw(sinch_body(bases))
    how = draw(st.sampled_from(("raw",) * 8 + ("form", "typed")))
    if how == "form":
        form = urllib.parse.urlencode({"xml": body}).encode()
        return form, {"content-type": "application/x-www-form-urlencoded"}
    if how == "typed":
        return body, {"content-type": draw(st.sampled_from(("text/xml", "multipart/form-data")))}
    return body, {}


def mm7_bases(message_id: str) -> dict[str, Tree]:
    """The children of a valid DeliveryReportReq (for a message the MMSC took under
    `message_id`) and of a ReadReplyReq."""
    people: Tree = [
        ("Recipient", [("Number", "17745550100")]),
        ("Sender", [("ShortCode", "28444")]),
    ]
    return {
        "DeliveryReportReq": [
            ("MM7Version", "6.8.0"), ("MessageID", message_id), *people,
            ("Date", "2026-12-01T10:00:00Z"),
            ("MMStatus", "Retrieved"), ("StatusText", "ok"),
        ],
        "ReadReplyReq": [
            ("MM7Version", "6.8.0"), ("MessageID", message_id), *people,
            ("TimeStamp", "2026-12-01T10:00:00Z"), ("MMStatus", "Read"),
        ],
    }  # fmt: skip


@st.composite
def mm7_post(draw: st.DrawFn, bases: dict[str, Tree]) -> tuple[bytes, str]:
    """(body, Content-Type) of a POST /mm7: a report or read reply in SOAP, or an MO
    DeliverReq with attachments, with hostile values, encodings and damage."""
    if draw(st.booleans()):
        kind = draw(st.sampled_from(sorted(bases)))
        tree = draw(mutated(bases[kind]))
        ns = mm7.DEFAULT_NAMESPACE
        envelope = (
            f'<env:Envelope xmlns:env="{mm7.SOAP_NS}"><env:Header>'
            f'<mm7:TransactionID xmlns:mm7="{ns}">{escape(draw(plain_text))}</mm7:TransactionID>'
            f'</env:Header><env:Body><{kind} xmlns="{ns}">{render(tree)}</{kind}>'
            "</env:Body></env:Envelope>"
        )
        return draw(encoded(envelope)), draw(st.sampled_from(("text/xml", "application/soap+xml")))
    value = st.one_of(st.just("28444"), st.just("17745550100"), hostile_utf8)
    content_type, body = mm7.encode_deliver(
        draw(plain_text),
        draw(value),
        draw(value),
        [
            (
                draw(st.sampled_from(("text/plain", "image/jpeg", "x/" + "y" * 30))),
                draw(st.binary(max_size=64)),
            )
        ],
        subject=draw(st.one_of(st.none(), hostile_utf8)),
    )
    if draw(st.integers(min_value=0, max_value=4)) == 0:
        body = draw(damaged(body))
    return body, content_type


def kannel_query(token: str) -> Strategy[dict[str, str]]:
    """The parameters of a receipt on /kannel/dlr: its route, token, part id, type, reply;
    each valid three times in five, else missing or hostile."""

    @st.composite
    def mostly(draw: st.DrawFn, valid: Strategy[str]) -> str | None:
        pick = draw(st.sampled_from((0, 0, 0, 1, 2)))
        return draw(valid) if pick == 0 else None if pick == 1 else draw(hostile_utf8)

    return st.fixed_dictionaries(
        {
            "route": mostly(st.just("kannel")),
            "token": mostly(st.just(token)),
            "id": mostly(st.just("x.1")),
            "type": mostly(st.sampled_from(("1", "2", "4", "8", "16", "34"))),
            "reply": mostly(st.just("id:1 stat:UNDELIV err:001")),
        }
    ).map(lambda d: {k: v for k, v in d.items() if v is not None})


# A path segment: hostile text that stays one segment (no `/`, `.` or `..`).
segments = hostile_utf8.filter(lambda s: s not in ("", ".", "..") and "/" not in s).map(
    lambda s: urllib.parse.quote(s, safe="")
)
