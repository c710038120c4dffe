"""mmsgate: a self-hostable MMS platform that speaks the Sinch MMS API."""

from __future__ import annotations

__version__ = "0.1.0"
