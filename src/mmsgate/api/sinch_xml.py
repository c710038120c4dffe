"""The Sinch XML dialect: hardened parsing into a neutral tree, and response rendering.

Parsing is lenient the way real clients need: tag names are case-insensitive, `_` and `-`
are the same, Skycore 1.3 upper-case tags and the older spellings (`api_key`, `operatorid`,
`subject`, `text`, `mmsid`, ...) map onto the current Sinch names, and the 2013 legacy
`<CONTENT><SEQUENCE><SLIDE duration="5">` layout is flattened. Responses always use the
current lower-case Sinch names. Spec spellings stay in this module.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from xml.etree.ElementTree import Element, ParseError
from xml.sax.saxutils import escape

import defusedxml
import defusedxml.ElementTree

from mmsgate import codes, errors

# Older and Skycore spellings → the current Sinch element names.
ALIASES = {
    "apikey": "api-key",
    "api-key": "api-key",
    "operatorid": "operator-id",
    "subject": "message-subject",
    "text": "message-text",
    "mmsid": "mms-id",
    "customtext": "custom-text",
    "customsubject": "custom-subject",
    "customtitle": "custom-subject",
    "fallbacksmstext": "fallback-sms-text",
    "disablefallbacksms": "disable-fallback-sms",
    "disablefallbacksmslink": "disable-fallback-sms-link",
    "fallbacksmslinkexpiration": "fallback-sms-link-expiration",
    "campaignref": "campaign-ref",
    "serviceid": "service-id",
    "ddmtitle": "ddm-message-subject",
    "ddmtext": "ddm-message-text",
    "ddmtimeout": "ddm-message-timeout",
    "ddmforce": "ddm-force",
    "startdate": "start-date",
    "pagenumber": "page-number",
    "itemsperpage": "items-per-page",
    "clientreference": "client-reference",
    "mmsexpirytimestamp": "mms-expiry-timestamp",
}
# Wrappers of the 2013 legacy layout whose children belong to the parent.
TRANSPARENT = {"content", "sequence"}


@dataclasses.dataclass(slots=True)
class Node:
    """One element of a request, with its name normalised."""

    name: str
    text: str = ""
    children: list[Node] = dataclasses.field(default_factory=list)
    tag: str = ""  # the element's own local name, for free-form children such as <data>

    def first(self, name: str) -> Node | None:
        return next((c for c in self.children if c.name == name), None)

    def all(self, name: str) -> list[Node]:
        return [c for c in self.children if c.name == name]

    def value(self, name: str) -> str | None:
        """The stripped text of the first child called `name`, or None when absent."""
        child = self.first(name)
        return None if child is None else child.text


def normalize_name(tag: str) -> str:
    name = tag.rsplit("}", 1)[-1].strip().lower().replace("_", "-")
    return ALIASES.get(name, ALIASES.get(name.replace("-", ""), name))


def parse(body: bytes, max_depth: int) -> Node:
    """Parse a request document; E108 for anything that is not plain, well-formed XML.

    DTDs, entity declarations and external references are refused outright (defusedxml),
    which stops billion-laughs and XXE before any expansion happens.
    """
    try:
        root = defusedxml.ElementTree.fromstring(
            body, forbid_dtd=True, forbid_entities=True, forbid_external=True
        )
    except defusedxml.DTDForbidden:
        raise _bad_xml("document type declarations are not allowed") from None
    except (defusedxml.EntitiesForbidden, defusedxml.ExternalReferenceForbidden):
        raise _bad_xml("entity declarations and external references are not allowed") from None
    except (ParseError, ValueError) as exc:
        raise _bad_xml(str(exc).split(":")[0]) from None
    node = _convert(root, max_depth, 1)
    if node.name not in ("request",):
        raise errors.ApiError(
            codes.ErrorCode.INVALID_REQUEST,
            f"Invalid request: the root element must be <request>, not <{root.tag}>",
        )
    return node


def _bad_xml(reason: str) -> errors.ApiError:
    return errors.ApiError(codes.ErrorCode.BAD_XML, f"Invalid XML: {reason}")


def _convert(element: Element, max_depth: int, depth: int) -> Node:
    if depth > max_depth:
        raise _bad_xml(f"elements nested deeper than {max_depth} levels")
    local = element.tag.rsplit("}", 1)[-1]
    node = Node(normalize_name(local), (element.text or "").strip(), tag=local)
    for attribute, value in element.attrib.items():
        node.children.append(Node(normalize_name(attribute), value.strip(), tag=attribute))
    for child in element:
        converted = _convert(child, max_depth, depth + 1)
        if converted.name in TRANSPARENT:
            node.children.extend(converted.children)
        else:
            node.children.append(converted)
    return node


Field = tuple[str, "str | Sequence[Field]"]


def render(fields: Sequence[Field]) -> bytes:
    """Render a `<response>` with the given (name, text or nested fields) in order."""
    lines = ["<response>"]
    _render_into(lines, fields, "    ")
    lines.append("</response>")
    return ("\n".join(lines) + "\n").encode("utf-8")


def _render_into(lines: list[str], fields: Sequence[Field], indent: str) -> None:
    for name, value in fields:
        if isinstance(value, str):
            lines.append(f"{indent}<{name}>{escape(value)}</{name}>")
        else:
            lines.append(f"{indent}<{name}>")
            _render_into(lines, value, indent + "    ")
            lines.append(f"{indent}</{name}>")


def failure(error: errors.ApiError, to: str | None = None) -> bytes:
    """The Failure response: status, error-code, (to), error-info, in Sinch's order."""
    fields: list[Field] = [("status", "Failure"), ("error-code", error.code.value)]
    if to is not None:
        fields.append(("to", to))
    fields.append(("error-info", error.info))
    return render(fields)
