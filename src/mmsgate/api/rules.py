"""What each action is asked (typed requests), and the rules their values must meet,
whatever wire format carried them.

Each check takes plain values (and, where its error names a field, that field's name as the
codec spells it) and returns the typed value or raises `errors.ApiError` with the Sinch
code. `api/requests.py` reads the Sinch XML and calls these; a second codec (JSON) calls
the same ones, so both formats refuse the same requests with the same codes. The rules that
need the account (senders, service-ids, fallback mode) live in `actions`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re

from mmsgate import codes, errors, models, numbers

E = codes.ErrorCode
MAX_SLIDES = 8
MAX_TEXT = 5000
MAX_SUBJECT = 80
MAX_NAME = 255
MAX_DURATION = 60
MAX_CLIENT_REFERENCE = 64
# to-displayonly lists group members the handset shows; at most as many as a `to` list may
# hold (E623, sinch-mms-api §12: the 100 of the multi-recipient era).
MAX_DISPLAYONLY = 100
# from-mask: at most 11 of a-z A-Z 0-9 _ -, not only digits (sinch-mms-api §12); the
# 11-character bound is also what a GSM alphanumeric originator can carry.
MAX_SENDER_MASK = 11
_SENDER_MASK = re.compile(rf"[A-Za-z0-9_-]{{1,{MAX_SENDER_MASK}}}")
# Template ids are 32-bit integers in the database (store/schema.py): a larger one names
# no template, and must not reach a query (PostgreSQL refuses it as a parameter).
MAX_MMS_ID = 2**31 - 1
SMALL_DIGITS = 9  # a duration, page or slide number: more digits than any valid one has
FETCH_CODES = {
    models.MediaKind.IMAGE: E.IMAGE_FETCH,
    models.MediaKind.AUDIO: E.AUDIO_FETCH,
    models.MediaKind.VIDEO: E.VIDEO_FETCH,
    models.MediaKind.TEXT: E.TEXT_FETCH,
    models.MediaKind.VCARD: E.VCARD_FETCH,
    models.MediaKind.ICAL: E.ICAL_FETCH,
    models.MediaKind.PDF: E.PDF_FETCH,
    models.MediaKind.PASSBOOK: E.PASSBOOK_FETCH,
}
_TRUE = {"yes", "true", "1", "on"}
_FALSE = {"no", "false", "0", "off"}


@dataclasses.dataclass(frozen=True, slots=True)
class Content:
    """What a message shows: template name, subject and slides."""

    name: str
    subject: str | None
    slides: tuple[models.SlideSpec, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class Fallback:
    """The SMS-with-link fallback controls a request may carry."""

    text: str | None = None
    disabled: bool | None = None
    link_disabled: bool | None = None
    link_expiration: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Delivery:
    """Who a send goes to and from, as requested (numbers not yet checked)."""

    to: tuple[str, ...]
    to_is_list: bool
    sender: str | None
    service_id: str | None
    operator_id: str | None
    campaign_ref: str | None
    client_reference: str | None
    expiry: str | None
    # Group members shown on the handset, never delivered to (checked MSISDNs).
    to_displayonly: tuple[str, ...] = ()
    # An alphanumeric sender shown instead of `from` where the route carries one.
    sender_mask: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class SaveMms:
    content: Content
    fallback: Fallback
    client_reference: str | None = None  # echoed in the N003/E00x postback
    # False: fetch this request's media anew, bypassing the fetch cache (None/True: use it).
    cache_content: bool | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class SendMms:
    content: Content
    fallback: Fallback
    delivery: Delivery
    cache_content: bool | None = None  # as on SaveMms


@dataclasses.dataclass(frozen=True, slots=True)
class SendSavedMms:
    mms_id: int
    delivery: Delivery
    fallback: Fallback
    custom_subject: str | None
    custom_texts: dict[int, str]
    data: dict[str, str]


@dataclasses.dataclass(frozen=True, slots=True)
class DeleteMmsId:
    mms_id: int


@dataclasses.dataclass(frozen=True, slots=True)
class GetMmsTemplates:
    start_date: dt.datetime | None
    page: int
    per_page: int


def action(name: str | None) -> models.Action:
    if not name:
        raise errors.ApiError(E.INVALID_REQUEST, "Invalid request: <action> is required")
    found = models.Action.lookup(name)
    if found is None:
        raise errors.ApiError(E.INVALID_REQUEST, f"Invalid request: unknown action '{name}'")
    return found


def flag(raw: str | None, field: str) -> bool | None:
    """yes/no, true/false, 1/0, on/off; None when absent or empty."""
    if raw is None or raw == "":
        return None
    if raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    raise errors.ApiError(E.INVALID_REQUEST, f"Invalid {field}: expected yes or no, got '{raw}'")


def name(value: str) -> str:
    """A template's name: required, at most MAX_NAME characters (E311)."""
    if not value:
        raise errors.ApiError(E.NAME_REQUIRED, "Invalid MMS name: <name> is required")
    if len(value) > MAX_NAME:
        raise errors.ApiError(
            E.NAME_REQUIRED, f"Invalid MMS name: longer than {MAX_NAME} characters"
        )
    return value


def subject(value: str | None, field: str) -> str | None:
    if value is not None and len(value) > MAX_SUBJECT:
        raise errors.ApiError(
            E.BAD_SUBJECT, f"Invalid {field}: {len(value)} characters, at most {MAX_SUBJECT}"
        )
    return value or None


def slide_count(count: int) -> None:
    """At least one slide (E312), at most MAX_SLIDES (E225)."""
    if not count:
        raise errors.ApiError(E.NO_SLIDES, "No slides: at least one <slide> is required")
    if count > MAX_SLIDES:
        raise errors.ApiError(
            E.TOO_MANY_SLIDES, f"Too many slides: {count} given, at most {MAX_SLIDES}"
        )


def no_media_url(kind: models.MediaKind, number: int) -> errors.ApiError:
    return errors.ApiError(
        FETCH_CODES[kind], f"Could not copy {kind.value} in slide {number}: no <url> given"
    )


def slide(number: int, media: list[models.MediaRef], texts: int, inline: str | None) -> None:
    """One slide's contents (E223-E229, E313): `texts` counts its text items."""
    kinds = [m.kind for m in media]
    objects = [k for k in kinds if k.is_object]
    av = {models.MediaKind.IMAGE, models.MediaKind.AUDIO, models.MediaKind.VIDEO} & set(kinds)
    if len(objects) > 1:
        raise errors.ApiError(E.TWO_OBJECTS, f"More than one object in slide {number}")
    if objects and av:
        raise errors.ApiError(
            E.OBJECT_WITH_MEDIA,
            f"Slide {number}: {objects[0].value} cannot share a slide with image, audio or video",
        )
    if {models.MediaKind.AUDIO, models.MediaKind.VIDEO} <= av:
        raise errors.ApiError(E.AUDIO_AND_VIDEO, f"Slide {number} has both audio and video")
    if {models.MediaKind.IMAGE, models.MediaKind.VIDEO} <= av:
        raise errors.ApiError(E.VIDEO_AND_IMAGE, f"Slide {number} has both video and an image")
    if texts > 1 or len(kinds) != len(set(kinds)):
        raise errors.ApiError(
            E.CONTENT_NOT_ALLOWED, f"Content not allowed: slide {number} has two items of one type"
        )
    if inline is not None and len(inline) > MAX_TEXT:
        raise errors.ApiError(
            E.TEXT_TOO_LONG,
            f"Text in slide {number} is {len(inline)} characters, longer than {MAX_TEXT}",
        )
    if not media and not inline:
        raise errors.ApiError(E.EMPTY_SLIDE, f"Slide {number} is empty")


def duration(raw: str | None, number: int) -> int | None:
    """Whole seconds, 0 to MAX_DURATION, an `s` allowed after them (E230)."""
    if raw is None or raw == "":
        return None
    value = numbers.decimal(raw[:-1] if raw.lower().endswith("s") else raw, SMALL_DIGITS)
    if value is None or value > MAX_DURATION:
        raise errors.ApiError(
            E.BAD_DURATION,
            f"Invalid duration in slide {number}: '{raw}' (whole seconds, 0 to {MAX_DURATION})",
        )
    return value


def numbers_of(raw: str) -> list[str]:
    """The numbers of one `to` value: a comma (or semicolon) list."""
    return [p.strip() for p in raw.replace(";", ",").split(",") if p.strip()]


def displayonly(raw: str | None, field: str) -> tuple[str, ...]:
    """A comma list of display-only numbers, each checked like a `to` number (E110), at
    most MAX_DISPLAYONLY of them (E623); () when absent or empty."""
    parts = numbers_of(raw or "")
    if len(parts) > MAX_DISPLAYONLY:
        raise errors.ApiError(
            E.TOO_MANY_RECIPIENTS,
            f"'{field}' holds {len(parts)} numbers, at most {MAX_DISPLAYONLY}",
        )
    checked: list[str] = []
    for part in parts:
        msisdn = numbers.normalize_msisdn(part)
        if msisdn is None:
            raise errors.ApiError(E.BAD_TO, f"Invalid '{field}' number '{part}'")
        if msisdn not in checked:
            checked.append(msisdn)
    return tuple(checked)


def sender_mask(raw: str | None, field: str) -> str | None:
    """An alphanumeric sender (sinch-mms-api §12): 1 to MAX_SENDER_MASK of a-z A-Z 0-9 _ -,
    not only digits; None when absent or empty.

    A bad mask is E115, the one code Sinch gives for sender masks (its JSON status list:
    a mask too long). E111 would tell the client its `from` is wrong, which it is not.
    """
    if raw is None or raw == "":
        return None
    if not raw.isascii() or not _SENDER_MASK.fullmatch(raw) or raw.isdigit():
        raise errors.ApiError(
            E.BAD_FROM_MASK,
            f"Invalid {field} '{raw[: MAX_SENDER_MASK + 1]}': 1 to {MAX_SENDER_MASK} of "
            "a-z A-Z 0-9 _ -, not only digits",
        )
    return raw


def client_reference(value: str | None, field: str) -> str | None:
    value = value or None
    if value is not None and len(value) > MAX_CLIENT_REFERENCE:
        raise errors.ApiError(
            E.INVALID_REQUEST, f"Invalid {field}: at most {MAX_CLIENT_REFERENCE} characters"
        )
    return value


def mms_id(raw: str | None, field: str) -> int:
    """A required template id (E620), one a template can have (E241)."""
    if not raw:
        raise errors.ApiError(E.MMS_ID_REQUIRED, f"{field} is required")
    value = template_id(raw)
    if value is None:
        raise errors.ApiError(E.BAD_MMS_ID, f"Invalid {field} '{raw}' / MMS don't exist")
    return value


def template_id(raw: str) -> int | None:
    """An mms-id as a template id; None when it is not one any template can have."""
    value = numbers.decimal(raw, len(str(MAX_MMS_ID)))
    return value if value is not None and value <= MAX_MMS_ID else None


def custom_text(value: str | None, raw_slide: str | None, field: str) -> tuple[int, str]:
    """(slide number, text) of one custom text: both given, a slide 1 to MAX_SLIDES."""
    if value is None or raw_slide is None:
        raise errors.ApiError(
            E.INVALID_REQUEST, f"Invalid {field}: both <value> and <slide> are required"
        )
    number = numbers.decimal(raw_slide, SMALL_DIGITS)
    if number is None or not 1 <= number <= MAX_SLIDES:
        raise errors.ApiError(
            E.INVALID_REQUEST, f"Invalid {field}: slide '{raw_slide}' is not 1 to {MAX_SLIDES}"
        )
    if len(value) > MAX_TEXT:
        raise errors.ApiError(
            E.TEXT_TOO_LONG, f"{field} for slide {number} is longer than {MAX_TEXT} characters"
        )
    return number, value


def positive(raw: str | None, default: int, code: E, field: str, most: int) -> int:
    """A whole number 1 to `most`, `default` when absent."""
    if raw is None or raw == "":
        return default
    value = numbers.decimal(raw, SMALL_DIGITS)
    if value is None or not 1 <= value <= most:
        raise errors.ApiError(code, f"Invalid {field} '{raw}': expected 1 to {most}")
    return value


def start_date(raw: str | None, field: str) -> dt.datetime | None:
    if not raw:
        return None
    start = parse_timestamp(raw)
    if start is None:
        raise errors.ApiError(E.BAD_START_DATE, f"Invalid {field} '{raw}' (ISO 8601)")
    return start


def parse_timestamp(raw: str) -> dt.datetime | None:
    """An ISO 8601 date or date-time as aware UTC (a missing offset means UTC); None when it
    is not one, or when its UTC instant falls outside years 1 to 9999
    (`0001-01-01T00:00:00+01:00` is still year 0 in UTC)."""
    text = raw.strip().replace(" ", "T", 1)
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        value = dt.datetime.fromisoformat(text)
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
    except (ValueError, OverflowError):
        return None
