"""Sinch's JSON postback bodies (postback_json): every event kind and code, exactly; the XML
bodies' client-reference; events queued before client-reference existed."""

from __future__ import annotations

import datetime as dt
import json
import typing
from typing import Any

import pytest

from mmsgate import models, postback_json, postback_xml
from mmsgate.pipeline import postbacks
from tests.api.helpers import GOLDEN

AT = dt.datetime(2026, 1, 5, 15, 0, 0, 990498, tzinfo=dt.UTC)
D, T, MO = models.PostbackKind.DELIVERY, models.PostbackKind.TEMPLATE, models.PostbackKind.MO


def delivery(code: str, **facts: Any) -> models.PostbackEvent:
    """A delivery event of account 3 to 17745550100, with `facts` over the usual ones."""
    usual: dict[str, Any] = {
        "at": AT,
        "tracking_id": "TU1TXzkwMDAx",
        "mms_id": 50011,
        "sender": "28444",
        "to": "17745550100",
        "sent_as": "MMS",
        "operator_id": 31004,
        "client_reference": "order-42",
    }
    return models.PostbackEvent(D, 3, code, **(usual | facts))


def body(event: models.PostbackEvent) -> dict[str, Any]:
    rendered = postback_json.render(event)
    decoded: dict[str, Any] = json.loads(rendered)
    return decoded


COMMON = {
    "origin": "MMS_MT",
    "mms-id": "50011",
    "from": "28444",
    "to": "17745550100",
    "tracking-id": "TU1TXzkwMDAx",
    "client-reference": "order-42",
    "operator-id": "31004",
    "operator-name": "T-Mobile",
    "timestamp": "2026-01-05T15:00:00.990498+00:00",
}


def test_n101_is_the_golden_body_byte_for_byte() -> None:
    """An N101 renders as the golden body: compact UTF-8 JSON, Sinch's keys in Sinch's
    order, numbers quoted, the timestamp in UTC with microseconds and offset."""
    event = delivery("N101", details="accepted by sim")
    assert postback_json.render(event) == (GOLDEN / "postback_n101.json").read_bytes().strip()


def test_n102_carries_the_handset_and_the_carriers_text() -> None:
    """N102 is Delivered, with the handset and the carrier's text as status-details."""
    event = delivery(
        "N102", handset="moto17c", details="Retrieved", status="Message Sent/Delivered"
    )
    expected = {"code": "N102", "sent-as": "MMS", "status": "Delivered"}
    expected |= {"status-details": "Retrieved", "handset": "moto17c"}
    assert body(event) == COMMON | expected
    assert postback_json.render(event) == (GOLDEN / "postback_n102.json").read_bytes().strip()


@pytest.mark.parametrize(
    ("code", "status", "sent_as", "word"),
    [
        ("N101", None, "MMS", "Sent"),
        ("N101", None, "SMS", "Sent"),  # the fallback SMS went
        ("N102", "Message Sent/Delivered", "MMS", "Delivered"),
        ("N103", None, "MMS", "Expired"),  # expired before it could be sent
        ("N103", "Message Sent/Expired", "MMS", "Expired"),  # the MMSC's expiry report
        ("E101", None, "MMS", "Failed"),
        ("E102", None, "MMS", "Rejected"),  # no MMS possible, no fallback
        ("E102", "Message Sent/Rejected", "MMS", "Rejected"),
        ("E102", "Message Sent/Not Supported", "MMS", "Rejected"),
        ("E102", "Message Sent/Failed", "MMS", "Failed"),  # the MMSC knew no such recipient
        ("N202", None, "SMS", "Delivered"),
        ("E202", None, "SMS", "Failed"),
    ],
)
def test_each_code_gets_its_status_word(
    code: str, status: str | None, sent_as: str, word: str
) -> None:
    """Each MT code has the §8.3 status word that fits it, the XML status text deciding
    E102's, and sent-as where the XML body has it (not on E101/E102)."""
    got = body(delivery(code, status=status, sent_as=sent_as, details="why"))
    expected = COMMON | {"code": code, "status": word, "status-details": "why"}
    if code not in ("E101", "E102"):
        expected["sent-as"] = sent_as
    assert got == expected


def test_status_details_default_to_sinchs_words() -> None:
    """Without a text of its own an event's status-details is `Message <status>`."""
    assert body(delivery("N101"))["status-details"] == "Message Sent"
    assert body(delivery("E102"))["status-details"] == "Message Rejected"


def test_keys_with_nothing_to_say_are_left_out() -> None:
    """No client-reference, operator, handset or time: those keys are absent, not null."""
    event = models.PostbackEvent(
        D, 3, "E101", tracking_id="t-1", mms_id=7, sender="28444", to="1555", details="no route"
    )
    assert body(event) == {
        "origin": "MMS_MT",
        "code": "E101",
        "status": "Failed",
        "status-details": "no route",
        "mms-id": "7",
        "from": "28444",
        "to": "1555",
        "tracking-id": "t-1",
    }


def test_a_code_with_no_status_word_has_none() -> None:
    """An MT code §7.1 gives no status (E999) has neither status nor invented details."""
    got = body(models.PostbackEvent(D, 3, "E999", tracking_id="t-1", mms_id=7))
    assert got == {"origin": "MMS_MT", "code": "E999", "mms-id": "7", "tracking-id": "t-1"}


def test_mo_lists_its_content_as_files() -> None:
    """N401 has from, to, tracking-id, the subject ("" when none) and `content` as
    `[{"file": url}]` in order (§8.4); no copy-to or keyword when the event has none."""
    event = models.PostbackEvent(
        MO, 3, "N401", at=AT, tracking_id="MMS_MO_abc", sender="17745550100", to="28444",
        subject="Look ☀", files=("https://gw/media/t/1", "https://gw/media/t/2"),
    )  # fmt: skip
    assert body(event) == {
        "origin": "MMS_MO",
        "code": "N401",
        "from": "17745550100",
        "to": "28444",
        "tracking-id": "MMS_MO_abc",
        "message-subject": "Look ☀",
        "content": [{"file": "https://gw/media/t/1"}, {"file": "https://gw/media/t/2"}],
        "timestamp": "2026-01-05T15:00:00.990498+00:00",
    }
    assert "Look ☀".encode() in postback_json.render(event)  # UTF-8, not \\u escapes
    bare = models.PostbackEvent(MO, 3, "N401", at=AT, tracking_id="m", sender="1", to="2")
    assert body(bare)["message-subject"] == ""
    assert body(bare)["content"] == []


def test_a_group_mo_names_its_thread_and_its_keyword() -> None:
    """A group MO's other members are `copy-to` `[{"number": …}]` after `to`, then its
    `keyword`, in §8.4's order; the XML body has the keyword after `to` and no copy-to."""
    event = models.PostbackEvent(
        MO, 3, "N401", at=AT, tracking_id="MMS_MO_abc", sender="17745550100", to="28444",
        files=("https://gw/media/t/1",), keyword="PHOTO", copy_to=("17745550199", "17745550198"),
    )  # fmt: skip
    rendered = postback_json.render(event).decode()
    assert rendered.startswith(
        '{"origin":"MMS_MO","code":"N401","from":"17745550100","to":"28444",'
        '"copy-to":[{"number":"17745550199"},{"number":"17745550198"}],"keyword":"PHOTO",'
        '"tracking-id":"MMS_MO_abc",'
    )
    xml = postback_xml.render(event).decode()
    assert "<to>28444</to>\n    <keyword>PHOTO</keyword>\n    <tracking-id>" in xml
    assert "17745550199" not in xml


def test_operator_name_follows_a_known_operator_id() -> None:
    """A known Sinch operator id gets its carrier's name after it; an unknown id has no
    operator-name, and the XML body has none either (§8.1 lists no such element)."""
    assert body(delivery("N101", operator_id=31002))["operator-name"] == "AT&T"
    unknown = body(delivery("N101", operator_id=39999))
    assert unknown["operator-id"] == "39999"
    assert "operator-name" not in unknown
    assert b"operator-name" not in postback_xml.render(delivery("N101"))


def test_the_sends_campaign_ref_follows_the_client_reference() -> None:
    """A send's campaign-ref is echoed right after client-reference in JSON, not in XML."""
    got = body(delivery("N102", campaign_ref="spring-26"))
    keys = list(got)
    assert got["campaign-ref"] == "spring-26"
    assert keys.index("campaign-ref") == keys.index("client-reference") + 1
    assert b"spring-26" not in postback_xml.render(delivery("N102", campaign_ref="spring-26"))


def test_n003_carries_the_saves_client_reference() -> None:
    """N003 names the template (mms-id as a string) and the saveMMS's client-reference."""
    event = models.PostbackEvent(T, 3, "N003", mms_id=42, client_reference="tpl-1")
    assert body(event) == {
        "origin": "MMS_MT",
        "code": "N003",
        "mms-id": "42",
        "client-reference": "tpl-1",
    }
    assert body(models.PostbackEvent(T, 3, "N003", mms_id=42)) == {
        "origin": "MMS_MT",
        "code": "N003",
        "mms-id": "42",
    }


@pytest.mark.parametrize(
    ("code", "kind", "key"),
    [
        ("E002", models.MediaKind.AUDIO, "audio-name"),
        ("E003", models.MediaKind.VIDEO, "video-name"),
        ("E004", models.MediaKind.IMAGE, "image-name"),
    ],
)
def test_encoding_failures_name_the_url_as_the_xml_does(
    code: str, kind: models.MediaKind, key: str
) -> None:
    """E002/E003/E004 name the URL that failed under the XML's element name for its kind."""
    url = "http://x/a?b=1&c=2"
    event = models.PostbackEvent(T, 3, code, mms_id=42, failed=kind, failed_url=url)
    assert body(event) == {"origin": "MMS_MT", "code": code, "mms-id": "42", key: url}
    xml = postback_xml.render(event).decode()
    assert f"<{key}>http://x/a?b=1&amp;c=2</{key}>" in xml


def test_xml_delivery_postbacks_carry_the_client_reference_after_the_tracking_id() -> None:
    """An XML postback has `<client-reference>` right after `<tracking-id>` when the send
    gave one, and none when it did not."""
    lines = postback_xml.render(delivery("N101", details="ok")).decode().splitlines()
    at = lines.index("    <tracking-id>TU1TXzkwMDAx</tracking-id>")
    assert lines[at + 1] == "    <client-reference>order-42</client-reference>"
    bare = postback_xml.render(delivery("N101", client_reference=None)).decode()
    assert "client-reference" not in bare


def test_xml_template_postbacks_carry_the_client_reference() -> None:
    """An XML N003 of a saveMMS with a client-reference names it after the mms-id; without
    one it is the golden N003, byte for byte."""
    event = models.PostbackEvent(T, 3, "N003", mms_id=42, client_reference="a<b")
    assert postback_xml.render(event) == (
        b"<postback>\n    <origin>MMS_MT</origin>\n    <code>N003</code>\n"
        b"    <mms-id>42</mms-id>\n    <client-reference>a&lt;b</client-reference>\n"
        b"</postback>\n"
    )
    plain = models.PostbackEvent(T, 3, "N003", mms_id=42)
    assert postback_xml.render(plain) == (GOLDEN / "postback_n003.xml").read_bytes()


def test_an_event_queued_before_client_reference_existed_still_renders() -> None:
    """An event's data as the previous version queued it (no client_reference key) reads
    back with none and renders in either format."""
    queued = {
        "kind": "delivery", "account_id": 3, "code": "N102", "at": AT.isoformat(),
        "tracking_id": "t-1", "mms_id": 9, "sender": "28444", "to": "1555", "sent_as": "MMS",
        "handset": "moto17c", "details": "Retrieved",
    }  # fmt: skip
    event = models.PostbackEvent.from_data(queued)
    assert event.client_reference is None
    payload: Any = {"account_id": 3, "event": queued}
    xml, xml_type = postbacks.body_of(payload)
    assert (xml_type, b"client-reference" in xml) == ("application/xml", False)
    js, js_type = postbacks.body_of(payload, models.PostbackFormat.JSON)
    assert js_type == "application/json"
    assert json.loads(js)["status"] == "Delivered"
    assert "client-reference" not in json.loads(js)


def test_the_client_reference_survives_the_queue() -> None:
    """An event with a client-reference goes through the job's JSON data and back intact."""
    event = delivery("N101")
    assert models.PostbackEvent.from_data(json.loads(json.dumps(event.to_data()))) == event


def test_campaign_ref_keyword_and_copy_to_survive_the_queue() -> None:
    """An event's campaign-ref, keyword and copy-to go through the job's JSON data intact."""
    mo = models.PostbackEvent(MO, 3, "N401", at=AT, keyword="HI", copy_to=("1555", "1556"))
    for event in (delivery("N101", campaign_ref="c-1"), mo):
        assert models.PostbackEvent.from_data(json.loads(json.dumps(event.to_data()))) == event


@pytest.mark.parametrize(
    ("event", "shape"),
    [
        (delivery("N102", handset="h", details="d"), postback_json.DeliveryBody),
        (models.PostbackEvent(D, 3, "E999"), postback_json.DeliveryBody),
        (models.PostbackEvent(MO, 3, "N401", at=AT, files=("u",)), postback_json.MoBody),
        (
            models.PostbackEvent(MO, 3, "N401", at=AT, keyword="K", copy_to=("1",)),
            postback_json.MoBody,
        ),
        (delivery("N101", campaign_ref="c"), postback_json.DeliveryBody),
        (models.PostbackEvent(T, 3, "N003", mms_id=1), postback_json.TemplateBody),
        (
            models.PostbackEvent(
                T,
                3,
                "E003",
                mms_id=1,
                failed=models.MediaKind.VIDEO,
                failed_url="u",
                client_reference="r",
            ),
            postback_json.TemplateBody,
        ),
    ],
)
def test_bodies_are_what_their_types_say(event: models.PostbackEvent, shape: Any) -> None:
    """Each rendered body has every key its TypedDict requires and none it does not name,
    each value of the declared kind (a string, or a list of objects): the types the
    API's description of these postbacks is made from tell the truth."""
    got = body(event)
    hints = typing.get_type_hints(shape)
    assert shape.__required_keys__ <= set(got) <= set(hints)
    for key, value in got.items():
        origin = typing.get_origin(hints[key])
        assert isinstance(value, list if origin is list else str), (key, value)
    for key in set(got) & {"status", "sent-as", "origin"}:
        assert got[key] in typing.get_args(hints[key]), key
