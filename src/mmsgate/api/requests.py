"""Typed requests built from a parsed document, with the rules that need no account.

The rules that need the account (senders, service-ids, fallback mode) live in `actions`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from mmsgate import codes, errors, models, numbers
from mmsgate.api.sinch_xml import Node

E = codes.ErrorCode
MAX_SLIDES = 8
MAX_TEXT = 5000
MAX_SUBJECT = 80
MAX_NAME = 255
MAX_DURATION = 60
# Template ids are 32-bit integers in the database (store/schema.py): a larger one names
# no template, and must not reach a query (PostgreSQL refuses it as a parameter).
MAX_MMS_ID = 2**31 - 1
SMALL_DIGITS = 9  # a duration, page or slide number: more digits than any valid one has
_MEDIA_NAMES = {kind.value: kind for kind in models.MediaKind if kind is not models.MediaKind.TEXT}
_FETCH_CODES = {
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


@dataclasses.dataclass(frozen=True, slots=True)
class SaveMms:
    content: Content
    fallback: Fallback


@dataclasses.dataclass(frozen=True, slots=True)
class SendMms:
    content: Content
    fallback: Fallback
    delivery: Delivery


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


def action_of(doc: Node) -> models.Action:
    name = doc.value("action")
    if not name:
        raise errors.ApiError(E.INVALID_REQUEST, "Invalid request: <action> is required")
    action = models.Action.lookup(name)
    if action is None:
        raise errors.ApiError(E.INVALID_REQUEST, f"Invalid request: unknown action '{name}'")
    return action


def api_key(doc: Node) -> str | None:
    """The request's API key, as given (None when absent)."""
    return doc.value("api-key")


def echoed_to(doc: Node) -> str | None:
    """The `to` a send's Failure repeats: every `<to>` as given, comma-joined."""
    return ",".join(n.text for n in doc.all("to")) or None


def parse_bool(doc: Node, name: str) -> bool | None:
    raw = doc.value(name)
    if raw is None or raw == "":
        return None
    if raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    raise errors.ApiError(E.INVALID_REQUEST, f"Invalid {name}: expected yes or no, got '{raw}'")


def content(doc: Node) -> Content:
    """Name, subject and slides, checked against the slide rules (E311-E314, E223-E230)."""
    name = doc.value("name") or ""
    if not name:
        raise errors.ApiError(E.NAME_REQUIRED, "Invalid MMS name: <name> is required")
    if len(name) > MAX_NAME:
        raise errors.ApiError(
            E.NAME_REQUIRED, f"Invalid MMS name: longer than {MAX_NAME} characters"
        )
    return Content(name, subject(doc, "message-subject"), slides(doc))


def subject(doc: Node, field: str) -> str | None:
    value = doc.value(field)
    if value is not None and len(value) > MAX_SUBJECT:
        raise errors.ApiError(
            E.BAD_SUBJECT, f"Invalid {field}: {len(value)} characters, at most {MAX_SUBJECT}"
        )
    return value or None


def slides(doc: Node) -> tuple[models.SlideSpec, ...]:
    nodes = doc.all("slide")
    if not nodes:
        raise errors.ApiError(E.NO_SLIDES, "No slides: at least one <slide> is required")
    if len(nodes) > MAX_SLIDES:
        raise errors.ApiError(
            E.TOO_MANY_SLIDES, f"Too many slides: {len(nodes)} given, at most {MAX_SLIDES}"
        )
    return tuple(slide(node, n) for n, node in enumerate(nodes, start=1))


def slide(node: Node, number: int) -> models.SlideSpec:
    texts = node.all("message-text")
    media: list[models.MediaRef] = []
    inline: str | None = None
    for text_node in texts:
        url = text_node.value("url")
        if url is not None:
            media.append(models.MediaRef(models.MediaKind.TEXT, url))
        else:
            inline = text_node.text
    for child in node.children:
        kind = _MEDIA_NAMES.get(child.name)
        if kind is not None:
            media.append(models.MediaRef(kind, media_url(child, kind, number)))
    check_slide(number, media, texts, inline)
    return models.SlideSpec(
        text=inline or None, media=tuple(media), duration=duration(node, number)
    )


def media_url(node: Node, kind: models.MediaKind, number: int) -> str:
    url = node.value("url") or (node.text if node.text.startswith(("http:", "https:")) else "")
    if not url:
        raise errors.ApiError(
            _FETCH_CODES[kind], f"Could not copy {kind.value} in slide {number}: no <url> given"
        )
    return url


def check_slide(
    number: int, media: list[models.MediaRef], texts: list[Node], inline: str | None
) -> None:
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
    if len(texts) > 1 or len(kinds) != len(set(kinds)):
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


def duration(node: Node, number: int) -> int | None:
    raw = node.value("duration")
    if raw is None or raw == "":
        return None
    value = numbers.decimal(raw[:-1] if raw.lower().endswith("s") else raw, SMALL_DIGITS)
    if value is None or value > MAX_DURATION:
        raise errors.ApiError(
            E.BAD_DURATION,
            f"Invalid duration in slide {number}: '{raw}' (whole seconds, 0 to {MAX_DURATION})",
        )
    return value


def fallback(doc: Node) -> Fallback:
    return Fallback(
        text=doc.value("fallback-sms-text") or None,
        disabled=parse_bool(doc, "disable-fallback-sms"),
        link_disabled=parse_bool(doc, "disable-fallback-sms-link"),
        link_expiration=doc.value("fallback-sms-link-expiration") or None,
    )


def delivery(doc: Node) -> Delivery:
    to_nodes = doc.all("to")
    parts = [p for node in to_nodes for p in _split(node.text)]
    return Delivery(
        to=tuple(parts),
        to_is_list=len(to_nodes) > 1 or len(parts) > 1,
        sender=doc.value("from"),
        service_id=doc.value("service-id") or None,
        operator_id=doc.value("operator-id"),
        campaign_ref=doc.value("campaign-ref") or None,
        client_reference=_client_reference(doc),
        expiry=doc.value("mms-expiry-timestamp") or None,
    )


def _split(raw: str) -> list[str]:
    return [p.strip() for p in raw.replace(";", ",").split(",") if p.strip()]


def _client_reference(doc: Node) -> str | None:
    value = doc.value("client-reference") or None
    if value is not None and len(value) > 64:
        raise errors.ApiError(E.INVALID_REQUEST, "Invalid client-reference: at most 64 characters")
    return value


def mms_id(doc: Node) -> int:
    raw = doc.value("mms-id")
    if not raw:
        raise errors.ApiError(E.MMS_ID_REQUIRED, "mms-id is required")
    value = template_id(raw)
    if value is None:
        raise errors.ApiError(E.BAD_MMS_ID, f"Invalid mms-id '{raw}' / MMS don't exist")
    return value


def template_id(raw: str) -> int | None:
    """An mms-id as a template id; None when it is not one any template can have."""
    value = numbers.decimal(raw, len(str(MAX_MMS_ID)))
    return value if value is not None and value <= MAX_MMS_ID else None


def save_mms(doc: Node) -> SaveMms:
    return SaveMms(content(doc), fallback(doc))


def send_mms(doc: Node) -> SendMms:
    return SendMms(content(doc), fallback(doc), delivery(doc))


def send_saved_mms(doc: Node) -> SendSavedMms:
    return SendSavedMms(
        mms_id=mms_id(doc),
        delivery=delivery(doc),
        fallback=fallback(doc),
        custom_subject=subject(doc, "custom-subject"),
        custom_texts=custom_texts(doc),
        data={child.tag.lower(): child.text for child in _data_children(doc)},
    )


def _data_children(doc: Node) -> list[Node]:
    return [child for block in doc.all("data") for child in block.children]


def custom_texts(doc: Node) -> dict[int, str]:
    result: dict[int, str] = {}
    for node in doc.all("custom-text"):
        value, raw = node.first("value"), node.value("slide")
        if value is None or raw is None:
            raise errors.ApiError(
                E.INVALID_REQUEST, "Invalid custom-text: both <value> and <slide> are required"
            )
        number = numbers.decimal(raw, SMALL_DIGITS)
        if number is None or not 1 <= number <= MAX_SLIDES:
            raise errors.ApiError(
                E.INVALID_REQUEST, f"Invalid custom-text: slide '{raw}' is not 1 to {MAX_SLIDES}"
            )
        if len(value.text) > MAX_TEXT:
            raise errors.ApiError(
                E.TEXT_TOO_LONG,
                f"custom-text for slide {number} is longer than {MAX_TEXT} characters",
            )
        result[number] = value.text
    return result


def delete_mms_id(doc: Node) -> DeleteMmsId:
    return DeleteMmsId(mms_id(doc))


def get_mms_templates(doc: Node) -> GetMmsTemplates:
    page = _positive(doc.value("page-number"), 1, E.BAD_PAGE_NUMBER, "page-number", 10**6)
    per_page = _positive(
        doc.value("items-per-page"), 100, E.BAD_ITEMS_PER_PAGE, "items-per-page", 1000
    )
    raw_date = doc.value("start-date")
    start = None
    if raw_date:
        start = parse_timestamp(raw_date)
        if start is None:
            raise errors.ApiError(E.BAD_START_DATE, f"Invalid start-date '{raw_date}' (ISO 8601)")
    return GetMmsTemplates(start, page, per_page)


def _positive(raw: str | None, default: int, code: E, field: str, most: int) -> int:
    if raw is None or raw == "":
        return default
    value = numbers.decimal(raw, SMALL_DIGITS)
    if value is None or not 1 <= value <= most:
        raise errors.ApiError(code, f"Invalid {field} '{raw}': expected 1 to {most}")
    return value


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
