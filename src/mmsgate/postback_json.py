"""Sinch's JSON postback bodies, for accounts whose postback format is JSON: the events
postback_xml writes, under the same hyphenated names (API reference §8.3 for MT delivery,
§8.4 for MO, §7.2 for the saveMMS outcome). `render` writes a queued PostbackEvent.

As in the XML bodies, keys with nothing to say are left out, and numbers the XML writes as
text are JSON strings (`mms-id`, `operator-id`: Sinch's examples quote them, and a client
written against Sinch parses strings). `timestamp` is ISO 8601 in UTC with microseconds and
the offset, as in the §8.3 sample (`2021-01-26T18:00:07.990498+00:00`).

`status` takes one of the five words §8.3 lists (Sent, Delivered, Failed, Rejected, Expired),
chosen for each code from §7.1:
- N101 is Sent, on either leg (sent-as MMS, or SMS when the fallback SMS went);
- N102 and N202 are Delivered (the MMS, or the fallback SMS, reached the handset);
- N103 is Expired; E101 (never sent) and E202 (the fallback SMS failed) are Failed;
- E102, "delivery not successful, or destination/content rejected", is Rejected by §7.1's
  JSON list, save where the carrier said more: the event's XML status text then decides
  (`Message Sent/Failed`, an MMSC that did not recognise the recipient: Failed;
  `Message Sent/Expired`: Expired; `Message Sent/Rejected` and `.../Not Supported`, the
  carrier refusing the message or its content: Rejected). §7.1's other JSON word for E102,
  "Unrecognised", is not among §8.3's five and is not used.
`status-details` is the event's own text (the carrier's answer, the fallback's reason) as
the XML body has it, or else `Message <status>` as §8.3 lists them.

`operator-name` follows `operator-id` when mmsgate knows the carrier under that id
(`profiles.OPERATORS`), and is left out otherwise; `campaign-ref` echoes the send's own,
after `client-reference`. An MO names the other members of a group thread in `copy-to` and
its first word in `keyword` (§8.4; the event carries both, see api/mm7.py).
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Literal, NotRequired, TypedDict, cast

from mmsgate import models, profiles

Status = Literal["Sent", "Delivered", "Failed", "Rejected", "Expired"]
# Each MT code's usual word (§7.1), and the words XML status texts stand for (see above).
STATUS_OF_CODE: dict[str, Status] = {
    "N101": "Sent",
    "N102": "Delivered",
    "N103": "Expired",
    "E101": "Failed",
    "E102": "Rejected",
    "N202": "Delivered",
    "E202": "Failed",
}
_STATUS_OF_XML_TEXT: dict[str, Status] = {
    "Message Sent": "Sent",
    "Message Sent/Delivered": "Delivered",
    "Message Failed": "Failed",
    "Message Sent/Failed": "Failed",
    "Message Sent/Expired": "Expired",
    "Message Sent/Rejected": "Rejected",
    "Message Sent/Not Supported": "Rejected",
}
_NAME_OF_FAILED = {
    models.MediaKind.AUDIO: "audio-name",
    models.MediaKind.VIDEO: "video-name",
    models.MediaKind.IMAGE: "image-name",
}

# The bodies, typed (for the OpenAPI document's webhooks). Their keys are Sinch's hyphenated
# names, hence the functional form.
DeliveryBody = TypedDict(
    "DeliveryBody",
    {
        "origin": Literal["MMS_MT"],
        "code": str,
        "sent-as": NotRequired[Literal["MMS", "SMS"]],
        "status": NotRequired[Status],
        "status-details": NotRequired[str],
        "mms-id": NotRequired[str],
        "from": NotRequired[str],
        "to": NotRequired[str],
        "tracking-id": NotRequired[str],
        "client-reference": NotRequired[str],
        "campaign-ref": NotRequired[str],
        "operator-id": NotRequired[str],
        "operator-name": NotRequired[str],
        "timestamp": NotRequired[str],
        "handset": NotRequired[str],
    },
)


class ContentFile(TypedDict):
    file: str  # a URL of one part of an MO, served by mmsgate


class CopyTo(TypedDict):
    number: str


MoBody = TypedDict(
    "MoBody",
    {
        "origin": Literal["MMS_MO"],
        "code": Literal["N401"],
        "from": str,
        "to": str,
        "copy-to": NotRequired[list[CopyTo]],
        "keyword": NotRequired[str],
        "tracking-id": str,
        "operator-id": NotRequired[str],
        "timestamp": NotRequired[str],
        "message-subject": str,
        "content": list[ContentFile],
    },
)
# The MO keys in the order bodies list them (as before copy-to and keyword, which follow `to`).
_MO_ORDER = (
    "origin", "code", "from", "to", "copy-to", "keyword", "tracking-id", "message-subject",
    "content", "operator-id", "timestamp",
)  # fmt: skip
TemplateBody = TypedDict(
    "TemplateBody",
    {
        "origin": Literal["MMS_MT"],
        "code": str,  # N003, E002, E003, E004
        "mms-id": str,
        "client-reference": NotRequired[str],
        "audio-name": NotRequired[str],
        "video-name": NotRequired[str],
        "image-name": NotRequired[str],
    },
)
Body = DeliveryBody | MoBody | TemplateBody


def status_of(event: models.PostbackEvent) -> Status | None:
    """The §8.3 status word of an MT delivery event (module docstring); None for a code
    that has none."""
    if event.status is not None and event.code == "E102":
        return _STATUS_OF_XML_TEXT.get(event.status, STATUS_OF_CODE["E102"])
    return STATUS_OF_CODE.get(event.code)


def delivery_body(event: models.PostbackEvent) -> DeliveryBody:
    """An MT delivery postback (N101, N102, N103, E101, E102, N202, E202)."""
    status = status_of(event)
    body: DeliveryBody = {"origin": "MMS_MT", "code": event.code}
    # As in the XML: Sinch leaves sent-as out of E101/E102; E202 is the SMS leg's own.
    if event.sent_as in ("MMS", "SMS") and (not event.code.startswith("E") or event.code == "E202"):
        body["sent-as"] = "SMS" if event.sent_as == "SMS" else "MMS"
    if status is not None:
        body["status"] = status
    details = event.details or (f"Message {status}" if status is not None else None)
    if details:
        body["status-details"] = details
    _put(body, "mms-id", event.mms_id)
    _put(body, "from", event.sender)
    _put(body, "to", event.to)
    _put(body, "tracking-id", event.tracking_id)
    _put(body, "client-reference", event.client_reference)
    _put(body, "campaign-ref", event.campaign_ref)
    _put(body, "operator-id", event.operator_id)
    _put(body, "operator-name", operator_name(event.operator_id))
    if event.at is not None:
        body["timestamp"] = timestamp(event.at)
    _put(body, "handset", event.handset)
    return body


def mo_body(event: models.PostbackEvent) -> MoBody:
    """An MO (N401) postback: who sent what, with the URLs of the stored content; the
    other members of a group thread in `copy-to`, after `to`, and its `keyword` (§8.4)."""
    body: MoBody = {
        "origin": "MMS_MO",
        "code": "N401",
        "from": event.sender or "",
        "to": event.to or "",
        "tracking-id": event.tracking_id or "",
        "message-subject": event.subject or "",
        "content": [{"file": url} for url in event.files],
    }
    if event.copy_to:
        body["copy-to"] = [{"number": number} for number in event.copy_to]
    _put(body, "keyword", event.keyword)
    _put(body, "operator-id", event.operator_id)
    if event.at is not None:
        body["timestamp"] = timestamp(event.at)
    return cast(MoBody, {key: body[key] for key in _MO_ORDER if key in body})  # type: ignore[literal-required]


def template_body(event: models.PostbackEvent) -> TemplateBody:
    """The saveMMS outcome: N003, or E002/E003/E004 naming the URL that failed under the
    XML's element name for its kind."""
    body: TemplateBody = {"origin": "MMS_MT", "code": event.code, "mms-id": str(event.mms_id or 0)}
    _put(body, "client-reference", event.client_reference)
    if event.failed is not None and event.failed_url is not None:
        _put(body, _NAME_OF_FAILED.get(event.failed, "image-name"), event.failed_url)
    return body


def operator_name(operator_id: int | None) -> str | None:
    """The carrier's name under its Sinch operator id; None when mmsgate does not know it."""
    operator = profiles.OPERATORS.get(operator_id) if operator_id is not None else None
    return None if operator is None else operator.name


def timestamp(at: dt.datetime) -> str:
    """`2026-01-05T15:00:00.000000+00:00`: UTC, microseconds, offset (§8.3 sample)."""
    return at.astimezone(dt.UTC).isoformat(timespec="microseconds")


def body_of(event: models.PostbackEvent) -> Body:
    """The JSON body of a queued postback event, as data."""
    if event.kind is models.PostbackKind.TEMPLATE:
        return template_body(event)
    if event.kind is models.PostbackKind.MO:
        return mo_body(event)
    return delivery_body(event)


def render(event: models.PostbackEvent) -> bytes:
    """The JSON body of a queued postback event: UTF-8, compact, keys in Sinch's order."""
    text = json.dumps(body_of(event), ensure_ascii=False, separators=(",", ":"))
    return text.encode("utf-8")


def _put(body: DeliveryBody | MoBody | TemplateBody, key: str, value: object | None) -> None:
    """Set `key` to the value as text, unless there is nothing to say."""
    if value is not None and value != "":
        body[key] = str(value)  # type: ignore[literal-required]
