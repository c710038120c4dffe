"""Hostile values in otherwise valid requests get the field's own answer, never E503 or a
5xx: declared encodings, non-ASCII and huge numbers, dates at the edges of the calendar."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest

from mmsgate import mm7_codec as mm7
from mmsgate.settings import Settings, SmsRoute
from mmsgate.store import accounts
from tests.api.helpers import failure_code, fields, send_saved, text_template
from tests.conftest import Gateway

pytestmark = pytest.mark.anyio

HUGE = "7" * 5000  # past Python's int-string limit (4300 digits)
# Digits int() reads (Arabic-Indic, fullwidth) and characters str.isdigit() calls digits.
FOREIGN_DIGITS = ["٣١٠٦٢", "３", "²", "③"]
EDGE_DATES = ["0001-01-01T00:00:00+01:00", "9999-12-31T23:00:00-05:00", "9999-12-31T20:00-10:00"]
KANNEL = SmsRoute(name="kannel", kind="kannel", url="http://127.0.0.1:9/", dlr_token="dlr-token")


def send_mms(key: str, *, slide: str = "", head: str = "") -> str:
    """A sendMMS that would succeed; `slide` goes into its slide, `head` before it."""
    return (
        f"<request><action>sendMMS</action><api-key>{key}</api-key><to>17745550100</to>"
        "<from>28444</from><service-id>32113</service-id><name>n</name>"
        f"<fallback-sms-text>See it</fallback-sms-text>{head}"
        f"<slide><message-text>hi</message-text>{slide}</slide></request>"
    )


def templates(key: str, extra: str) -> str:
    return f"<request><action>getMMSTemplates</action><api-key>{key}</api-key>{extra}</request>"


def delete(key: str, mms_id: str) -> str:
    return f"<request><action>deleteMMSID</action><api-key>{key}</api-key><mms-id>{mms_id}</mms-id></request>"


def custom_text(slide: str) -> str:
    return f"<custom-text><value>x</value><slide>{slide}</slide></custom-text>"


Build = Callable[[str], str]
NUMBER_CASES: list[tuple[str, str, Build]] = [
    case
    for value in [*FOREIGN_DIGITS, HUGE]
    for case in (
        ("E230", value, lambda k, v=value: send_mms(k, slide=f"<duration>{v}</duration>")),
        ("E230", value, lambda k, v=value: send_mms(k, slide=f"<duration>{v}s</duration>")),
        ("E650", value, lambda k, v=value: send_mms(k, head=f"<operator-id>{v}</operator-id>")),
        ("E241", value, lambda k, v=value: send_saved(k, v)),
        ("E241", value, lambda k, v=value: delete(k, v)),
        ("E212", value, lambda k, v=value: templates(k, f"<page-number>{v}</page-number>")),
        ("E213", value, lambda k, v=value: templates(k, f"<items-per-page>{v}</items-per-page>")),
        ("E100", value, lambda k, v=value: send_saved(k, "1", extra=custom_text(v))),
    )
]
DATE_CASES: list[tuple[str, str, Build]] = [
    case
    for value in EDGE_DATES
    for case in (
        (
            "E100",
            value,
            lambda k, v=value: send_mms(
                k, head=f"<mms-expiry-timestamp>{v}</mms-expiry-timestamp>"
            ),
        ),
        (
            "E100",
            value,
            lambda k, v=value: send_saved(
                k, "1", extra=f"<mms-expiry-timestamp>{v}</mms-expiry-timestamp>"
            ),
        ),
        (
            "E100",
            value,
            lambda k, v=value: send_mms(
                k, head=f"<fallback-sms-link-expiration>{v}</fallback-sms-link-expiration>"
            ),
        ),
        (
            "E100",
            value,
            lambda k, v=value: text_template(
                k, extra=f"<fallback-sms-link-expiration>{v}</fallback-sms-link-expiration>"
            ),
        ),
        ("E214", value, lambda k, v=value: templates(k, f"<start-date>{v}</start-date>")),
    )
]


def ids(cases: list[tuple[str, str, Build]]) -> list[str]:
    return [f"{code}-{value[:12]}-{n}" for n, (code, value, _) in enumerate(cases)]


@pytest.mark.parametrize(("code", "value", "build"), NUMBER_CASES, ids=ids(NUMBER_CASES))
async def test_numbers_take_ascii_digits_only(
    gateway: Gateway, code: str, value: str, build: Build
) -> None:
    """Unicode digits and 5,000-digit numbers in duration, operator-id, mms-id, page-number,
    items-per-page and custom-text's slide get that field's code, with a saved template in
    place so that only the value itself is wrong."""
    saved = await gateway.xml(text_template(gateway.api_key))
    assert fields(saved.content)["mms-id"] == "1"
    response = await gateway.xml(build(gateway.api_key))
    assert response.status_code == 200
    assert failure_code(response.content) == code, response.text


@pytest.mark.parametrize("mms_id", ["2147483648", "9999999999", "999999999999999999"])
@pytest.mark.parametrize("build", [send_saved, delete], ids=["sendSavedMMS", "deleteMMSID"])
async def test_an_mms_id_beyond_any_template_id_is_e241(
    gateway: Gateway, mms_id: str, build: Callable[[str, str], str]
) -> None:
    """An mms-id past the 32-bit range template ids have in the database names no template:
    E241, on PostgreSQL too (which refuses such a number as a query parameter)."""
    response = await gateway.xml(build(gateway.api_key, mms_id))
    assert failure_code(response.content) == "E241", response.text


@pytest.mark.parametrize(("code", "value", "build"), DATE_CASES, ids=ids(DATE_CASES))
async def test_dates_at_the_calendar_edges_get_their_codes(
    gateway: Gateway, code: str, value: str, build: Build
) -> None:
    """A date whose UTC instant falls outside years 1 to 9999 is an invalid date of its
    field, in every action that takes it."""
    await gateway.xml(text_template(gateway.api_key))
    response = await gateway.xml(build(gateway.api_key))
    assert response.status_code == 200
    assert failure_code(response.content) == code, response.text


async def test_ascii_numbers_are_still_read(gateway: Gateway) -> None:
    """Plain ASCII values next to the refused ones keep working: duration with its `s`,
    an operator-id, page-number and a far but valid start-date."""
    sent = await gateway.xml(
        send_mms(
            gateway.api_key,
            slide="<duration>5s</duration>",
            head="<operator-id>31062</operator-id>",
        )
    )
    assert fields(sent.content)["status"] == "Success", sent.text
    listed = await gateway.xml(
        templates(
            gateway.api_key,
            "<page-number>01</page-number><start-date>0001-01-01T02:00+01:00</start-date>",
        )
    )
    assert fields(listed.content)["page-number"] == "1", listed.text


ENCODINGS = ["Shift_JIS", "EUC-JP", "GBK", "Big5", "utf-16-le", "utf-32", "utf-16", "cp1252"]


@pytest.mark.parametrize("encoding", ENCODINGS)
async def test_a_declared_encoding_python_knows_is_read(gateway: Gateway, encoding: str) -> None:
    """A request in the encoding its XML declaration names is decoded: the template's name
    comes back as written."""
    name = "Fête" if encoding == "cp1252" else "日本語"
    body = text_template(gateway.api_key, name=name)
    declared = f'<?xml version="1.0" encoding="{encoding}"?>{body}'.encode(encoding)
    saved = await gateway.xml(declared)
    assert fields(saved.content)["status"] == "Success", saved.text
    listed = await gateway.xml(templates(gateway.api_key, ""))
    assert f"<mms-name>{name}</mms-name>" in listed.text


@pytest.mark.parametrize(
    "head",
    [
        '<?xml version="1.0" encoding="bogus"?>',
        "<?xml version='1.0' encoding='rot13'?>",
        '<?xml version="1.0" encoding=""?>',
        '<?xml version="1.0" encoding="Shift_JIS"?>\x81',
        '<?xml version="1.0" encoding="utf-32"?>',
        '<?xml version="1.0" encoding="\x00Shift_JIS"?>',  # echoed back: must stay XML
        '<?xml version="1.0" encoding="bo\x01gus"?>',
    ],
)
async def test_an_unreadable_encoding_is_e108(gateway: Gateway, head: str) -> None:
    """An encoding Python does not know, or bytes not in the one declared, are E108, in an
    answer that is XML even when the name holds characters XML cannot carry."""
    body = (head + text_template(gateway.api_key)).encode("latin-1")
    response = await gateway.xml(body)
    assert response.status_code == 200
    assert failure_code(response.content) == "E108", response.text


@pytest.mark.parametrize("mms_id", ["9999999999999999999", "2147483648", "%C2%B2", "%D9%A3", HUGE])
async def test_template_report_of_a_number_no_template_has_is_404(
    gateway: Gateway, mms_id: str
) -> None:
    """/v1/templates/ with a 19-digit id, a superscript, an Arabic digit or 5,000 digits is a
    404 like any template that does not exist."""
    response = await gateway.client.get(
        f"/v1/templates/{mms_id}", headers={"x-api-key": gateway.api_key}
    )
    assert response.status_code == 404
    assert response.json()["error-code"] == "E241"


def read_reply(encoding: str) -> bytes:
    return (
        f'<?xml version="1.0" encoding="{encoding}"?>'
        '<env:Envelope xmlns:env="http://schemas.xmlsoap.org/soap/envelope/"><env:Header>'
        f'<mm7:TransactionID xmlns:mm7="{mm7.DEFAULT_NAMESPACE}">t-1</mm7:TransactionID>'
        f'</env:Header><env:Body><ReadReplyReq xmlns="{mm7.DEFAULT_NAMESPACE}">'
        "<MM7Version>6.8.0</MM7Version><MessageID>m-1</MessageID>"
        "<Recipient><Number>12399471613</Number></Recipient>"
        "<Sender><Number>28444</Number></Sender><StatusText>既読</StatusText>"
        "<MMStatus>Read</MMStatus></ReadReplyReq></env:Body></env:Envelope>"
    ).encode(encoding if encoding != "bogus" else "utf-8")


@pytest.mark.parametrize("encoding", ["Shift_JIS", "GBK", "utf-16-le", "utf-32"])
async def test_mm7_in_a_declared_encoding_is_read(gateway: Gateway, encoding: str) -> None:
    """An MMSC's request in a multi-byte encoding it declares is read and answered."""
    answer = await gateway.mm7(read_reply(encoding))
    assert answer.status_code == 200, answer.text
    decoded = mm7.decode_response("text/xml", answer.content)
    assert (decoded.kind, decoded.status_code) == ("ReadReplyRsp", 1000)


async def test_mm7_in_an_unknown_encoding_is_a_format_fault(gateway: Gateway) -> None:
    """An unknown declared encoding gets a SOAP fault 2007 with HTTP 400, not a JSON 500."""
    answer = await gateway.mm7(read_reply("bogus"))
    assert answer.status_code == 400
    assert answer.headers["content-type"].startswith("text/xml")
    assert mm7.decode_response("text/xml", answer.content).status_code == 2007


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The suite's settings with a Kannel route, so /kannel/dlr has a token to check."""
    return dataclasses.replace(settings, sms_routes=(KANNEL,))


@pytest.mark.parametrize("kind", [HUGE, "٣", "²", "1" * 11, "-1", ""])
async def test_kannel_receipt_with_a_type_that_is_no_number_is_400(
    gateway: Gateway, kind: str
) -> None:
    """A dlr type that is not a short ASCII number is a 400, whatever its size."""
    query = {"route": "kannel", "token": KANNEL.receipt_token(), "id": "x.1", "type": kind}
    response = await gateway.client.get("/kannel/dlr", params=query)
    assert response.status_code == 400


async def test_a_service_id_longer_than_any_stored_is_e627(gateway: Gateway) -> None:
    """An account without service-ids ignores the one sent, but one longer than mmsgate
    stores (64 characters) is E627, not E503 (PostgreSQL refused it at the commit)."""
    await accounts.update(gateway.services.db, "acme", service_ids=[])
    gateway.services.guard._accounts.clear()
    request = send_mms(gateway.api_key).replace("32113", "s" * 65)
    assert failure_code((await gateway.xml(request)).content) == "E627"
    fitting = send_mms(gateway.api_key).replace("32113", "s" * 64)
    assert fields((await gateway.xml(fitting)).content)["status"] == "Success"


async def test_mm7_mo_from_a_sender_too_long_to_store_is_an_address_fault(
    gateway: Gateway,
) -> None:
    """A DeliverReq whose Sender is longer than mmsgate stores (32 characters) gets fault
    2002 with HTTP 400, not a 500 from the database."""
    content_type, body = mm7.encode_deliver("t-1", "9" * 40, "28444", [("text/plain", b"hi")])
    answer = await gateway.mm7(body, content_type)
    assert answer.status_code == 400, answer.text
    assert mm7.decode_response("text/xml", answer.content).status_code == 2002
