"""The MM7 codec: SubmitReq bytes (golden), responses and MMSC requests from several peers."""

from __future__ import annotations

import dataclasses
import datetime as dt
import email.message
import email.parser
import email.policy

import pytest

from mmsgate import mime
from mmsgate import mm7_codec as mm7
from tests.api.helpers import GOLDEN

SUBMIT = mm7.Submit(
    transaction_id="tx-1",
    recipients=["17745550100"],
    content_type='multipart/related; type="application/smil"; start="<smil>"; boundary="inner"',
    content=b"--inner\r\nContent-Type: text/plain\r\n\r\nhi\r\n--inner--\r\n",
    sender="28444",
    vasp_id="myvasp",
    vas_id="myservice",
    service_code="32113",
    subject="Hello & welcome",
    expiry=dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC),
)


def test_submit_req_is_golden() -> None:
    """A SubmitReq is written byte for byte as the golden file (order, namespaces, CRLF)."""
    content_type, body = mm7.encode_submit(SUBMIT, boundary="outer")
    assert content_type == 'multipart/related; boundary="outer"; type="text/xml"; start="<soap>"'
    assert body == (GOLDEN / "mm7_submit_req.txt").read_bytes()


def test_submit_req_with_e164_numbers_is_golden() -> None:
    """With e164 numbers the SubmitReq is the golden one with `+` before each recipient."""
    e164 = dataclasses.replace(SUBMIT, e164_numbers=True)
    _content_type, body = mm7.encode_submit(e164, boundary="outer")
    golden = (GOLDEN / "mm7_submit_req.txt").read_bytes()
    assert body == golden.replace(b"<Number>17745550100<", b"<Number>+17745550100<")


def _outer_parts(content_type: str, body: bytes) -> list[email.message.Message]:
    header = f"Content-Type: {content_type}\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(header + body)
    return list(message.get_payload())


def test_the_content_part_carries_only_type_and_id() -> None:
    """A multipart content part has exactly Content-Type and Content-ID (MMSCs copy its
    headers into the handset's PDU); the envelope's href names it; its parts are intact."""
    soap, content = _outer_parts(*mm7.encode_submit(SUBMIT))
    assert content.items() == [
        ("Content-Type", SUBMIT.content_type),
        ("Content-ID", "<mms-content>"),
    ]
    assert b'<Content href="cid:mms-content"/>' in soap.get_payload(decode=True)
    assert content.get_payload()[0].get_payload() == "hi"


def test_a_single_media_content_part_says_base64() -> None:
    """A content that is one binary part is base64, and its header says so."""
    jpeg = dataclasses.replace(SUBMIT, content_type="image/jpeg", content=bytes(range(256)))
    _soap, content = _outer_parts(*mm7.encode_submit(jpeg))
    assert [name for name, _ in content.items()] == [
        "Content-Type",
        "Content-ID",
        "Content-Transfer-Encoding",
    ]
    assert content["Content-Transfer-Encoding"] == "base64"
    assert content.get_payload(decode=True) == bytes(range(256))


def test_submit_req_reads_back() -> None:
    """What we write parses back by local names, with the content part intact."""
    content_type, body = mm7.encode_submit(SUBMIT)
    request = mm7.decode_request(content_type, body)
    assert request.kind == "SubmitReq"
    assert request.transaction_id == "tx-1"
    assert request.namespace == mm7.DEFAULT_NAMESPACE
    assert request.fields["MM7Version"] == "6.8.0"
    assert request.fields["Recipients"] == "17745550100"
    assert request.fields["Content"] == "cid:mms-content"
    assert request.fields["Subject"] == "Hello & welcome"
    order = list(request.fields)
    assert order == [
        "MM7Version",
        "SenderIdentification",
        "Recipients",
        "ServiceCode",
        "ExpiryDate",
        "DeliveryReport",
        "Subject",
        "Content",
    ]
    assert request.parts == (("text/plain", b"hi"),)


def test_submit_rsp_with_prefixed_namespace() -> None:
    """A SubmitRsp with the MM7 namespace on a prefix yields status and MessageID."""
    body = b"""<?xml version="1.0"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/">
      <soap:Header><mm7:TransactionID xmlns:mm7="urn:x" soap:mustUnderstand="1">tx-1</mm7:TransactionID></soap:Header>
      <soap:Body><mm7:SubmitRsp xmlns:mm7="urn:x"><mm7:MM7Version>6.8.0</mm7:MM7Version>
      <mm7:Status><mm7:StatusCode>1000</mm7:StatusCode><mm7:StatusText>Success</mm7:StatusText></mm7:Status>
      <mm7:MessageID>msg-77</mm7:MessageID></mm7:SubmitRsp></soap:Body></soap:Envelope>"""
    response = mm7.decode_response("text/xml", body)
    assert (response.kind, response.status_code, response.message_id, response.ok) == (
        "SubmitRsp",
        1000,
        "msg-77",
        True,
    )
    assert response.transaction_id == "tx-1"


def test_fault_with_rserror_detail() -> None:
    """A SOAP Fault carrying RSErrorRsp gives its status; 4006 counts as transient."""
    body = b"""<env:Envelope xmlns:env="http://schemas.xmlsoap.org/soap/envelope/"><env:Body><env:Fault>
      <faultcode>env:Server</faultcode><faultstring>busy</faultstring><detail>
      <RSErrorRsp xmlns="urn:x"><MM7Version>6.8.0</MM7Version><Status><StatusCode>4006</StatusCode>
      <StatusText>Service unavailable</StatusText></Status></RSErrorRsp></detail></env:Fault></env:Body></env:Envelope>"""
    response = mm7.decode_response("text/xml; charset=utf-8", body)
    assert (response.kind, response.status_code, response.fault) == (
        "RSErrorRsp",
        4006,
        "env:Server",
    )
    assert response.transient
    assert not response.ok


def test_fault_without_detail_is_a_general_error() -> None:
    """A bare Fault without a status reads as 4000 with its faultstring."""
    body = b"""<Envelope xmlns="http://schemas.xmlsoap.org/soap/envelope/"><Body><Fault>
      <faultcode>Client</faultcode><faultstring>bad</faultstring></Fault></Body></Envelope>"""
    response = mm7.decode_response("text/xml", body)
    assert (response.status_code, response.status_text) == (4000, "bad")


@pytest.mark.parametrize(
    ("recipient", "expected"),
    [
        ("<Recipient><Number>17745550100</Number></Recipient>", "17745550100"),
        ("<Recipient>17745550100</Recipient>", "17745550100"),
        ("<Recipient><To><Number>17745550100</Number></To></Recipient>", "17745550100"),
    ],
)
def test_delivery_report_shapes(recipient: str, expected: str) -> None:
    """DeliveryReportReq addresses are read wrapped in Number, bare, or inside To."""
    body = f"""<?xml version="1.0"?><env:Envelope xmlns:env="http://schemas.xmlsoap.org/soap/envelope/">
      <env:Header><TransactionID xmlns="urn:y">dr-1</TransactionID></env:Header><env:Body>
      <DeliveryReportReq xmlns="urn:y"><MM7Version>5.3.0</MM7Version><MessageID>msg-77</MessageID>
      {recipient}<Sender><ShortCode>28444</ShortCode></Sender><Date>2026-11-25T10:00:00Z</Date>
      <MMStatus>Retrieved</MMStatus></DeliveryReportReq></env:Body></env:Envelope>""".encode()
    request = mm7.decode_request("text/xml", body)
    assert request.kind == "DeliveryReportReq"
    assert request.fields["Recipient"] == expected
    assert (request.fields["MessageID"], request.fields["MMStatus"]) == ("msg-77", "Retrieved")
    assert request.transaction_id == "dr-1"


def test_response_envelope_reads_back() -> None:
    """DeliveryReportRsp as we answer it is a readable 1000 Success."""
    body = mm7.encode_response("DeliveryReportRsp", "dr-1")
    response = mm7.decode_response("text/xml", body)
    assert (response.kind, response.transaction_id, response.status_code) == (
        "DeliveryReportRsp",
        "dr-1",
        1000,
    )


@pytest.mark.parametrize(
    "body",
    [b'<!DOCTYPE e [<!ENTITY x "y">]><e>&x;</e>', b"<Envelope><Body>", b"not xml"],
)
def test_bad_xml_is_a_format_error(body: bytes) -> None:
    """DTDs and malformed documents are refused with Mm7FormatError, nothing expanded."""
    with pytest.raises(mm7.Mm7FormatError):
        mm7.decode_request("text/xml", body)


def _lf(body: bytes) -> bytes:
    return body.replace(b"\r\n", b"\n")


ENVELOPE = mm7.encode_response("DeliverReq", "tx-9")
QP_BODY = (
    b"preamble to be ignored\r\n"
    b"--b1\r\nContent-Type: text/xml\r\nContent-ID: <env>\r\n\r\n" + ENVELOPE + b"\r\n"
    b"--b1 \r\nContent-Type: text/plain;\r\n charset=utf-8\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n\r\ncaf=C3=A9 =\r\nau lait\r\n"
    b"--b1\r\nContent-Type: application/octet-stream\r\n\r\n\x00\x01\r\n\x02\r\n"
    b"--b1--\r\nepilogue\r\n"
)

# Headers ending in CRLF over a body holding a bare-LF blank line, and the other way round.
MIXED_ENDS = (
    b"--b1\r\nContent-Type: text/xml\r\nContent-ID: <env>\r\n\r\n" + ENVELOPE + b"\r\n"
    b"--b1\r\nContent-Type: text/plain\r\n\r\none\n\ntwo\r\n"
    b"--b1\nContent-Type: application/octet-stream\n\nthree\r\n\r\nfour\r\n"
    b"--b1--\r\n"
)


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        pytest.param(*mm7.encode_submit(SUBMIT), id="submit"),
        pytest.param(
            *mm7.encode_deliver(
                "tx-2",
                "15551230000",
                "28444",
                [("image/jpeg", bytes(range(256)) * 40), ("text/plain", b"Hi")],
            ),
            id="deliver-nested-base64",
        ),
        pytest.param(
            *mm7.encode_deliver(
                "tx-3",
                "15551230000",
                "28444",
                [('text/plain; charset="ISO-8859-1"; format=flowed', "Café".encode("latin-1"))],
            ),
            id="deliver-charset",
        ),
        pytest.param(
            'multipart/related; start="<env>"; boundary=b1', QP_BODY, id="qp-folded-preamble"
        ),
        pytest.param('multipart/related; start="<env>"; boundary=b1', _lf(QP_BODY), id="bare-lf"),
        pytest.param('multipart/related; start="<env>"; boundary=b1', MIXED_ENDS, id="mixed-ends"),
    ],
)
def test_multipart_reader_agrees_with_the_email_parser(content_type: str, body: bytes) -> None:
    """The direct MIME reader finds the same envelope and leaf parts as the stdlib parser."""
    assert mm7.soap_part(content_type, body) == mime.read_by_email(content_type, body)
    assert mime.split_multipart(content_type, body)  # read directly, not by the fallback


def test_a_leaf_part_keeps_its_charset_only() -> None:
    """A DeliverReq's text part comes out typed with its charset, lower-cased, and no other
    parameter; a charset that is not a plain name is dropped."""
    parts = [
        ('text/plain; charset="UTF-8"; format=flowed', "Grüße".encode()),
        ('text/plain; charset="a b<"', b"x"),
        ("image/jpeg; name=x.jpg", b"\xff\xd8"),
    ]
    request = mm7.decode_request(*mm7.encode_deliver("tx-4", "15551230000", "28444", parts))
    assert [t for t, _ in request.parts] == [
        "text/plain; charset=utf-8",
        "text/plain",
        "image/jpeg",
    ]
    assert request.parts[0][1] == "Grüße".encode()


def test_unreadable_multipart_falls_back_to_the_email_parser() -> None:
    """A body the direct reader refuses (no close delimiter) is still read, leniently."""
    body = b"--b1\r\nContent-Type: text/xml\r\n\r\n" + ENVELOPE + b"\r\n"
    with pytest.raises(mime.MimeError):
        mime.split_multipart("multipart/related; boundary=b1", body)
    soap, leaves = mm7.soap_part("multipart/related; boundary=b1", body)
    assert (soap, leaves) == (ENVELOPE, ())


def _report_body(status: str, extra: str = "") -> bytes:
    return f"""<?xml version="1.0"?><env:Envelope xmlns:env="http://schemas.xmlsoap.org/soap/envelope/">
      <env:Header><TransactionID xmlns="urn:y">dr-2</TransactionID></env:Header><env:Body>
      <DeliveryReportReq xmlns="urn:y"><MM7Version>5.3.0</MM7Version><MessageID>msg-78</MessageID>
      <Recipient><Number>17745550100</Number></Recipient><MMStatus>{status}</MMStatus>{extra}
      </DeliveryReportReq></env:Body></env:Envelope>""".encode()


def test_delivery_report_decodes_into_a_typed_report() -> None:
    """A DeliveryReportReq reads as a DeliveryReport: MessageID, status however cased, the
    status text and the retrieving handset."""
    extra = '<StatusText>ok</StatusText><UACapabilities UAProf="http://ua/p.xml"/>'
    request = mm7.decode_request("text/xml", _report_body("not supported", extra))
    assert request.operation is mm7.Operation.DELIVERY_REPORT
    assert request.report == mm7.DeliveryReport(
        message_id="msg-78",
        status_name="not supported",
        status=mm7.MMStatus.NOT_SUPPORTED,
        status_text="ok",
        handset="http://ua/p.xml",
    )


def test_an_unlisted_status_reads_as_none() -> None:
    """A status TS 23.140 does not list is kept as written, with no MMStatus."""
    report = mm7.decode_request("text/xml", _report_body("Pending")).report
    assert (report.status_name, report.status) == ("Pending", None)


def test_deliver_req_decodes_sender_recipient_subject() -> None:
    """A DeliverReq reads as a Deliver with sender and recipient as digits and its subject."""
    body = b"""<Envelope xmlns="http://schemas.xmlsoap.org/soap/envelope/"><Body>
      <DeliverReq xmlns="urn:y"><MM7Version>6.8.0</MM7Version>
      <Sender><Number>+17745550100</Number></Sender><Recipients><To><Number>28444</Number></To>
      </Recipients><Subject>Hi</Subject></DeliverReq></Body></Envelope>"""
    request = mm7.decode_request("text/xml", body)
    assert request.operation is mm7.Operation.DELIVER
    assert request.deliver == mm7.Deliver("17745550100", "28444", "Hi", ("28444",))


def test_a_group_deliver_req_lists_its_to_and_cc_but_not_its_bcc() -> None:
    """A DeliverReq to a group names every To and Cc address in order, once each, as
    digits; its recipient is the first To even when a Cc is a Number and the To a
    ShortCode; Bcc addresses are left out."""
    body = b"""<Envelope xmlns="http://schemas.xmlsoap.org/soap/envelope/"><Body>
      <DeliverReq xmlns="urn:y"><MM7Version>6.8.0</MM7Version>
      <Sender><Number>+17745550100</Number></Sender><Recipients>
      <To><ShortCode>28444</ShortCode><Number>tel:+17745550199</Number></To>
      <Cc><Number>+17745550198/TYPE=PLMN</Number><Number>17745550199</Number></Cc>
      <Bcc><Number>17745550197</Number></Bcc></Recipients></DeliverReq></Body></Envelope>"""
    deliver = mm7.decode_request("text/xml", body).deliver
    assert deliver.recipient == "28444"
    assert deliver.recipients == ("28444", "17745550199", "17745550198")


def test_answer_names_the_response_in_the_request_namespace() -> None:
    """encode_answer acknowledges a request with its *Rsp, in its namespace and version."""
    request = mm7.decode_request("text/xml", _report_body("Retrieved"))
    body = mm7.encode_answer(request)
    assert b'<DeliveryReportRsp xmlns="urn:y">' in body
    assert b"<MM7Version>5.3.0</MM7Version>" in body
    assert mm7.decode_response("text/xml", body).transaction_id == "dr-2"


def test_simulated_delivery_report_reads_back() -> None:
    """The simulator's DeliveryReportReq, written by the codec, reads back as the same report."""
    body = mm7.encode_delivery_report("sim-1", "17745550100", "Retrieved", "http://ua/h", "dr-3")
    request = mm7.decode_request("text/xml", body)
    assert (request.transaction_id, request.report.status) == ("dr-3", mm7.MMStatus.RETRIEVED)
    assert (request.report.message_id, request.report.handset) == ("sim-1", "http://ua/h")


GROUP = dataclasses.replace(
    SUBMIT,
    recipients=["447900000100"],
    sender="Acme_Shop",
    display_only=["447900000201", "447900000202"],
)


def test_display_only_members_follow_the_recipient_in_to() -> None:
    """The display-only numbers are Numbers with displayOnly="true" after the real To."""
    _content_type, body = mm7.encode_submit(GROUP, boundary="outer")
    assert (
        b"<Recipients><To><Number>447900000100</Number>"
        b'<Number displayOnly="true">447900000201</Number>'
        b'<Number displayOnly="true">447900000202</Number></To></Recipients>'
    ) in body
    assert b"<SenderAddress><ShortCode>Acme_Shop</ShortCode></SenderAddress>" in body
    e164 = mm7.encode_submit(dataclasses.replace(GROUP, e164_numbers=True))[1]
    assert b'<Number displayOnly="true">+447900000201</Number>' in e164


def test_a_group_submit_reads_back_with_its_sender_and_display_only_members() -> None:
    """Parsed back, the recipient is the real one, the sender the mask, and the display-only
    members are listed apart, never as recipients."""
    request = mm7.decode_request(*mm7.encode_submit(GROUP))
    submit = request.submit
    assert submit.recipient == "447900000100"
    assert submit.sender == "Acme_Shop"
    assert submit.display_only == ("447900000201", "447900000202")
    assert request.display_only == submit.display_only


def test_a_display_only_address_first_is_still_no_recipient() -> None:
    """However a peer orders them (or spells True), a displayOnly address is never the
    recipient read from Recipients."""
    content_type, body = mm7.encode_submit(SUBMIT)
    body = body.replace(
        b"<To><Number>17745550100</Number>",
        b'<To><RFC2822Address displayOnly="True">a@b.example</RFC2822Address>'
        b"<Number>17745550100</Number>",
    )
    request = mm7.decode_request(content_type, body)
    assert request.fields["Recipients"] == "17745550100"
    assert request.display_only == ("a@b.example",)
