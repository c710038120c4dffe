"""What one recipient's send asks for, as the deliver and fallback steps both read it: its
slides personalised, and whether it may fall back to SMS."""

from __future__ import annotations

import dataclasses

from mmsgate import models
from mmsgate.models import JSONValue
from mmsgate.store.deliveries import Delivery


def slides_of(row: Delivery) -> list[dict[str, JSONValue]]:
    """The template's slides with this send's custom texts and merge data filled in."""
    return [slide.to_data() for slide in personalised(row)]


def personalised(row: Delivery) -> tuple[models.StoredSlide, ...]:
    """`slides_of` as StoredSlides."""
    custom = row.custom_texts or {}
    data = row.merge_data or {}
    slides = []
    for number, slide in enumerate(row.slides, start=1):
        text = custom.get(str(number), slide.text)
        if text:
            text = models.render_merge_tags(text, data)
        slides.append(dataclasses.replace(slide, text=text))
    return tuple(slides)


def may_fall_back(row: Delivery) -> bool:
    """Whether this send may fall back: an optimized account, and not disabled."""
    return row.account_mode == models.AccountMode.OPTIMIZED and not row.disable_fallback
