"""One way to read untrusted XML: expat with every DTD and entity declaration refused.

A document type declaration stops the parse before any entity exists, so billion-laughs and
XXE never expand; parameter entities are never parsed and no external entity is loaded.

A document is read in the encoding its XML declaration names (XML 1.0 §4.3.3). expat reads
UTF-8, UTF-16 and ISO-8859-1 (with US-ASCII) itself, and pyexpat lends it Python's codecs
only for one-byte encodings: a declared `Shift_JIS`, `GBK` or `utf-32` made it raise a bare
ValueError, and an unknown name a LookupError. So `parse` decodes every other declared
encoding with Python's codecs first, and refuses (Unreadable) a name Python does not know or
bytes that are not in the encoding declared.
"""

from __future__ import annotations

import codecs
import re
from xml.parsers import expat
from xml.sax.saxutils import escape as _escape

from mmsgate import errors


class Refused(errors.MmsgateError, ValueError):
    """The document declares a DTD or an entity."""


class Unreadable(errors.MmsgateError, ValueError):
    """The document names an encoding Python does not know, or is not in the one it names."""


# The names expat decodes itself (expat's xmltok.c), compared case-insensitively.
EXPAT_ENCODINGS = frozenset({"utf-8", "utf-16", "utf-16be", "utf-16le", "iso-8859-1", "us-ascii"})
# How the first bytes tell the encoding family before the declaration is read (XML 1.0
# Appendix F.1): byte order marks first, then `<?` in UTF-32 and UTF-16 without one.
_FAMILIES = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
    (b"<\0\0\0", "utf-32-le"),
    (b"\0\0\0<", "utf-32-be"),
    (b"<\0?\0", "utf-16-le"),
    (b"\0<\0?", "utf-16-be"),
)
# The XML declaration up to its encoding (XML 1.0 §2.8 XMLDecl, §4.3.3 EncodingDecl); its
# white space is XML's own, and values are as loose as expat's, so expat never reads a
# declared name that this does not.
_DECLARED = re.compile(
    r"<\?xml[ \t\r\n]+version[ \t\r\n]*=[ \t\r\n]*([\"'])[^\"']*\1"
    r"[ \t\r\n]+encoding[ \t\r\n]*=[ \t\r\n]*([\"'])([^\"']*)\2"
)
_DECLARATION_BYTES = 512  # the declaration is at the start; its encoding name comes early


def _refuse_doctype(*_args: object) -> None:
    raise Refused("document type declarations are not allowed")


def _refuse_entity(*_args: object) -> None:
    raise Refused("entity declarations are not allowed")


def parser(namespace_separator: str | None = None) -> expat.XMLParserType:
    """A hardened expat parser; the caller sets the element and character handlers."""
    created = expat.ParserCreate(namespace_separator=namespace_separator)
    created.buffer_text = True
    created.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    created.StartDoctypeDeclHandler = _refuse_doctype
    created.EntityDeclHandler = _refuse_entity
    return created


def parse(created: expat.XMLParserType, data: bytes) -> None:
    """Parse the whole document `data` with `created` (a parser from `parser`), in the
    encoding it declares. Raises expat.ExpatError, Refused or Unreadable."""
    created.Parse(readable(data), True)


def readable(data: bytes) -> bytes | str:
    """`data` as expat can take it: the bytes, when expat decodes their encoding itself;
    else the text decoded here (pyexpat then reads it as UTF-8, whatever it declares)."""
    family = next((name for mark, name in _FAMILIES if data.startswith(mark)), "iso-8859-1")
    head = data[:_DECLARATION_BYTES].decode(family, "ignore")
    found = _DECLARED.match(head.removeprefix("\ufeff"))
    declared = found.group(3) if found else None
    if declared is None:
        # expat reads no UTF-32 at all, even with a byte order mark.
        return _decoded(data, family) if family.startswith("utf-32") else data
    return data if declared.lower() in EXPAT_ENCODINGS else _decoded(data, declared)


def _decoded(data: bytes, encoding: str) -> str:
    try:
        return data.decode(encoding)
    except LookupError:  # also a codec that is not a text encoding (rot13, base64)
        raise Unreadable(f"unknown encoding '{encoding[:40]}'") from None
    except ValueError as exc:  # UnicodeError, or a codec refusing what it was given
        raise Unreadable(f"the document is not {encoding[:40]}: {str(exc)[:120]}") from None


# Characters XML 1.0 cannot carry at all, escaped or not (§2.2 Char): C0 controls but tab,
# LF and CR; lone surrogates; U+FFFE and U+FFFF.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def text(value: str) -> str:
    """`value` as XML character data: escaped, and each character XML cannot carry (an
    echoed NUL from a client's input) replaced by U+FFFD, so an answer is always XML."""
    return _escape(_NOT_XML.sub("\ufffd", value))
