"""One way to read untrusted XML: expat with every DTD and entity declaration refused.

A document type declaration stops the parse before any entity exists, so billion-laughs and
XXE never expand; parameter entities are never parsed and no external entity is loaded.
"""

from __future__ import annotations

from xml.parsers import expat


class Refused(ValueError):
    """The document declares a DTD or an entity."""


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
