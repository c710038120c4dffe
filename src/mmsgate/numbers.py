"""Numbers as clients write them: phone numbers in the form the Sinch API uses (international
digits, no `+` or `00`), and the decimal integers of ids, counts and durations.

Only ASCII digits count. `str.isdigit` also takes `²` and `③`, and `int()` reads `٣١٠٦٢`
(Arabic-Indic) as 31062; a value of thousands of digits makes `int()` raise (Python's
int-string limit) or reaches the database as an integer it cannot store.
"""

from __future__ import annotations

import re

_DIGITS = re.compile(r"[1-9][0-9]{7,14}")


def decimal(raw: str, max_digits: int) -> int | None:
    """The value of `raw` when it is 1 to `max_digits` ASCII digits (leading zeros count as
    digits, so the bound holds before any parsing); None otherwise."""
    if not 0 < len(raw) <= max_digits or not raw.isascii() or not raw.isdigit():
        return None
    return int(raw)


def normalize_msisdn(raw: str) -> str | None:
    """Return the MSISDN as international digits, or None when it is not a valid number.

    A leading `+` is tolerated (clients often send it); `00`/`011` prefixes, letters and
    numbers outside E.164's 8-15 digits are refused. North American numbers must have 11
    digits with area code and exchange not starting with 0 or 1 (NANP rules).
    """
    value = raw.strip()
    if value.startswith("+"):
        value = value[1:]
    if not _DIGITS.fullmatch(value):
        return None
    if value[0] == "1" and (len(value) != 11 or value[1] in "01" or value[4] in "01"):
        return None
    return value


def split_recipients(raw: str) -> list[str]:
    """Split a `to` value that may be a comma- or whitespace-separated list."""
    return [part for part in re.split(r"[,;\s]+", raw.strip()) if part]
