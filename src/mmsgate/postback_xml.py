"""Sinch's postback bodies (XML, lower-case tags): the MT delivery events (N101, N102, N103,
E101, E102, and the fallback SMS's N202/E202) and the saveMMS outcome (N003, E002/E003/E004).
Tags in Sinch's order (API reference §8.1); optional ones are left out when there is nothing
to say. `render` writes a queued PostbackEvent.

`client-reference`, the request's own reference, follows `tracking-id` when the send (or
the saveMMS) gave one: Sinch's XML postbacks list no such element, but its JSON ones carry
it (§8.3), and XML clients ignore elements they do not know."""

from __future__ import annotations

import dataclasses
import datetime as dt

from mmsgate import models, xmlsafe

# The `status` text that goes with each code in Sinch's XML postbacks (API reference §7.1).
STATUS_TEXT = {
    "N101": "Message Sent",
    "N102": "Message Sent/Delivered",
    "N103": "Message Sent/Expired",
    "E101": "Message Failed",
    "E102": "Message Sent/Failed",
    "N202": "Message Sent/Delivered",
    "E202": "Message Sent/Failed",
}
_NAME_OF_FAILED = {
    models.MediaKind.AUDIO: "audio-name",
    models.MediaKind.VIDEO: "video-name",
    models.MediaKind.IMAGE: "image-name",
}


@dataclasses.dataclass(frozen=True, slots=True)
class Delivery:
    """One change in the fate of one recipient, as the customer is told of it."""

    code: str
    tracking_id: str
    mms_id: int
    sender: str
    to: str
    at: dt.datetime
    sent_as: str | None = "MMS"
    status: str | None = None  # overrides the code's usual status text
    operator_id: int | None = None
    handset: str | None = None
    details: str | None = None
    client_reference: str | None = None


def delivery_postback(event: Delivery) -> bytes:
    """An MT delivery postback."""
    fields: list[tuple[str, object | None]] = [
        ("origin", "MMS_MT"),
        ("code", event.code),
        # Sinch leaves sent-as out of its E101/E102 examples; E202 is the SMS leg's own.
        (
            "sent-as",
            event.sent_as if not event.code.startswith("E") or event.code == "E202" else None,
        ),
        ("status", event.status or STATUS_TEXT.get(event.code)),
        ("mms-id", event.mms_id),
        ("from", event.sender),
        ("to", event.to),
        ("tracking-id", event.tracking_id),
        ("client-reference", event.client_reference),
        ("operator-id", event.operator_id),
        ("timestamp", event.at.astimezone(dt.UTC).isoformat(timespec="seconds")),
        ("handset", event.handset),
        ("status-details", event.details),
    ]
    return _document(fields)


def mo_postback(
    tracking_id: str,
    sender: str,
    to: str,
    at: dt.datetime,
    subject: str | None,
    files: list[str],
    operator_id: int | None = None,
    keyword: str | None = None,
) -> bytes:
    """An MO (N401) postback: who sent what, with URLs of the stored content, and its
    first word as `keyword` after `to` (API reference §8.4)."""
    fields: list[tuple[str, object | None]] = [
        ("origin", "MMS_MO"),
        ("code", "N401"),
        ("from", sender),
        ("to", to),
        ("keyword", keyword),
        ("tracking-id", tracking_id),
        ("operator-id", operator_id),
        ("timestamp", at.astimezone(dt.UTC).isoformat(timespec="seconds")),
        ("message-subject", subject or ""),
    ]
    body = _document(fields).decode().removesuffix("</postback>\n")
    content = "".join(f"        <file>{xmlsafe.text(url)}</file>\n" for url in files)
    return (body + f"    <content>\n{content}    </content>\n</postback>\n").encode()


def template_postback(
    code: str,
    mms_id: int,
    failed: tuple[models.MediaKind, str] | None = None,
    client_reference: str | None = None,
) -> bytes:
    """The saveMMS outcome: N003, or E002/E003/E004 naming the URL that failed."""
    fields: list[tuple[str, object | None]] = [
        ("origin", "MMS_MT"),
        ("code", code),
        ("mms-id", mms_id),
        ("client-reference", client_reference),
    ]
    if failed is not None:
        fields.append((_NAME_OF_FAILED.get(failed[0], "image-name"), failed[1]))
    return _document(fields)


def _document(fields: list[tuple[str, object | None]]) -> bytes:
    lines = ["<postback>"]
    lines += [
        f"    <{tag}>{xmlsafe.text(str(value))}</{tag}>"
        for tag, value in fields
        if value is not None
    ]
    lines.append("</postback>")
    return ("\n".join(lines) + "\n").encode("utf-8")


def render(event: models.PostbackEvent) -> bytes:
    """The XML body of a queued postback event."""
    at = event.at if event.at is not None else dt.datetime.fromtimestamp(0, dt.UTC)
    if event.kind is models.PostbackKind.TEMPLATE:
        failed = None
        if event.failed is not None and event.failed_url is not None:
            failed = (event.failed, event.failed_url)
        return template_postback(event.code, event.mms_id or 0, failed, event.client_reference)
    if event.kind is models.PostbackKind.MO:
        return mo_postback(
            event.tracking_id or "",
            event.sender or "",
            event.to or "",
            at,
            event.subject,
            list(event.files),
            event.operator_id,
            event.keyword,
        )
    delivery = Delivery(
        code=event.code,
        tracking_id=event.tracking_id or "",
        mms_id=event.mms_id or 0,
        sender=event.sender or "",
        to=event.to or "",
        at=at,
        sent_as=event.sent_as,
        status=event.status,
        operator_id=event.operator_id,
        handset=event.handset,
        details=event.details,
        client_reference=event.client_reference,
    )
    return delivery_postback(delivery)
