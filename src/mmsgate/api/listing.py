"""The query string of GET /v1/messages, read into a typed listing request, and its cursor.

Every parameter is checked: an unknown one (a typo) is refused rather than ignored, since
ignoring it would list everything. A refusal is E100, except a `to` that is not a number,
which is E110 as in a send.

The cursor is opaque to clients: URL-safe base64 of a small JSON array holding the last
item's position (its created_at in microseconds since the epoch and its tracking-id) and a
check binding both to the account. A cursor cut, edited or given with another account's key
fails the check and is refused; a forged one that passed could only list the caller's own
messages, as every page is read for the caller's account only.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as dt
import hashlib
import json
import re
from collections.abc import Iterable
from typing import Annotated

from msgspec import Meta

from mmsgate import codes, errors, models, numbers
from mmsgate.api import rules
from mmsgate.store.listing import MessageFilter, Position

E = codes.ErrorCode
DEFAULT_LIMIT = 50
MAX_LIMIT = 500
MAX_CURSOR = 160  # characters: the longest cursor `cursor` writes is about 120
STATES = ", ".join(s.value for s in models.RecipientState)
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_TRACKING_ID = re.compile(r"[A-Za-z0-9_-]{1,40}")
# An offset's `+` sent unencoded in a query string arrives as a space.
_SPACE_OFFSET = re.compile(r"(?<=\d) (?=\d\d(:?\d\d)?$)")


@dataclasses.dataclass(frozen=True, slots=True)
class ListQuery:
    """What one GET /v1/messages asks for."""

    where: MessageFilter
    limit: int
    after: Position | None


@dataclasses.dataclass(frozen=True, slots=True)
class Parameter:
    """One query parameter of the listing; `kind` is the type the OpenAPI document gives
    its value (a list: the parameter may be repeated)."""

    name: str
    description: str
    kind: object
    repeatable: bool = False


# A date-time (offset optional) or a date: one string kind, as JSON Schema has no union of
# formats that msgspec writes.
Instant = Annotated[
    str,
    Meta(
        pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}([T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?"
        r"(Z|[+-][0-9]{2}:?[0-9]{2})?)?$",
        examples=["2026-12-01", "2026-12-01T09:30:00+01:00"],
    ),
]
PARAMETERS = (
    Parameter(
        "to",
        "the recipient's number, international digits (a leading + is allowed)",
        Annotated[str, Meta(pattern=r"^\+?(1[2-9][0-9]{2}[2-9][0-9]{6}|[2-9][0-9]{7,14})$")],
    ),
    Parameter(
        "state",
        "one or more states, comma-separated or repeated",
        list[models.RecipientState],
        repeatable=True,
    ),
    Parameter("since", "created at or after (a date-time without offset is UTC)", Instant),
    Parameter("until", "created before (a date-time without offset is UTC)", Instant),
    Parameter(
        "client-reference",
        "the send's client-reference, exactly",
        Annotated[str, Meta(max_length=rules.MAX_CLIENT_REFERENCE)],
    ),
    Parameter(
        "limit",
        f"items per page (default {DEFAULT_LIMIT})",
        Annotated[int, Meta(ge=1, le=MAX_LIMIT)],
    ),
    Parameter("cursor", "the `next-cursor` of the page before", str),
)
_KNOWN = {p.name: p for p in PARAMETERS}


def read_query(items: Iterable[tuple[str, str]], account_id: int) -> ListQuery:
    """The listing request of a query string's (name, value) pairs; ApiError when any is
    unknown, repeated where it may not be, or not a value of its kind."""
    given = _gathered(items)
    since = _instant(given, "since")
    until = _instant(given, "until")
    if since is not None and until is not None and since >= until:
        raise _invalid(f"since ({since.isoformat()}) must be before until ({until.isoformat()})")
    where = MessageFilter(
        msisdn=_msisdn(_one(given, "to")),
        states=_states(given.get("state", [])),
        since=since,
        until=until,
        client_reference=_client_reference(_one(given, "client-reference")),
    )
    raw_cursor = _one(given, "cursor")
    after = None if raw_cursor is None else read_cursor(raw_cursor, account_id)
    return ListQuery(where, _limit(_one(given, "limit")), after)


def _gathered(items: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """The values of each known parameter, empty ones left out (an empty field is no filter)."""
    given: dict[str, list[str]] = {}
    for name, value in items:
        if name not in _KNOWN:
            known = ", ".join(sorted(_KNOWN))
            raise _invalid(f"unknown parameter '{_short(name)}' (known: {known})")
        if value.strip():
            given.setdefault(name, []).append(value)
        if len(given.get(name, ())) > 1 and not _KNOWN[name].repeatable:
            raise _invalid(f"parameter '{name}' given more than once")
    return given


def _one(given: dict[str, list[str]], name: str) -> str | None:
    values = given.get(name)
    return None if not values else values[0]


def _msisdn(raw: str | None) -> str | None:
    if raw is None:
        return None
    msisdn = numbers.normalize_msisdn(raw)
    if msisdn is None:
        raise errors.ApiError(E.BAD_TO, f"Invalid 'to' number '{_short(raw)}'")
    return msisdn


def _client_reference(raw: str | None) -> str | None:
    # No stored reference holds a NUL (XML cannot carry one, PostgreSQL cannot store one):
    # refused here rather than sent to a database that would fail on it.
    if raw is not None and "\x00" in raw:
        raise _invalid("client-reference holds a NUL character")
    return raw


def is_tracking_id(raw: str) -> bool:
    """Whether `raw` has the shape of a tracking-id: one that has not cannot exist."""
    return _TRACKING_ID.fullmatch(raw) is not None


def _states(values: list[str]) -> frozenset[models.RecipientState]:
    states = set()
    for value in values:
        for name in value.split(","):
            try:
                states.add(models.RecipientState(name.strip().lower()))
            except ValueError:
                raise _invalid(f"state '{_short(name)}' is not one of {STATES}") from None
    return frozenset(states)


def _instant(given: dict[str, list[str]], name: str) -> dt.datetime | None:
    raw = _one(given, name)
    if raw is None:
        return None
    value = rules.parse_timestamp(_SPACE_OFFSET.sub("+", raw.strip()))
    if value is None:
        raise _invalid(f"{name} '{_short(raw)}' is not an ISO 8601 date-time or date")
    return value


def _limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_LIMIT
    value = numbers.decimal(raw.strip(), 4)
    if value is None or not 1 <= value <= MAX_LIMIT:
        raise _invalid(f"limit '{_short(raw)}' must be a whole number from 1 to {MAX_LIMIT}")
    return value


def cursor(last: Position, account_id: int) -> str:
    """The opaque cursor of the page after `last`, for this account only."""
    micros = _micros(last.created_at)
    payload = [micros, last.tracking_id, _check(account_id, micros, last.tracking_id)]
    text = json.dumps(payload, separators=(",", ":")).encode("ascii")
    return base64.urlsafe_b64encode(text).rstrip(b"=").decode("ascii")


def read_cursor(raw: str, account_id: int) -> Position:
    """The position a cursor of `cursor` holds; ApiError (E100) for any other string."""
    raw = raw.strip()
    if len(raw) > MAX_CURSOR:  # before decoding: a deep JSON nesting would exhaust the stack
        raise _bad_cursor()
    try:
        text = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
        micros, tracking_id, check = json.loads(text)
    except (binascii.Error, ValueError, TypeError):
        raise _bad_cursor() from None
    valid = (
        type(micros) is int
        and isinstance(tracking_id, str)
        and is_tracking_id(tracking_id)
        and check == _check(account_id, micros, tracking_id)
    )
    if not valid:
        raise _bad_cursor()
    try:
        created_at = _EPOCH + dt.timedelta(microseconds=micros)
    except OverflowError:
        raise _bad_cursor() from None
    return Position(created_at, tracking_id)


def _micros(value: dt.datetime) -> int:
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _check(account_id: int, micros: int, tracking_id: str) -> str:
    """Binds a position to the account it was listed for; catches a cut or edited cursor."""
    text = f"mmsgate/v1/messages|{account_id}|{micros}|{tracking_id}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _bad_cursor() -> errors.ApiError:
    return _invalid("cursor is not one this listing gave to this account (cut or altered?)")


def _invalid(info: str) -> errors.ApiError:
    return errors.ApiError(E.INVALID_REQUEST, f"Invalid request: {info}")


def _short(raw: str) -> str:
    """A client's value as an error repeats it: at most 64 characters."""
    return raw if len(raw) <= 64 else raw[:61] + "..."
