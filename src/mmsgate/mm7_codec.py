"""MM7 (3GPP TS 23.140) as bytes: SubmitReq out, responses and MMSC requests in.

SOAP 1.1 with attachments (multipart/related, the envelope first; the MIME itself is
written and read by mmsgate/mime.py). Written in the schema's element order (xs:sequence;
TS 23.140 SubmitReq), read by local names only, since peers put the MM7 namespace on a
prefix, on a default xmlns, or nowhere. Spec spellings stay here; the
rest of mmsgate sees the dataclasses below. No DTD or entity is ever expanded.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import re
import secrets
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from xml.parsers import expat
from xml.sax.saxutils import quoteattr

from mmsgate import errors, mime, numbers, xmlsafe

SOAP_NS = "http://schemas.xmlsoap.org/soap/envelope/"
DEFAULT_NAMESPACE = "http://www.3gpp.org/ftp/Specs/archive/23_series/23.140/schema/REL-6-MM7-1-4"
DEFAULT_VERSION = "6.8.0"
# Status codes worth retrying (TS 23.140 §8.7.4; 3100 is Skycore's "throughput exceeded").
TRANSIENT = frozenset({3000, 4000, 4005, 4006, 3100})
STATUS_DIGITS = 9


class Mm7FormatError(errors.MmsgateError, ValueError):
    """Bytes that are not a usable MM7 message."""


@dataclasses.dataclass(frozen=True, slots=True)
class Submit:
    """One SubmitReq: who sends to whom, and the content part (already composed)."""

    transaction_id: str
    recipients: Sequence[str]
    content_type: str
    content: bytes
    sender: str | None = None
    vasp_id: str | None = None
    vas_id: str | None = None
    service_code: str | None = None
    linked_id: str | None = None
    subject: str | None = None
    expiry: dt.datetime | None = None
    delivery_report: bool = True
    allow_adaptations: bool | None = None
    version: str = DEFAULT_VERSION
    namespace: str = DEFAULT_NAMESPACE
    # Recipients as +E.164 (`+447900000001`) rather than international digits: MMSCs differ
    # in what `Number` must hold (TS 23.140 leaves its form to the MMSC).
    e164_numbers: bool = False
    # Group members the handset shows but the MMSC does not deliver to (a send's
    # to-displayonly), written after the recipients with displayOnly="true".
    display_only: Sequence[str] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class Response:
    """An MMSC's answer: a *Rsp (or RSErrorRsp in a Fault) with its status."""

    kind: str
    transaction_id: str | None
    status_code: int
    status_text: str
    message_id: str | None = None
    fault: str | None = None

    @property
    def ok(self) -> bool:
        return 1000 <= self.status_code < 2000

    @property
    def transient(self) -> bool:
        return self.status_code in TRANSIENT


class Operation(enum.Enum):
    """The requests mmsgate reads, by their element names (TS 23.140 §8)."""

    SUBMIT = "SubmitReq"
    DELIVERY_REPORT = "DeliveryReportReq"
    READ_REPLY = "ReadReplyReq"
    DELIVER = "DeliverReq"

    @property
    def answer(self) -> str:
        """The name of the response that acknowledges this request."""
        return self.value.removesuffix("Req") + "Rsp"


class MMStatus(enum.StrEnum):
    """A DeliveryReportReq's MMStatus values (TS 23.140 §8.4.2), as written."""

    RETRIEVED = "Retrieved"
    FORWARDED = "Forwarded"
    EXPIRED = "Expired"
    REJECTED = "Rejected"
    UNRECOGNISED = "Unrecognised"
    NOT_SUPPORTED = "NotSupported"
    DEFERRED = "Deferred"
    INDETERMINATE = "Indeterminate"

    @classmethod
    def read(cls, text: str) -> MMStatus | None:
        """The status `text` names, however spaced or cased (`Not Supported`); None if none."""
        wanted = text.replace(" ", "").lower()
        return next((s for s in cls if s.value.lower() == wanted), None)


@dataclasses.dataclass(frozen=True, slots=True)
class DeliveryReport:
    """A DeliveryReportReq: the MessageID it is about and what became of it ("" if absent)."""

    message_id: str
    status_name: str  # MMStatus as the MMSC wrote it
    status: MMStatus | None  # None for a value TS 23.140 does not list
    status_text: str | None
    handset: str | None  # the UAProf of the handset that retrieved it


@dataclasses.dataclass(frozen=True, slots=True)
class Deliver:
    """A DeliverReq (MO): from whom, to which number ("" if absent), and its subject;
    `recipients` every To and Cc address in order (a group MO names the whole thread; Bcc
    members are left out, as no member is shown them)."""

    sender: str
    recipient: str
    subject: str | None
    recipients: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class SubmitRequest:
    """A SubmitReq as an MMSC reads it (the simulator): its version, first recipient and
    the reference to its content part ("" when absent), its sender address and the
    display-only members it names (never recipients)."""

    version: str
    recipient: str
    content_href: str
    sender: str = ""
    display_only: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class Incoming:
    """A request from an MMSC: DeliveryReportReq, ReadReplyReq or DeliverReq (or, for the
    simulator, a SubmitReq). `kind` is its name as sent; `fields` the codec's raw reading,
    which the typed views below translate."""

    kind: str
    transaction_id: str | None
    version: str | None
    namespace: str | None
    fields: dict[str, str]
    parts: tuple[tuple[str, bytes], ...] = ()
    # Every address of the Recipients element, with the list (To, Cc, Bcc) it is in.
    addressees: tuple[tuple[str, str], ...] = ()
    # Addresses of Recipients marked displayOnly="true": shown, not delivered to.
    display_only: tuple[str, ...] = ()

    @property
    def operation(self) -> Operation | None:
        return next((op for op in Operation if op.value == self.kind), None)

    @property
    def report(self) -> DeliveryReport:
        status = self.fields.get("MMStatus", "")
        return DeliveryReport(
            message_id=self.fields.get("MessageID", ""),
            status_name=status,
            status=MMStatus.read(status),
            status_text=self.fields.get("StatusText") or None,
            handset=self.fields.get("UACapabilities") or None,
        )

    @property
    def deliver(self) -> Deliver:
        f = self.fields
        shown = tuple(dict.fromkeys(a for kind, a in self.addressees if kind in ("To", "Cc")))
        first_to = next((a for kind, a in self.addressees if kind == "To"), None)
        recipient = first_to if first_to is not None else f.get("Recipients", "")
        return Deliver(f.get("Sender", ""), recipient, f.get("Subject"), shown)

    @property
    def submit(self) -> SubmitRequest:
        f = self.fields
        return SubmitRequest(
            f.get("MM7Version", ""),
            f.get("Recipients", ""),
            f.get("Content", ""),
            sender=f.get("SenderIdentification", ""),
            display_only=self.display_only,
        )

    @property
    def answer_namespace(self) -> str:
        """The namespace answers to this request are written in: the request's own."""
        return self.namespace.lstrip("{") if self.namespace else DEFAULT_NAMESPACE


def encode_submit(submit: Submit, boundary: str | None = None) -> tuple[str, bytes]:
    """The HTTP Content-Type and body of a SubmitReq with its content attached."""
    envelope = _envelope(submit.namespace, submit.transaction_id, "SubmitReq", _submit_body(submit))
    return _with_content(envelope, submit.content_type, submit.content, boundary)


def encode_deliver(
    transaction_id: str,
    sender: str,
    recipient: str,
    parts: Sequence[tuple[str, bytes]],
    *,
    subject: str | None = None,
    linked_id: str | None = None,
    namespace: str = DEFAULT_NAMESPACE,
) -> tuple[str, bytes]:
    """A DeliverReq (MO, MMSC to VASP) carrying `parts` as multipart/mixed content."""
    children = [
        _el("MM7Version", DEFAULT_VERSION),
        _el("LinkedID", linked_id or transaction_id),
        f"<Sender>{_el('Number', sender)}</Sender>",
        f"<Recipients><To>{_el('ShortCode', recipient)}</To></Recipients>",
        _el("TimeStamp", dt.datetime.now(dt.UTC).isoformat(timespec="seconds")),
    ]
    if subject:
        children.append(_el("Subject", subject))
    children.append('<Content href="cid:mms-content"/>')
    envelope = _envelope(namespace, transaction_id, "DeliverReq", children)
    content_type, content = mime.mixed(parts, "mo-" + secrets.token_hex(12))
    return _with_content(envelope, content_type, content, None)


def _with_content(
    envelope: bytes, content_type: str, content: bytes, boundary: str | None
) -> tuple[str, bytes]:
    """SOAP with attachments: the envelope first, then the content part the envelope's
    `href="cid:mms-content"` names (mime.related says what the part carries, and why)."""
    return mime.related(
        mime.Attachment('text/xml; charset="utf-8"', "soap", envelope),
        mime.Attachment(content_type, "mms-content", content),
        boundary or "mm7-" + secrets.token_hex(12),
    )


def _submit_body(s: Submit) -> list[str]:
    """SubmitReq children in schema order (TS 23.140 SubmitReq xs:sequence)."""
    out = [_el("MM7Version", s.version)]
    ident = [_el(n, v) for n, v in (("VASPID", s.vasp_id), ("VASID", s.vas_id)) if v]
    if s.sender:
        # ShortCode for a short code and an alphanumeric mask alike: of the three address
        # forms (TS 23.140 SenderAddress) it is the one for a provisioned service sender,
        # with no form imposed on it; Number is read as an MSISDN, and RFC2822Address must
        # be an addr-spec (local@domain, RFC 2822 §3.4.1), which a mask such as `Acme` is not.
        ident.append(f"<SenderAddress>{_el('ShortCode', s.sender)}</SenderAddress>")
    if ident:
        out.append("<SenderIdentification>" + "".join(ident) + "</SenderIdentification>")
    out.append(f"<Recipients><To>{_numbers(s, s.recipients)}{_shown(s)}</To></Recipients>")
    optional = [
        ("ServiceCode", s.service_code),
        ("LinkedID", s.linked_id),
        (
            "ExpiryDate",
            s.expiry.astimezone(dt.UTC).isoformat(timespec="seconds") if s.expiry else None,
        ),
        ("DeliveryReport", "true" if s.delivery_report else "false"),
        ("Subject", s.subject),
    ]
    out += [_el(name, value) for name, value in optional if value is not None]
    adapt = (
        ""
        if s.allow_adaptations is None
        else f' allowAdaptations="{str(s.allow_adaptations).lower()}"'
    )
    out.append(f'<Content href="cid:mms-content"{adapt}/>')
    return out


def _numbers(s: Submit, numbers: Sequence[str], attributes: str = "") -> str:
    plus = "+" if s.e164_numbers else ""
    return "".join(
        f"<Number{attributes}>{xmlsafe.text(plus + n.lstrip('+'))}</Number>" for n in numbers
    )


def _shown(s: Submit) -> str:
    """The display-only members, after the real recipient in the same To: the group MMS
    form of TS 23.140 (the Annex example's To holds a Number and a displayOnly address).
    The MMSC lists them on the handset and delivers to none of them."""
    return _numbers(s, s.display_only, ' displayOnly="true"')


def _el(name: str, value: str | None) -> str:
    return f"<{name}>{xmlsafe.text(value or '')}</{name}>"


def _envelope(namespace: str, transaction_id: str, kind: str, children: list[str]) -> bytes:
    body = "".join(children)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<env:Envelope xmlns:env="{SOAP_NS}"><env:Header>'
        f'<mm7:TransactionID xmlns:mm7={quoteattr(namespace)} env:mustUnderstand="1">'
        f"{xmlsafe.text(transaction_id)}</mm7:TransactionID></env:Header>"
        f"<env:Body><{kind} xmlns={quoteattr(namespace)}>{body}</{kind}></env:Body></env:Envelope>"
    ).encode()


def encode_response(
    kind: str,
    transaction_id: str | None,
    *,
    status: int = 1000,
    text: str = "Success",
    version: str = DEFAULT_VERSION,
    namespace: str = DEFAULT_NAMESPACE,
    message_id: str | None = None,
) -> bytes:
    """A *Rsp envelope (DeliveryReportRsp, ReadReplyRsp, DeliverRsp, SubmitRsp)."""
    children = [
        _el("MM7Version", version),
        f"<Status>{_el('StatusCode', str(status))}{_el('StatusText', text)}</Status>",
    ]
    if message_id is not None:
        children.append(_el("MessageID", message_id))
    return _envelope(namespace, transaction_id or "", kind, children)


def encode_answer(incoming: Incoming) -> bytes:
    """The success response to a request, in its namespace and version."""
    op = incoming.operation
    kind = op.answer if op is not None else incoming.kind.removesuffix("Req") + "Rsp"
    return encode_response(
        kind,
        incoming.transaction_id,
        version=incoming.version or DEFAULT_VERSION,
        namespace=incoming.answer_namespace,
    )


def encode_fault_to(incoming: Incoming | None, code: int, text: str) -> bytes:
    """A fault answering `incoming` (None: a request unread), in its namespace and version."""
    if incoming is None:
        return encode_fault(None, code, text)
    return encode_fault(
        incoming.transaction_id,
        code,
        text,
        version=incoming.version or DEFAULT_VERSION,
        namespace=incoming.answer_namespace,
    )


def encode_delivery_report(
    message_id: str, number: str, status: str, handset: str | None, transaction_id: str
) -> bytes:
    """A DeliveryReportReq as MMSCs send them (recipient in Recipient/Number); `handset`,
    the retrieving handset's UAProf, goes in UACapabilities (TS 23.140 Rel-6)."""
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    children = [
        f"<MM7Version>{DEFAULT_VERSION}</MM7Version>",
        f"<MessageID>{message_id}</MessageID>",
        f"<Recipient><Number>{number}</Number></Recipient>",
        "<Sender><ShortCode>sim</ShortCode></Sender>",
        f"<Date>{now}</Date>",
        f"<MMStatus>{status}</MMStatus>",
    ]
    if handset is not None:
        children.append(f'<UACapabilities UAProf="{handset}" TimeStamp="{now}"/>')
    ns = DEFAULT_NAMESPACE
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<env:Envelope xmlns:env="{SOAP_NS}"><env:Header>'
        f'<mm7:TransactionID xmlns:mm7="{ns}" env:mustUnderstand="1">{transaction_id}'
        f'</mm7:TransactionID></env:Header><env:Body><DeliveryReportReq xmlns="{ns}">'
        + "".join(children)
        + "</DeliveryReportReq></env:Body></env:Envelope>"
    ).encode("utf-8")


def encode_fault(
    transaction_id: str | None,
    code: int,
    text: str,
    *,
    version: str = DEFAULT_VERSION,
    namespace: str = DEFAULT_NAMESPACE,
) -> bytes:
    """A SOAP Fault with an RSErrorRsp detail in the peer's namespace and version.
    Faults about the request itself (2xxx, 4003, 4004) are env:Client, the rest env:Server."""
    detail = encode_response(
        "RSErrorRsp", transaction_id, status=code, text=text, version=version, namespace=namespace
    )
    head, rest = detail.split(b"<env:Body>", 1)
    inner = rest.split(b"</env:Body>", 1)[0]
    faultcode = "env:Client" if 2000 <= code < 3000 or code in (4003, 4004) else "env:Server"
    return (
        head
        + f"<env:Body><env:Fault><faultcode>{faultcode}</faultcode>"
        f"<faultstring>{xmlsafe.text(text)}</faultstring><detail>".encode()
        + inner
        + b"</detail></env:Fault></env:Body></env:Envelope>"
    )


def parse_xml(data: bytes) -> ET.Element:
    """Parse XML with every DTD and entity refused, in the encoding it declares; element
    names become `uri}local`."""
    builder = ET.TreeBuilder()
    parser = xmlsafe.parser(namespace_separator="}")
    parser.StartElementHandler = builder.start
    parser.EndElementHandler = builder.end
    parser.CharacterDataHandler = builder.data
    try:
        xmlsafe.parse(parser, data)
    except expat.ExpatError as exc:
        raise Mm7FormatError(f"not well-formed XML: {expat.ErrorString(exc.code)}") from None
    except (xmlsafe.Refused, xmlsafe.Unreadable) as exc:
        raise Mm7FormatError(str(exc)) from None
    return builder.close()


def local(tag: str) -> str:
    tag = tag[tag.rfind("}") + 1 :]
    return tag[tag.rfind(":") + 1 :]


def _joined(element: ET.Element) -> str:
    return "".join(element.itertext()).strip()


_ADDRESSES = ("Number", "ShortCode", "RFC2822Address")  # how an address element holds it
_ADDRESS_FIELDS = frozenset({"Sender", "Recipients", "Recipient", "SenderAddress"})
# A phone number as MMSCs write it: `+447900000001`, `447900000001`, `tel:+447900000001` or
# the MMS address form `+447900000001/TYPE=PLMN` (OMA MMS encapsulation; RFC 3966 tel:).
_PHONE = re.compile(r"(?:tel:)?\+?([0-9]+)(?:/TYPE=PLMN)?", re.IGNORECASE)


def _address(text: str) -> str:
    """A phone number as digits (an e-mail address or a name is kept as written)."""
    found = _PHONE.fullmatch(text.strip())
    return found.group(1) if found else text


def _find(root: ET.Element, name: str) -> ET.Element | None:
    return next((e for e in root.iter() if local(e.tag) == name), None)


def _text(root: ET.Element | None, name: str) -> str | None:
    found = None if root is None else _find(root, name)
    return None if found is None else _joined(found)


def _body_element(envelope: ET.Element) -> ET.Element:
    body = _find(envelope, "Body")
    if body is None or len(body) == 0:
        raise Mm7FormatError("no SOAP Body")
    return body[0]


def decode_response(content_type: str, body: bytes) -> Response:
    """Read a response to our request by local names; a Fault may come with HTTP 200 or 500."""
    envelope = parse_xml(soap_part(content_type, body)[0])
    element = _body_element(envelope)
    transaction_id = _text(envelope, "TransactionID")
    if local(element.tag) == "Fault":
        detail = _find(element, "Status")
        code = _status_code(_text(detail, "StatusCode") if detail is not None else None)
        return Response(
            kind=local(element[-1][0].tag) if len(element) and len(element[-1]) else "Fault",
            transaction_id=transaction_id,
            status_code=4000 if code is None else code,
            status_text=_text(detail, "StatusText") or _text(element, "faultstring") or "",
            fault=_text(element, "faultcode"),
        )
    code = _status_code(_text(element, "StatusCode"))
    if code is None:
        raise Mm7FormatError(f"{local(element.tag)} without a numeric StatusCode")
    return Response(
        local(element.tag),
        transaction_id,
        code,
        _text(element, "StatusText") or "",
        message_id=_text(element, "MessageID"),
    )


def _status_code(text: str | None) -> int | None:
    """A StatusCode's value: four digits in TS 23.140 §8.4.2; ASCII digits only, bounded."""
    return None if text is None else numbers.decimal(text, STATUS_DIGITS)


def decode_request(content_type: str, body: bytes) -> Incoming:
    """Read a request from an MMSC (and the content parts of a DeliverReq)."""
    soap, rest = soap_part(content_type, body)
    envelope = parse_xml(soap)
    element = _body_element(envelope)
    fields = {}
    addressees: tuple[tuple[str, str], ...] = ()
    shown: list[str] = []
    for child in element:
        name = local(child.tag)
        if name == "Recipients":
            addressees = _addressees(child)
        within: dict[str, ET.Element] = {}  # the first element of each local name, in order
        for descendant in child.iter():
            if _display_only(descendant):
                shown.append(_address(_joined(descendant)))
                continue  # shown on the handset, never a recipient
            within.setdefault(local(descendant.tag), descendant)
        number = next(
            (text for key in _ADDRESSES if key in within and (text := _joined(within[key]))),
            None,
        )
        value = number if number is not None else _joined(child)
        fields[name] = _address(value) if number is not None or name in _ADDRESS_FIELDS else value
        if name == "Content":
            fields["Content"] = child.get("href", "")
        elif name == "UACapabilities":  # the handset's profile is an attribute
            fields[name] = (child.get("UAProf") or "").strip()
    ns = element.tag.split("}", 1)[0] if "}" in element.tag else None
    return Incoming(
        local(element.tag),
        _text(envelope, "TransactionID"),
        fields.get("MM7Version"),
        ns,
        fields,
        rest,
        addressees,
        tuple(shown),
    )


def _display_only(element: ET.Element) -> bool:
    """An address marked displayOnly="true" (Rel-6 group MMS; peers write `True` too)."""
    return any(
        local(key) == "displayOnly" and value.strip().lower() in ("true", "1")
        for key, value in element.attrib.items()
    )


def _addressees(recipients: ET.Element) -> tuple[tuple[str, str], ...]:
    """Each address a Recipients element lists, in document order, with the list it is in
    (`To`, `Cc`, `Bcc`; `To` for one written outside any list)."""
    found = []
    for child in recipients:
        if local(child.tag) in _ADDRESSES:
            found.append(("To", child))
        else:
            found += [(local(child.tag), e) for e in child if local(e.tag) in _ADDRESSES]
    return tuple((kind, _address(text)) for kind, e in found if (text := _joined(e)))


def soap_part(content_type: str, body: bytes) -> tuple[bytes, mime.Leaves]:
    """The SOAP envelope of a message, and the other leaf parts (type, bytes) if multipart
    (read by mime.root_and_leaves)."""
    try:
        return mime.root_and_leaves(content_type, body)
    except mime.MimeError as exc:
        raise Mm7FormatError(str(exc)) from None
