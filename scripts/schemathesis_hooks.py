"""schemathesis hooks for mmsgate (loaded by scripts/schemathesis through SCHEMATHESIS_HOOKS).

An `application/xml` body whose schema is a string is the XML document itself (the
/v1/preview request): send it as it is, rather than wrapped in a `<data>` element as
schemathesis writes XML for a string, so the document's example reaches the route whole.
"""

from __future__ import annotations

import schemathesis


@schemathesis.serializer("application/xml")
def xml_document(_ctx: schemathesis.SerializationContext, value: object) -> bytes:
    if isinstance(value, bytes):
        return value
    return str(value).encode("utf-8")
