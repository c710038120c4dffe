"""What a query gives back before the store turns it into a dataclass of the vocabulary.

Only the store's own conversion functions see one: each shape has one function that reads a
row into its frozen dataclass (`deliveries.delivery_of`, `fallbacks.sms_fallback_of`, ...),
so no caller of the store sees a row.
"""

from __future__ import annotations

from typing import Any, Protocol


class Row(Protocol):
    """A result row (a SQLAlchemy `Row`, or a hot statement's named tuple): its columns by
    name, their values as the column types give them, unchecked until converted."""

    def __getattr__(self, name: str) -> Any: ...
