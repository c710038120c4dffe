"""What every HTML page mmsgate serves shares, the hosted pages (web/page.py) and the API's
/docs (api/docs_page.py): one Jinja2 set-up, and the headers that keep a page to itself."""

from __future__ import annotations

import jinja2


def templates(package: str) -> jinja2.Environment:
    """The templates under `package`'s `templates/` folder: autoescaped, tidy whitespace,
    and an error for any name a template uses that the page does not give it."""
    return jinja2.Environment(
        loader=jinja2.PackageLoader(package, "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )


def secure_headers(csp: str, cache: str) -> dict[str, str]:
    """Headers of an HTML answer: its Content-Security-Policy (what it may load), its
    caching, no type sniffing, and no referrer sent to the links it holds."""
    return {
        "Cache-Control": cache,
        "Content-Security-Policy": csp,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }
