"""What the actions answer, as values: no wire names here.

Each action returns one of these; a refusal is raised as an `errors.ApiError` (its Sinch
code and info). A renderer turns them into a wire answer: `api/sinch_xml.py` for `POST
/ep/v1/`; a JSON renderer can sit beside it, reading the same values (the renderer owns
the names and their order).

An accept's answer is also kept as data (`to_data`, `from_data`), with the
Idempotency-Key that asked for it (store/idempotency.py), to be rendered again when the
request is retried.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping

from mmsgate import codes, errors, models

ACCEPTED = "MMS request accepted and queued for delivery"


@dataclasses.dataclass(frozen=True, slots=True)
class Accepted:
    """A number of a send that was taken, with the tracking-id it was given."""

    to: str
    tracking_id: str


@dataclasses.dataclass(frozen=True, slots=True)
class Refused:
    """A number of a list send that was refused alone, as given, and why."""

    to: str
    error: errors.ApiError


@dataclasses.dataclass(frozen=True, slots=True)
class Sent:
    """sendMMS / sendSavedMMS taken. One number (`is_list` false) answers its number, the
    sender (sendSavedMMS only), the id, its tracking-id and `details`; a list answers the id
    and each number in request order."""

    mms_id: int
    numbers: tuple[Accepted | Refused, ...]
    is_list: bool
    sender: str | None = None
    details: str = ACCEPTED

    @property
    def tracking_ids(self) -> tuple[str, ...]:
        return tuple(n.tracking_id for n in self.numbers if isinstance(n, Accepted))


@dataclasses.dataclass(frozen=True, slots=True)
class Saved:
    """saveMMS stored a template."""

    mms_id: int


@dataclasses.dataclass(frozen=True, slots=True)
class Deleted:
    """deleteMMSID removed a template."""

    mms_id: int


@dataclasses.dataclass(frozen=True, slots=True)
class Templates:
    """getMMSTemplates: one page of the account's saved templates, newest first."""

    start_date: dt.datetime | None
    page: int
    per_page: int
    total: int
    templates: tuple[models.TemplateInfo, ...]


Result = Sent | Saved | Deleted | Templates


def tracking_ids(result: Result) -> tuple[str, ...]:
    """The tracking-ids an answer hands out (none but a send's)."""
    return result.tracking_ids if isinstance(result, Sent) else ()


def to_data(result: Sent | Saved) -> dict[str, models.JSONValue]:
    """An accept's answer as JSON data, all but its mms-id (kept beside it, as the accept
    assigns it when it commits)."""
    if isinstance(result, Saved):
        return {"kind": "saved"}
    numbers: list[models.JSONValue] = [
        {"to": n.to, "tracking_id": n.tracking_id}
        if isinstance(n, Accepted)
        else {"to": n.to, "code": n.error.code.value, "info": n.error.info}
        for n in result.numbers
    ]
    return {
        "kind": "sent",
        "numbers": numbers,
        "is_list": result.is_list,
        "sender": result.sender,
        "details": result.details,
    }


def from_data(data: Mapping[str, models.JSONValue], mms_id: int) -> Sent | Saved:
    """The answer `to_data` gave, with its mms-id: equal to the one first given."""
    if data["kind"] == "saved":
        return Saved(mms_id)
    numbers = data["numbers"]
    assert isinstance(numbers, list)
    sender = data["sender"]
    return Sent(
        mms_id=mms_id,
        numbers=tuple(_number(n) for n in numbers),
        is_list=bool(data["is_list"]),
        sender=sender if isinstance(sender, str) else None,
        details=str(data["details"]),
    )


def _number(data: models.JSONValue) -> Accepted | Refused:
    assert isinstance(data, dict)
    to = str(data["to"])
    if "tracking_id" in data:
        return Accepted(to, str(data["tracking_id"]))
    code = _CODES[str(data["code"])]
    return Refused(to, errors.ApiError(code, str(data["info"])))


_CODES = {code.value: code for code in codes.ErrorCode}
