"""GET /docs: the OpenAPI document as one page for people, rendered on the server.

No script and no stylesheet from anywhere else: the page is its HTML and an inline style,
and its Content-Security-Policy allows nothing more. Each operation lists its parameters,
its request body and its answers; each schema is a table of its properties, every type
written out in words with a link to the schema it names.
"""

from __future__ import annotations

import dataclasses
import functools

import jinja2
from markupsafe import Markup, escape

from mmsgate.api.openapi import Json
from mmsgate.web import html

CSP = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"
# Built once at start: caches are told to ask again, so a new version shows at once.
HEADERS = html.secure_headers(CSP, "no-cache")
_REF = "#/components/schemas/"


@dataclasses.dataclass(frozen=True, slots=True)
class Row:
    """One line of a table: a name, its type in words, whether required, what it is."""

    name: str
    kind: Markup
    required: bool
    description: str


def render(document: Json) -> str:
    """The page for `document`."""
    components = _dict(_dict(document.get("components")).get("schemas"))
    operations = [
        _operation(path, method, _dict(entry))
        for path, methods in _dict(document.get("paths")).items()
        for method, entry in _dict(methods).items()
    ]
    schemas = {name: _properties(_dict(schema)) for name, schema in sorted(components.items())}
    return (
        _environment()
        .get_template("docs.html")
        .render(
            info=_dict(document.get("info")),
            operations=operations,
            schemas=schemas,
            described={n: str(_dict(s).get("description", "")) for n, s in components.items()},
        )
    )


def _operation(path: str, method: str, entry: Json) -> Json:
    parameters = [
        Row(
            f"{p.get('name')} ({p.get('in')})",
            kind_of(_dict(p.get("schema"))),
            bool(p.get("required")),
            str(p.get("description", "")),
        )
        for p in map(_dict, _list(entry.get("parameters")))
    ]
    body = _dict(entry.get("requestBody"))
    bodies = [
        (media, kind_of(_dict(_dict(c).get("schema"))), _dict(c).get("example"))
        for media, c in _dict(body.get("content")).items()
    ]
    answers = [
        (
            code,
            str(_dict(a).get("description", "")),
            [
                kind_of(_dict(_dict(c).get("schema")))
                for c in _dict(_dict(a).get("content")).values()
            ],
        )
        for code, a in _dict(entry.get("responses")).items()
    ]
    return {
        "method": method.upper(),
        "path": path,
        "id": entry.get("operationId"),
        "summary": entry.get("summary"),
        "description": entry.get("description"),
        "secured": bool(entry.get("security")),
        "parameters": parameters,
        "body": bodies,
        "body_description": body.get("description"),
        "answers": answers,
    }


def _properties(schema: Json) -> list[Row]:
    required = set(map(str, _list(schema.get("required"))))
    if schema.get("type") != "object":
        return [Row("(value)", kind_of(schema), True, "")]
    return [
        Row(name, kind_of(_dict(p)), name in required, str(_dict(p).get("description", "")))
        for name, p in _dict(schema.get("properties")).items()
    ]


def kind_of(schema: Json) -> Markup:
    """A schema's type in words, each schema it names linked to that schema's table:
    `string (pattern …)`, `array of MessageItem`, `FallbackInfo or null`."""
    if "$ref" in schema:
        name = str(schema["$ref"]).removeprefix(_REF)
        return Markup('<a href="#schema-{0}">{0}</a>').format(name)
    if "anyOf" in schema:
        return Markup(" or ").join(kind_of(_dict(s)) for s in _list(schema["anyOf"]))
    if "enum" in schema:
        return escape("one of " + ", ".join(map(str, _list(schema["enum"]))))
    kind = escape(str(schema.get("type", "any")))
    if kind == "array":
        kind = Markup("array of ") + kind_of(_dict(schema.get("items")))
    if kind == "object" and "additionalProperties" in schema:
        kind = Markup("map of name to ") + kind_of(_dict(schema["additionalProperties"]))
    limits = [f"{word} {schema[key]}" for key, word in _LIMITS if key in schema]
    return kind + (escape(f" ({', '.join(limits)})") if limits else Markup())


_LIMITS = (
    ("format", "format"),
    ("minimum", "at least"),
    ("maximum", "at most"),
    ("minLength", "length at least"),
    ("maxLength", "length at most"),
    ("pattern", "pattern"),
    ("const", "always"),
)


def _dict(value: object) -> Json:
    return value if isinstance(value, dict) else {}


def _list(value: object) -> list[object]:
    return value if isinstance(value, list) else []


@functools.cache
def _environment() -> jinja2.Environment:
    return html.templates("mmsgate.api")
