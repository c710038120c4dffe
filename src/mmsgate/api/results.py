"""What the actions answer, as values: no wire names here.

Each action returns one of these; a refusal is raised as an `errors.ApiError` (its Sinch
code and info). A renderer turns them into a wire answer: `api/sinch_xml.py` for `POST
/ep/v1/`; a JSON renderer can sit beside it, reading the same values (the renderer owns
the names and their order).
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from mmsgate import errors, models

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
