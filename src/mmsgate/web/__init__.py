"""What recipients' phones reach: the hosted page of an SMS-with-link fallback (`/m/{token}`)
and the media behind it and behind MO content URLs (`/media/{token}/{n}`).

`page` renders the page (Jinja2 templates under `templates/`, no JavaScript); `parts` serves
the media bytes with caching and byte ranges. Both read through `store` only; neither knows
the pipeline or the carriers, and neither needs an API key: the token in the URL is the key.
"""

from __future__ import annotations
