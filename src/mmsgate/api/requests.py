"""The Sinch XML reader: typed requests built from a parsed document (api/sinch_xml.py).

This module knows where each value sits in the XML; the rules the values must meet are in
`api/rules.py`, shared with any other request format. The rules that need the account
(senders, service-ids, fallback mode) live in `actions`.
"""

from __future__ import annotations

from mmsgate import codes, models
from mmsgate.api import rules
from mmsgate.api.rules import (
    Content,
    DeleteMmsId,
    Delivery,
    Fallback,
    GetMmsTemplates,
    SaveMms,
    SendMms,
    SendSavedMms,
    parse_timestamp,
    template_id,
)
from mmsgate.api.sinch_xml import Node

__all__ = ["parse_timestamp", "template_id"]  # read through here by reports

E = codes.ErrorCode
_MEDIA_NAMES = {kind.value: kind for kind in models.MediaKind if kind is not models.MediaKind.TEXT}


def action_of(doc: Node) -> models.Action:
    return rules.action(doc.value("action"))


def api_key(doc: Node) -> str | None:
    """The request's API key, as given (None when absent)."""
    return doc.value("api-key")


def echoed_to(doc: Node) -> str | None:
    """The `to` a send's Failure repeats: every `<to>` as given, comma-joined."""
    return ",".join(n.text for n in doc.all("to")) or None


def content(doc: Node) -> Content:
    """Name, subject and slides, checked against the slide rules (E311-E314, E223-E230)."""
    name = rules.name(doc.value("name") or "")
    return Content(
        name, rules.subject(doc.value("message-subject"), "message-subject"), slides(doc)
    )


def slides(doc: Node) -> tuple[models.SlideSpec, ...]:
    nodes = doc.all("slide")
    rules.slide_count(len(nodes))
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
    rules.slide(number, media, len(texts), inline)
    return models.SlideSpec(
        text=inline or None,
        media=tuple(media),
        duration=rules.duration(node.value("duration"), number),
    )


def media_url(node: Node, kind: models.MediaKind, number: int) -> str:
    url = node.value("url") or (node.text if node.text.startswith(("http:", "https:")) else "")
    if not url:
        raise rules.no_media_url(kind, number)
    return url


def fallback(doc: Node) -> Fallback:
    return Fallback(
        text=doc.value("fallback-sms-text") or None,
        disabled=rules.flag(doc.value("disable-fallback-sms"), "disable-fallback-sms"),
        link_disabled=rules.flag(
            doc.value("disable-fallback-sms-link"), "disable-fallback-sms-link"
        ),
        link_expiration=doc.value("fallback-sms-link-expiration") or None,
    )


def delivery(doc: Node) -> Delivery:
    to_nodes = doc.all("to")
    parts = [p for node in to_nodes for p in rules.numbers_of(node.text)]
    return Delivery(
        to=tuple(parts),
        to_is_list=len(to_nodes) > 1 or len(parts) > 1,
        sender=doc.value("from"),
        service_id=doc.value("service-id") or None,
        operator_id=doc.value("operator-id"),
        campaign_ref=doc.value("campaign-ref") or None,
        client_reference=rules.client_reference(doc.value("client-reference"), "client-reference"),
        expiry=doc.value("mms-expiry-timestamp") or None,
        to_displayonly=rules.displayonly(
            ",".join(n.text for n in doc.all("to-displayonly")), "to-displayonly"
        ),
        sender_mask=rules.sender_mask(doc.value("from-mask"), "from-mask"),
    )


def mms_id(doc: Node) -> int:
    return rules.mms_id(doc.value("mms-id"), "mms-id")


def save_mms(doc: Node) -> SaveMms:
    reference = rules.client_reference(doc.value("client-reference"), "client-reference")
    return SaveMms(content(doc), fallback(doc), reference, cache_content(doc))


def send_mms(doc: Node) -> SendMms:
    return SendMms(content(doc), fallback(doc), delivery(doc), cache_content(doc))


def cache_content(doc: Node) -> bool | None:
    return rules.flag(doc.value("cache-content"), "cache-content")


def send_saved_mms(doc: Node) -> SendSavedMms:
    return SendSavedMms(
        mms_id=mms_id(doc),
        delivery=delivery(doc),
        fallback=fallback(doc),
        custom_subject=rules.subject(doc.value("custom-subject"), "custom-subject"),
        custom_texts=custom_texts(doc),
        data={child.tag.lower(): child.text for child in _data_children(doc)},
    )


def _data_children(doc: Node) -> list[Node]:
    return [child for block in doc.all("data") for child in block.children]


def custom_texts(doc: Node) -> dict[int, str]:
    result: dict[int, str] = {}
    for node in doc.all("custom-text"):
        value = node.first("value")
        text = None if value is None else value.text
        number, checked = rules.custom_text(text, node.value("slide"), "custom-text")
        result[number] = checked
    return result


def delete_mms_id(doc: Node) -> DeleteMmsId:
    return DeleteMmsId(mms_id(doc))


def get_mms_templates(doc: Node) -> GetMmsTemplates:
    page = rules.positive(doc.value("page-number"), 1, E.BAD_PAGE_NUMBER, "page-number", 10**6)
    per_page = rules.positive(
        doc.value("items-per-page"), 100, E.BAD_ITEMS_PER_PAGE, "items-per-page", 1000
    )
    start = rules.start_date(doc.value("start-date"), "start-date")
    return GetMmsTemplates(start, page, per_page)
