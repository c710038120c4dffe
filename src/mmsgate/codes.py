"""Sinch MMS API error codes answered synchronously, with their default texts.

The numbering follows the current Sinch appendix (E311-E314, not the older E301-E304).
Texts are mmsgate's own wording; a request-specific `error-info` usually replaces them.
"""

from __future__ import annotations

import enum


class ErrorCode(enum.Enum):
    """A synchronous API error code; `.text` is its default `error-info`."""

    text: str

    def __new__(cls, code: str, text: str) -> ErrorCode:
        member = object.__new__(cls)
        member._value_ = code
        member.text = text
        return member

    INVALID_REQUEST = ("E100", "Invalid request: the body must be a valid XML POST")
    BAD_API_KEY = ("E104", "Authentication failed: invalid API key")
    NO_API_ACCESS = ("E105", "This account has no API access")
    ACTION_NOT_ALLOWED = ("E107", "This action is not allowed for this account")
    BAD_XML = ("E108", "The request could not be parsed as XML")
    BAD_TO = ("E110", "Invalid 'to' / receiver number")
    BAD_FROM = ("E111", "Invalid 'from' / shortcode")
    IP_NOT_ALLOWED = ("E112", "Your IP address is not in this account's allow-list")
    THROUGHPUT_EXCEEDED = ("E113", "Throughput allowed for this action exceeded")
    BAD_FROM_MASK = ("E115", "Invalid or unsupported from-mask")
    REQUEST_LIMIT = ("E120", "This account has reached its API request limit")
    TO_REQUIRED = ("E201", "The receiver number is required")
    BAD_PAGE_NUMBER = ("E212", "Invalid page-number")
    BAD_ITEMS_PER_PAGE = ("E213", "Invalid items-per-page")
    BAD_START_DATE = ("E214", "Invalid start-date")
    TWO_OBJECTS = ("E223", "More than one object on a slide")
    OBJECT_WITH_MEDIA = ("E224", "An object cannot share a slide with image, audio or video")
    TOO_MANY_SLIDES = ("E225", "Too many slides: at most 8 are allowed")
    AUDIO_AND_VIDEO = ("E226", "Audio and video cannot share a slide")
    VIDEO_AND_IMAGE = ("E227", "Video and image cannot share a slide")
    TEXT_TOO_LONG = ("E228", "Text is longer than 5000 characters")
    CONTENT_NOT_ALLOWED = ("E229", "Content not allowed")
    BAD_DURATION = ("E230", "Invalid slide duration")
    BAD_MMS_ID = ("E241", "Invalid mms-id / MMS don't exist")
    UNKNOWN_TRACKING_ID = ("E242", "Invalid tracking-id / message doesn't exist")
    NAME_REQUIRED = ("E311", "Invalid MMS name / name is required")
    NO_SLIDES = ("E312", "At least one slide is required")
    EMPTY_SLIDE = ("E313", "Slide is empty")
    BAD_SUBJECT = ("E314", "Invalid message-subject")
    IMAGE_TOO_BIG = ("E331", "Image too big")
    AUDIO_TOO_BIG = ("E332", "Audio too big")
    VIDEO_TOO_BIG = ("E333", "Video too big")
    TEXT_FILE_TOO_LONG = ("E334", "Text too long")
    VCARD_TOO_BIG = ("E335", "vCard too big")
    ICAL_TOO_BIG = ("E336", "iCal too big")
    PDF_TOO_BIG = ("E337", "PDF too big")
    PASSBOOK_TOO_BIG = ("E338", "Passbook file too big")
    IMAGE_CORRUPT = ("E341", "Image file corrupted")
    AUDIO_CORRUPT = ("E342", "Audio file corrupted")
    VIDEO_NO_CODECS = ("E343", "Video file corrupted or missing codecs")
    OBJECT_CORRUPT = ("E344", "Object file corrupted")
    IMAGE_FETCH = ("E351", "Could not copy image")
    AUDIO_FETCH = ("E352", "Could not copy audio")
    VIDEO_FETCH = ("E353", "Could not copy video")
    TEXT_FETCH = ("E354", "Could not copy text")
    VCARD_FETCH = ("E355", "Could not copy vCard")
    ICAL_FETCH = ("E356", "Could not copy iCal")
    PDF_FETCH = ("E357", "Could not copy PDF")
    PASSBOOK_FETCH = ("E358", "Could not copy Passbook file")
    INTERNAL = ("E503", "Internal error, please retry")
    MMS_ID_REQUIRED = ("E620", "mms-id is required")
    FALLBACK_TEXT_REQUIRED = ("E622", "fallback-sms-text is required")
    TOO_MANY_RECIPIENTS = ("E623", "'to' may hold at most 100 numbers")
    TEMPLATE_ENCODING = ("E626", "MMS not available: encoding in progress, retry later")
    BAD_SERVICE_ID = ("E627", "Invalid or missing service-id")
    OPERATOR_NOT_SUPPORTED = ("E628", "Mobile operator not supported")
    UNRECOGNIZED_CONTENT_TYPE = ("E629", "Unrecognized content type")
    BAD_OPERATOR_ID = ("E650", "Invalid or missing operator-id")
    UNKNOWN_OPERATOR_ID = ("E651", "operator-id not found")
