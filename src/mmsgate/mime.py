"""MIME multipart (RFC 2045, 2046) as bytes: the multipart/related and multipart/mixed
bodies mmsgate writes, and a reader for those MMSCs write.

Nothing here knows MM7: mm7_codec puts its SOAP envelope and content into these bodies and
takes them out again (SOAP 1.1 with attachments).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import email.message
import email.parser
import email.policy
import re
from collections.abc import Sequence

from mmsgate import errors

Leaves = tuple[tuple[str, bytes], ...]  # (content type with charset, bytes) of leaf parts
MAX_NESTING = 8


class MimeError(errors.MmsgateError, ValueError):
    """Bytes that are not a readable multipart body; the message says what is wrong."""


@dataclasses.dataclass(frozen=True, slots=True)
class Attachment:
    """A body part to write: its type, the Content-ID others name it by, and its bytes."""

    content_type: str
    content_id: str
    data: bytes


def related(root: Attachment, content: Attachment, boundary: str) -> tuple[str, bytes]:
    """The Content-Type and body of a multipart/related (RFC 2387): `root` first, then
    `content`.

    The content part carries only what it needs: its Content-Type and Content-ID. MMSCs turn
    its headers into the MMS's own, so anything more reaches the handset (an MMSC copied a
    `Content-Transfer-Encoding: 8bit` into the PDU as an application header). A multipart
    content needs no encoding header: a composite part may only be 7bit, 8bit or binary
    (RFC 2045 §6.4), HTTP does not use MIME's Content-Transfer-Encoding (RFC 7231 Appendix
    A.5), and its own parts say theirs. A single media part is base64, and says so."""
    data = content.data
    head = [
        f"--{boundary}",
        f"Content-Type: {root.content_type}",
        f"Content-ID: <{root.content_id}>",
        "",
    ]
    content_head = [
        f"--{boundary}",
        f"Content-Type: {content.content_type}",
        f"Content-ID: <{content.content_id}>",
    ]
    if not content.content_type.lower().startswith("multipart/"):
        data = base64.encodebytes(data).replace(b"\n", b"\r\n")
        content_head.append("Content-Transfer-Encoding: base64")
    content_head.append("")
    body = (
        "\r\n".join(head).encode()
        + b"\r\n"
        + root.data
        + b"\r\n"
        + "\r\n".join(content_head).encode()
        + b"\r\n"
        + data.rstrip(b"\r\n")
        + f"\r\n--{boundary}--\r\n".encode()
    )
    root_type = root.content_type.split(";", 1)[0]
    header = (
        f'multipart/related; boundary="{boundary}"; type="{root_type}"; start="<{root.content_id}>"'
    )
    return header, body


def mixed(parts: Sequence[tuple[str, bytes]], boundary: str) -> tuple[str, bytes]:
    """The Content-Type and body of a multipart/mixed of `parts` (type, bytes), each base64
    with Content-ID `<partN>` from 1."""
    lines: list[bytes] = []
    for n, (content_type, data) in enumerate(parts, start=1):
        head = f"--{boundary}\r\nContent-Type: {content_type}\r\nContent-ID: <part{n}>\r\n"
        head += "Content-Transfer-Encoding: base64\r\n\r\n"
        lines.append(head.encode() + base64.encodebytes(data).replace(b"\n", b"\r\n"))
    content = b"".join(lines) + f"--{boundary}--\r\n".encode()
    return f'multipart/mixed; boundary="{boundary}"', content


def root_and_leaves(content_type: str, body: bytes) -> tuple[bytes, Leaves]:
    """The root part of a multipart body (the one its `start` names, else the first), and
    the other leaf parts (type, bytes), nested multiparts flattened; a body that is not
    multipart is its own root.

    A direct reader handles the MIME that MMSCs and mmsgate write (CRLF or bare LF lines,
    base64, quoted-printable or 8bit parts, nested multiparts); whatever it cannot read goes
    to the stdlib email parser, which is lenient but costs more than the rest of a request.
    Raises MimeError for a body neither can read.
    """
    if not content_type.lower().startswith("multipart/"):
        return body, ()
    try:
        parts = split_multipart(content_type, body)
        start = _params(content_type).get("start", "").strip("<>")
        root = next(
            (p for p in parts if p.headers.get("content-id", "").strip("<>") == start), None
        )
        root = root or parts[0]
        leaves = tuple(leaf for p in parts if p is not root for leaf in _leaves(p, 0))
        return root.payload(), leaves
    except MimeError:
        return read_by_email(content_type, body)


@dataclasses.dataclass(frozen=True, slots=True)
class Part:
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
            raise MimeError(f"bad {encoding} part: {exc}") from None
        return self.raw


def _leaves(part: Part, depth: int) -> list[tuple[str, bytes]]:
    if not part.content_type.startswith("multipart/"):
        return [(part.leaf_type, part.payload())]
    if depth > MAX_NESTING:
        raise MimeError("multipart nested too deep")
    inner = split_multipart(part.headers.get("content-type", ""), part.payload())
    return [leaf for p in inner for leaf in _leaves(p, depth + 1)]


def split_multipart(content_type: str, body: bytes) -> list[Part]:
    """The body parts of a multipart body (RFC 2046 §5.1.1), preamble and epilogue dropped."""
    boundary = _params(content_type).get("boundary", "")
    if not boundary:
        raise MimeError("multipart without a boundary")
    pieces = (b"\n" + body).split(b"\n--" + boundary.encode("latin-1"))
    parts: list[Part] = []
    for piece in pieces[1:]:
        if piece.startswith(b"--"):  # the close delimiter: the epilogue follows
            break
        line_end = piece.find(b"\n")
        if line_end < 0 or piece[:line_end].strip():
            raise MimeError("boundary inside a line")
        text = piece[line_end + 1 :]
        text = text[:-1] if text.endswith(b"\r") else text  # the CR of the delimiter's CRLF
        head, blank, raw = _head_and_body(text)
        if not blank:
            raise MimeError("body part without a header end")
        parts.append(Part(_headers(head), raw))
    else:
        raise MimeError("multipart body without its close delimiter")
    if not parts:
        raise MimeError("multipart body without parts")
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
            raise MimeError(f"bad header line in a body part: {line[:60]!r}")
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


def read_by_email(content_type: str, body: bytes) -> tuple[bytes, Leaves]:
    """root_and_leaves by the stdlib email parser: lenient, and slow."""
    header = f"Content-Type: {content_type}\r\n\r\n".encode("latin-1")
    # compat32: the modern policy's header objects cost more than the rest of the request.
    message = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(header + body)
    if not message.is_multipart():
        raise MimeError("multipart body without parts")
    start = str(message.get_param("start") or "").strip("<>")
    parts = [p for p in message.get_payload() if isinstance(p, email.message.Message)]
    if not parts:
        raise MimeError("multipart body without parts")
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
