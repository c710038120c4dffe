"""MM7 (3GPP TS 23.140) as bytes: SubmitReq out, responses and MMSC requests in.

SOAP 1.1 with attachments (multipart/related, the envelope first). Written in the schema's
element order (xs:sequence; TS 23.140 SubmitReq), read by local names only, since peers put
the MM7 namespace on a prefix, on a default xmlns, or nowhere. Spec spellings stay here; the
rest of mmsgate sees the dataclasses below. No DTD or entity is ever expanded.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as dt
import email.message
import email.parser
import email.policy
import enum
import re
import secrets
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from xml.parsers import expat
from xml.sax.saxutils import quoteattr

from mmsgate import errors, numbers, xmlsafe

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
    """A DeliverReq (MO): from whom, to which number ("" if absent), and its subject."""

    sender: str
    recipient: str
    subject: str | None


@dataclasses.dataclass(frozen=True, slots=True)
class SubmitRequest:
    """A SubmitReq as an MMSC reads it (the simulator): its version, first recipient and
    the reference to its content part ("" when absent)."""

    version: str
    recipient: str
    content_href: str


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
        return Deliver(f.get("Sender", ""), f.get("Recipients", ""), f.get("Subject"))

    @property
    def submit(self) -> SubmitRequest:
        f = self.fields
        return SubmitRequest(f.get("MM7Version", ""), f.get("Recipients", ""), f.get("Content", ""))

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
    inner = "mo-" + secrets.token_hex(12)
    lines: list[bytes] = []
    for n, (content_type, data) in enumerate(parts, start=1):
        head = f"--{inner}\r\nContent-Type: {content_type}\r\nContent-ID: <part{n}>\r\n"
        head += "Content-Transfer-Encoding: base64\r\n\r\n"
        lines.append(head.encode() + base64.encodebytes(data).replace(b"\n", b"\r\n"))
    content = b"".join(lines) + f"--{inner}--\r\n".encode()
    return _with_content(envelope, f'multipart/mixed; boundary="{inner}"', content, None)


def _with_content(
    envelope: bytes, content_type: str, content: bytes, boundary: str | None
) -> tuple[str, bytes]:
    """SOAP with attachments: the envelope first, then the content part (cid:mms-content).

    The content part carries only what it needs: its Content-Type and the Content-ID the
    envelope's href names. MMSCs turn its headers into the MMS's own, so anything more
    reaches the handset (an MMSC copied a `Content-Transfer-Encoding: 8bit` into the PDU
    as an application header). A multipart content needs no encoding header: a composite
    part may only be 7bit, 8bit or binary (RFC 2045 §6.4), HTTP does not use MIME's
    Content-Transfer-Encoding (RFC 7231 Appendix A.5), and its own parts say theirs. A
    single media part is base64, and says so."""
    boundary = boundary or "mm7-" + secrets.token_hex(12)
    head = [f"--{boundary}", 'Content-Type: text/xml; charset="utf-8"', "Content-ID: <soap>", ""]
    content_head = [f"--{boundary}", f"Content-Type: {content_type}", "Content-ID: <mms-content>"]
    if not content_type.lower().startswith("multipart/"):
        content = base64.encodebytes(content).replace(b"\n", b"\r\n")
        content_head.append("Content-Transfer-Encoding: base64")
    content_head.append("")
    body = (
        "\r\n".join(head).encode()
        + b"\r\n"
        + envelope
        + b"\r\n"
        + "\r\n".join(content_head).encode()
        + b"\r\n"
        + content.rstrip(b"\r\n")
        + f"\r\n--{boundary}--\r\n".encode()
    )
    header = f'multipart/related; boundary="{boundary}"; type="text/xml"; start="<soap>"'
    return header, body


def _submit_body(s: Submit) -> list[str]:
    """SubmitReq children in schema order (TS 23.140 SubmitReq xs:sequence)."""
    out = [_el("MM7Version", s.version)]
    ident = [_el(n, v) for n, v in (("VASPID", s.vasp_id), ("VASID", s.vas_id)) if v]
    if s.sender:
        ident.append(f"<SenderAddress>{_el('ShortCode', s.sender)}</SenderAddress>")
    if ident:
        out.append("<SenderIdentification>" + "".join(ident) + "</SenderIdentification>")
    plus = "+" if s.e164_numbers else ""
    numbers = "".join(_el("Number", plus + r.lstrip("+")) for r in s.recipients)
    out.append(f"<Recipients><To>{numbers}</To></Recipients>")
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
    for child in element:
        name = local(child.tag)
        within: dict[str, ET.Element] = {}  # the first element of each local name, in order
        for descendant in child.iter():
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
    )


def soap_part(content_type: str, body: bytes) -> tuple[bytes, tuple[tuple[str, bytes], ...]]:
    """The SOAP envelope of a message, and the other leaf parts (type, bytes) if multipart.

    A direct reader handles the MIME that MMSCs and mmsgate write (CRLF or bare LF lines,
    base64, quoted-printable or 8bit parts, nested multiparts); whatever it cannot read goes
    to the stdlib email parser, which is lenient but costs more than the rest of a request.
    """
    if not content_type.lower().startswith("multipart/"):
        return body, ()
    try:
        parts = _split_multipart(content_type, body)
        start = _params(content_type).get("start", "").strip("<>")
        soap = next(
            (p for p in parts if p.headers.get("content-id", "").strip("<>") == start), None
        )
        soap = soap or parts[0]
        leaves = tuple(leaf for p in parts if p is not soap for leaf in _leaves(p, 0))
        return soap.payload(), leaves
    except Mm7FormatError:
        return _soap_part_by_email(content_type, body)


@dataclasses.dataclass(frozen=True, slots=True)
class _Part:
    """One MIME body part: lower-cased header names, and its bytes as sent."""

    headers: dict[str, str]
    raw: bytes

    @property
    def content_type(self) -> str:
        value = self.headers.get("content-type", "text/plain")
        return value.split(";", 1)[0].strip().lower() or "text/plain"

    @property
    def leaf_type(self) -> str:
        """The type with its charset, the one parameter a text part cannot be read without."""
        return with_charset(self.content_type, _params(self.headers.get("content-type", "")))

    def payload(self) -> bytes:
        """The bytes with the transfer encoding (RFC 2045 §6) undone."""
        encoding = self.headers.get("content-transfer-encoding", "").strip().lower()
        try:
            if encoding == "base64":
                return binascii.a2b_base64(self.raw)
            if encoding == "quoted-printable":
                return binascii.a2b_qp(self.raw)
        except binascii.Error as exc:
            raise Mm7FormatError(f"bad {encoding} part: {exc}") from None
        return self.raw


def _leaves(part: _Part, depth: int) -> list[tuple[str, bytes]]:
    if not part.content_type.startswith("multipart/"):
        return [(part.leaf_type, part.payload())]
    if depth > 8:
        raise Mm7FormatError("multipart nested too deep")
    inner = _split_multipart(part.headers.get("content-type", ""), part.payload())
    return [leaf for p in inner for leaf in _leaves(p, depth + 1)]


def _split_multipart(content_type: str, body: bytes) -> list[_Part]:
    """The body parts of a multipart body (RFC 2046 §5.1.1), preamble and epilogue dropped."""
    boundary = _params(content_type).get("boundary", "")
    if not boundary:
        raise Mm7FormatError("multipart without a boundary")
    pieces = (b"\n" + body).split(b"\n--" + boundary.encode("latin-1"))
    parts: list[_Part] = []
    for piece in pieces[1:]:
        if piece.startswith(b"--"):  # the close delimiter: the epilogue follows
            break
        line_end = piece.find(b"\n")
        if line_end < 0 or piece[:line_end].strip():
            raise Mm7FormatError("boundary inside a line")
        text = piece[line_end + 1 :]
        text = text[:-1] if text.endswith(b"\r") else text  # the CR of the delimiter's CRLF
        head, blank, raw = _head_and_body(text)
        if not blank:
            raise Mm7FormatError("body part without a header end")
        parts.append(_Part(_headers(head), raw))
    else:
        raise Mm7FormatError("multipart body without its close delimiter")
    if not parts:
        raise Mm7FormatError("multipart body without parts")
    return parts


def _head_and_body(text: bytes) -> tuple[bytes, bool, bytes]:
    if text.startswith((b"\r\n", b"\n")):  # no headers at all
        return b"", True, text[2 if text.startswith(b"\r") else 1 :]
    crlf = text.find(b"\r\n\r\n")
    # A bare-LF header end can only come first if it lies before the CRLF one: searching
    # no further spares a scan of the whole body (a part is mostly body).
    lf = text.find(b"\n\n", 0, crlf) if crlf >= 0 else text.find(b"\n\n")
    if crlf >= 0 and (lf < 0 or crlf < lf):
        return text[:crlf], True, text[crlf + 4 :]
    if lf >= 0:
        return text[:lf], True, text[lf + 2 :]
    return text, False, b""


def _headers(head: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    name = ""
    for line in head.decode("latin-1").replace("\r\n", "\n").split("\n"):
        if line[:1] in (" ", "\t") and name:  # a folded continuation (RFC 5322 §2.2.3)
            headers[name] += " " + line.strip()
            continue
        key, colon, value = line.partition(":")
        if not colon:
            raise Mm7FormatError(f"bad header line in a body part: {line[:60]!r}")
        name = key.strip().lower()
        headers.setdefault(name, value.strip())
    return headers


_QUOTED_PAIR = re.compile(r"\\(.)")
_PARAM = re.compile(r';\s*([^=\s;]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)')


def _params(header: str) -> dict[str, str]:
    """The parameters of a Content-Type value, names lower-cased, quotes removed."""
    found = {}
    for name, value in _PARAM.findall(header):
        value = value.strip()
        if value.startswith('"'):
            value = value[1:-1]
            if "\\" in value:  # a quoted-pair (RFC 2045 via RFC 822): rare, so checked first
                value = _QUOTED_PAIR.sub(r"\1", value)
        found[name.lower()] = value
    return found


_CHARSET = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+-]{0,39}")  # RFC 2978 §2.3 names, bounded


def with_charset(content_type: str, params: dict[str, str]) -> str:
    """`text/plain; charset=utf-8`: a leaf part's type keeps its charset (RFC 2046 §4.1.2),
    lower-cased; other parameters, and a charset that is not a plain name, are dropped."""
    charset = params.get("charset", "")
    if not _CHARSET.fullmatch(charset):
        return content_type
    return f"{content_type}; charset={charset.lower()}"


def _soap_part_by_email(
    content_type: str, body: bytes
) -> tuple[bytes, tuple[tuple[str, bytes], ...]]:
    header = f"Content-Type: {content_type}\r\n\r\n".encode("latin-1")
    # compat32: the modern policy's header objects cost more than the rest of the request.
    message = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(header + body)
    if not message.is_multipart():
        raise Mm7FormatError("multipart body without parts")
    start = str(message.get_param("start") or "").strip("<>")
    parts = [p for p in message.get_payload() if isinstance(p, email.message.Message)]
    if not parts:
        raise Mm7FormatError("multipart body without parts")
    soap = next((p for p in parts if str(p.get("Content-ID", "")).strip("<>") == start), parts[0])
    leaves = tuple(
        (
            with_charset(leaf.get_content_type(), {"charset": leaf.get_content_charset() or ""}),
            bytes(leaf.get_payload(decode=True) or b""),
        )
        for p in parts
        if p is not soap
        for leaf in p.walk()
        if not leaf.is_multipart()
    )
    return bytes(soap.get_payload(decode=True) or b""), leaves
