"""The Sinch XML dialect: hardened parsing into a neutral tree, and the answers: an
action's result (api/results.py) or a refusal (errors.ApiError) rendered as `<response>`.

Parsing is lenient the way real clients need: tag names are case-insensitive, `_` and `-`
are the same, Skycore 1.3 upper-case tags and the older spellings (`api_key`, `operatorid`,
`subject`, `text`, `mmsid`, ...) map onto the current Sinch names, and the 2013 legacy
`<CONTENT><SEQUENCE><SLIDE duration="5">` layout is flattened. Responses always use the
current lower-case Sinch names. Spec spellings stay in this module.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from xml.parsers import expat

from mmsgate import codes, errors, models, xmlsafe
from mmsgate.api import results

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
    "frommask": "from-mask",  # Skycore FROM_MASK arrives as from-mask already
    "todisplayonly": "to-displayonly",
    "cachecontent": "cache-content",
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
    """Parse a request document; E108 for anything that is not plain, well-formed XML in
    an encoding it declares (or UTF-8), known to Python.

    expat is driven directly: a document type declaration stops the parse at once, before
    any entity is declared, so billion-laughs and XXE never expand; no external entity is
    ever loaded. The tree is built in the same pass, with names normalised.
    """
    builder = _Builder(max_depth)
    parser = xmlsafe.parser()
    parser.StartElementHandler = builder.start
    parser.EndElementHandler = builder.end
    parser.CharacterDataHandler = builder.data
    try:
        xmlsafe.parse(parser, body)
    except expat.ExpatError as exc:
        raise _bad_xml(expat.ErrorString(exc.code)) from None
    except (xmlsafe.Refused, xmlsafe.Unreadable) as exc:
        raise _bad_xml(str(exc)) from None
    root = builder.root
    if root is None or root.name != "request":
        tag = root.tag if root is not None else ""
        raise errors.ApiError(
            codes.ErrorCode.INVALID_REQUEST,
            f"Invalid request: the root element must be <request>, not <{tag}>",
        )
    return root


def _bad_xml(reason: str) -> errors.ApiError:
    return errors.ApiError(codes.ErrorCode.BAD_XML, f"Invalid XML: {reason}")


class _Builder:
    """expat callbacks that build the Node tree; raising inside one aborts the parse."""

    def __init__(self, max_depth: int) -> None:
        self.max_depth = max_depth
        self.root: Node | None = None
        self.stack: list[Node] = []
        self.text: list[list[str]] = []

    def start(self, tag: str, attributes: dict[str, str]) -> None:
        if len(self.stack) >= self.max_depth:
            raise _bad_xml(f"elements nested deeper than {self.max_depth} levels")
        local = tag.rsplit("}", 1)[-1].rsplit(":", 1)[-1]
        node = Node(normalize_name(local), tag=local)
        for name, value in attributes.items():
            node.children.append(Node(normalize_name(name), value.strip(), tag=name))
        if self.stack:
            self.stack[-1].children.append(node)
        else:
            self.root = node
        self.stack.append(node)
        self.text.append([])

    def data(self, text: str) -> None:
        self.text[-1].append(text)

    def end(self, _tag: str) -> None:
        node = self.stack.pop()
        node.text = "".join(self.text.pop()).strip()
        if node.name in TRANSPARENT and self.stack:
            # The 2013 wrappers: their children belong to the parent, in place.
            siblings = self.stack[-1].children
            siblings.pop()
            siblings.extend(node.children)


Field = tuple[str, "str | Sequence[Field]"]


def answer(result: results.Result) -> bytes:
    """The Success `<response>` of an action's result."""
    return render(fields(result))


def fields(result: results.Result) -> list[Field]:
    """An action's result as Sinch's (name, value) fields, in the order its answer lists them."""
    match result:
        case results.Sent():
            return _sent(result)
        case results.Saved(mms_id) | results.Deleted(mms_id):
            return [("status", "Success"), ("mms-id", str(mms_id))]
        case results.Templates():
            return _templates(result)


def _sent(sent: results.Sent) -> list[Field]:
    """The seed's shape for one number, `<sending>` blocks for a list."""
    if not sent.is_list:
        (number,) = sent.numbers
        assert isinstance(number, results.Accepted)  # a lone refused number is a Failure
        fields: list[Field] = [("status", "Success"), ("to", number.to)]
        if sent.sender is not None:
            fields.append(("from", sent.sender))
        return [
            *fields,
            ("mms-id", str(sent.mms_id)),
            ("tracking-id", number.tracking_id),
            ("status-details", sent.details),
        ]
    return [
        ("status", "Success"),
        ("mms-id", str(sent.mms_id)),
        *(("sending", _sending(n)) for n in sent.numbers),
    ]


def _sending(number: results.Accepted | results.Refused) -> list[Field]:
    if isinstance(number, results.Accepted):
        return [("to", number.to), ("tracking-id", number.tracking_id)]
    return [
        ("to", number.to),
        ("error-code", number.error.code.value),
        ("error-info", number.error.info),
    ]


def _templates(page: results.Templates) -> list[Field]:
    return [
        ("status", "Success"),
        ("start-date", page.start_date.isoformat() if page.start_date else ""),
        ("page-number", str(page.page)),
        ("items-per-page", str(page.per_page)),
        ("total-results", str(page.total)),
        *(("mms-template", _template(t)) for t in page.templates),
    ]


def _template(t: models.TemplateInfo) -> list[Field]:
    return [
        ("mms-id", str(t.id)),
        ("mms-name", t.name),
        ("mms-subject", t.subject or ""),
        ("date-created", t.created_at.isoformat(timespec="seconds")),
        ("total-slides", str(t.slide_count)),
        ("mms-size", str(t.total_size)),
    ]


def render(fields: Sequence[Field]) -> bytes:
    """Render a `<response>` with the given (name, text or nested fields) in order."""
    lines = ["<response>"]
    _render_into(lines, fields, "    ")
    lines.append("</response>")
    return ("\n".join(lines) + "\n").encode("utf-8")


def _render_into(lines: list[str], fields: Sequence[Field], indent: str) -> None:
    for name, value in fields:
        if isinstance(value, str):
            lines.append(f"{indent}<{name}>{xmlsafe.text(value)}</{name}>")
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
