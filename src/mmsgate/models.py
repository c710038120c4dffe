"""The values every part of mmsgate shares: slides, media, accounts, states.

Frozen dataclasses and enums only; nothing here does I/O.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import re
from collections.abc import Mapping
from typing import TypeAlias

# A value as JSON holds it (what the store keeps in its JSON columns).
JSONValue: TypeAlias = str | int | float | bool | list["JSONValue"] | dict[str, "JSONValue"] | None


class MediaKind(enum.Enum):
    """What a slide element holds; objects (vCard, iCal, PDF, Passbook) are exclusive."""

    IMAGE = "image"
    AUDIO = "audio"
    VIDEO = "video"
    TEXT = "text"
    VCARD = "vcard"
    ICAL = "ical"
    PDF = "pdf"
    PASSBOOK = "passbook"

    @property
    def is_object(self) -> bool:
        return self in _OBJECTS


_OBJECTS = frozenset({MediaKind.VCARD, MediaKind.ICAL, MediaKind.PDF, MediaKind.PASSBOOK})


class AccountMode(enum.Enum):
    """Optimized accounts fall back to an SMS link; standard accounts send MMS only."""

    OPTIMIZED = "optimized"
    STANDARD = "standard"


class PostbackFormat(enum.Enum):
    """How an account's postbacks are written: Sinch's XML (the default, as the XML API
    has always posted) or Sinch's JSON (API reference §8.3, §8.4)."""

    XML = "xml"
    JSON = "json"


class Action(enum.Enum):
    """The Sinch XML actions, spelled as the API spells them."""

    SEND_MMS = "sendMMS"
    SAVE_MMS = "saveMMS"
    SEND_SAVED_MMS = "sendSavedMMS"
    DELETE_MMS_ID = "deleteMMSID"
    GET_MMS_TEMPLATES = "getMMSTemplates"

    @classmethod
    def lookup(cls, name: str) -> Action | None:
        """Find an action by name, ignoring case, spaces and underscores (`save_mms`)."""
        key = re.sub(r"[\s_]", "", name).lower()
        return _ACTIONS_BY_KEY.get(key)


_ACTIONS_BY_KEY = {a.value.lower(): a for a in Action}


class TemplateState(enum.Enum):
    """Where a stored template is: being encoded, usable, or failed to encode."""

    ENCODING = "encoding"
    READY = "ready"
    FAILED = "failed"


class RecipientState(enum.Enum):
    """The life of one recipient of one send; later states never go back."""

    QUEUED = "queued"
    SUBMITTED = "submitted"
    DELIVERED = "delivered"
    REJECTED = "rejected"
    EXPIRED = "expired"
    FAILED = "failed"
    # MMS could not go: an SMS with a link to the hosted page goes instead.
    FALLBACK = "fallback"  # decided, the SMS not yet accepted by the SMSC
    SMS_SUBMITTED = "sms_submitted"
    SMS_DELIVERED = "sms_delivered"
    SMS_FAILED = "sms_failed"


class JobKind(enum.Enum):
    """The work a queued job asks a worker to do."""

    DELIVER = "deliver"
    ENCODE_TEMPLATE = "encode_template"
    POSTBACK = "postback"
    FALLBACK_SMS = "fallback_sms"


class JobState(enum.Enum):
    """A job waits, runs under a lease, ends done, or ends dead after its last attempt."""

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    DEAD = "dead"


@dataclasses.dataclass(frozen=True, slots=True)
class MediaRef:
    """A media element of a slide as the client named it."""

    kind: MediaKind
    url: str


@dataclasses.dataclass(frozen=True, slots=True)
class SlideSpec:
    """One slide as requested: optional text, media and duration in seconds."""

    text: str | None = None
    media: tuple[MediaRef, ...] = ()
    duration: int | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class StoredPart:
    """A fetched, checked media part; its bytes live in the blob store under `blob_key`."""

    kind: MediaKind
    url: str
    blob_key: str
    content_type: str
    size: int
    width: int | None = None
    height: int | None = None
    duration_ms: int | None = None
    codecs: tuple[str, ...] = ()

    def to_data(self) -> dict[str, JSONValue]:
        """The part as JSON-able data, as a template keeps it."""
        data: dict[str, JSONValue] = {name: getattr(self, name) for name in _PART_PLAIN}
        data["kind"] = self.kind.value
        data["codecs"] = list(self.codecs)
        return data

    @classmethod
    def from_data(cls, data: Mapping[str, JSONValue]) -> StoredPart:
        """The part `to_data` wrote (a part kept without codecs has none)."""
        plain = {name: data.get(name) for name in _PART_PLAIN}
        codecs = data.get("codecs")
        return cls(
            kind=MediaKind(data["kind"]),
            codecs=tuple(str(c) for c in codecs) if isinstance(codecs, list) else (),
            **plain,  # type: ignore[arg-type]
        )


_PART_PLAIN = tuple(
    f.name for f in dataclasses.fields(StoredPart) if f.name not in ("kind", "codecs")
)


@dataclasses.dataclass(frozen=True, slots=True)
class StoredSlide:
    """A slide of a stored template: its text, checked parts, and duration."""

    text: str | None
    parts: tuple[StoredPart, ...]
    duration: int | None

    def to_data(self) -> dict[str, JSONValue]:
        """The slide as JSON-able data, as a template keeps it (and media preparation reads)."""
        parts: list[JSONValue] = [part.to_data() for part in self.parts]
        return {"text": self.text, "duration": self.duration, "parts": parts}

    @classmethod
    def from_data(cls, data: Mapping[str, JSONValue]) -> StoredSlide:
        """The slide `to_data` wrote."""
        text, duration, parts = data.get("text"), data.get("duration"), data.get("parts")
        return cls(
            text=text if isinstance(text, str) else None,
            parts=tuple(StoredPart.from_data(p) for p in parts or () if isinstance(p, dict))
            if isinstance(parts, list)
            else (),
            duration=duration if isinstance(duration, int) else None,
        )


def _str(data: Mapping[str, JSONValue], key: str) -> str | None:
    value = data.get(key)
    return value if isinstance(value, str) else None


def _int(data: Mapping[str, JSONValue], key: str) -> int | None:
    value = data.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _required(data: Mapping[str, JSONValue], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        raise ValueError(f"a stored page part has no {key}")
    return value


@dataclasses.dataclass(frozen=True, slots=True)
class Rendition:
    """A narrower copy of a hosted page's image, for a phone-width slot."""

    content_type: str
    blob_key: str
    bytes: int
    width: int | None
    height: int | None

    def to_data(self) -> dict[str, JSONValue]:
        return dataclasses.asdict(self)

    @classmethod
    def from_data(cls, data: Mapping[str, JSONValue]) -> Rendition:
        return cls(
            _required(data, "content_type"),
            _required(data, "blob_key"),
            _int(data, "bytes") or 0,
            _int(data, "width"),
            _int(data, "height"),
        )


@dataclasses.dataclass(frozen=True, slots=True)
class WebPart:
    """A part of a hosted page, as prepared for a phone's browser and saved as a blob."""

    kind: MediaKind
    content_type: str
    blob_key: str
    bytes: int
    width: int | None = None
    height: int | None = None
    duration_ms: int | None = None
    name: str | None = None  # the source's file name, for downloads
    alt: str | None = None
    small: Rendition | None = None

    def to_data(self) -> dict[str, JSONValue]:
        """The part as the fallbacks row keeps it."""
        data: dict[str, JSONValue] = {name: getattr(self, name) for name in _WEB_PLAIN}
        data["kind"] = self.kind.value
        data["small"] = None if self.small is None else self.small.to_data()
        return data

    @classmethod
    def from_data(cls, data: Mapping[str, JSONValue]) -> WebPart:
        """The part `to_data` wrote (a key missing from an older row reads as None)."""
        small = data.get("small")
        return cls(
            kind=MediaKind(data.get("kind")),
            content_type=_required(data, "content_type"),
            blob_key=_required(data, "blob_key"),
            bytes=_int(data, "bytes") or 0,
            width=_int(data, "width"),
            height=_int(data, "height"),
            duration_ms=_int(data, "duration_ms"),
            name=_str(data, "name"),
            alt=_str(data, "alt"),
            small=Rendition.from_data(small) if isinstance(small, dict) and small else None,
        )


_WEB_PLAIN = ("content_type", "blob_key", "bytes", "width", "height", "duration_ms", "name", "alt")


@dataclasses.dataclass(frozen=True, slots=True)
class WebSlide:
    """A slide of a hosted page: its text, duration (seconds) and parts."""

    text: str | None
    duration: int | None
    parts: tuple[WebPart, ...]

    def to_data(self) -> dict[str, JSONValue]:
        """The slide as the fallbacks row keeps it: the one place the page's JSON is written."""
        parts: list[JSONValue] = [part.to_data() for part in self.parts]
        return {"text": self.text, "duration": self.duration, "parts": parts}

    @classmethod
    def from_data(cls, data: Mapping[str, JSONValue]) -> WebSlide:
        """The slide `to_data` wrote: the one place the page's JSON is read."""
        parts = data.get("parts")
        found = parts if isinstance(parts, list) else []
        return cls(
            _str(data, "text"),
            _int(data, "duration"),
            tuple(WebPart.from_data(p) for p in found if isinstance(p, dict)),
        )


@dataclasses.dataclass(frozen=True, slots=True)
class Account:
    """A client of the API and the rules its requests are held to."""

    id: int
    name: str
    senders: tuple[str, ...]
    service_ids: tuple[str, ...] = ()
    mode: AccountMode = AccountMode.OPTIMIZED
    postback_url: str | None = None
    allowed_ips: tuple[str, ...] = ()
    allowed_actions: tuple[str, ...] | None = None
    max_rps: float | None = None
    daily_limit: int | None = None
    api_enabled: bool = True
    created_at: dt.datetime | None = None
    mms_expiry_hours: int | None = None  # default lifetime of a send (else 72 h)
    postback_format: PostbackFormat = PostbackFormat.XML

    def may(self, action: Action) -> bool:
        """Whether this account may call `action` (None allows every action)."""
        return self.allowed_actions is None or action.value in self.allowed_actions


@dataclasses.dataclass(frozen=True, slots=True)
class TemplateInfo:
    """What the API needs to know about a stored template before sending it."""

    id: int
    account_id: int
    name: str
    subject: str | None
    state: TemplateState
    slide_count: int
    total_size: int
    created_at: dt.datetime
    fallback_sms_text: str | None = None
    disable_fallback: bool | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class PostbackTarget:
    """Where an account's postbacks go, the secret they are signed with, and their format."""

    url: str | None
    secret: str
    format: PostbackFormat = PostbackFormat.XML


class PostbackKind(enum.Enum):
    """What a postback tells: an MT recipient's fate (N101…E202), a saveMMS outcome (N003,
    E002…E004), or a message received (N401)."""

    DELIVERY = "delivery"
    TEMPLATE = "template"
    MO = "mo"


@dataclasses.dataclass(frozen=True, slots=True)
class PostbackEvent:
    """One event an account is told of by postback. Queued as data (`to_data`) and rendered
    in the account's format when it is sent, so the queue holds no wire format."""

    kind: PostbackKind
    account_id: int
    code: str
    at: dt.datetime | None = None
    tracking_id: str | None = None
    mms_id: int | None = None
    sender: str | None = None
    to: str | None = None
    sent_as: str | None = None
    status: str | None = None  # overrides the code's usual status text
    operator_id: int | None = None
    handset: str | None = None
    details: str | None = None
    failed: MediaKind | None = None  # the kind of the part a saveMMS could not prepare
    failed_url: str | None = None
    subject: str | None = None
    files: tuple[str, ...] = ()  # an MO's content URLs
    client_reference: str | None = None  # the send's (or saveMMS's) own, echoed back
    campaign_ref: str | None = None  # the send's campaign-ref, echoed back
    keyword: str | None = None  # an MO's first word (postback_json, §8.4)
    copy_to: tuple[str, ...] = ()  # the other members of a group MO

    def to_data(self) -> dict[str, object]:
        """The event as JSON-able data (fields with no value left out)."""
        data: dict[str, object] = {"kind": self.kind.value}
        for name in _EVENT_PLAIN:
            value = getattr(self, name)
            if value is not None:
                data[name] = value
        if self.at is not None:
            data["at"] = self.at.isoformat()
        if self.failed is not None:
            data["failed"] = self.failed.value
        if self.files:
            data["files"] = list(self.files)
        if self.copy_to:
            data["copy_to"] = list(self.copy_to)
        return data

    @classmethod
    def from_data(cls, data: Mapping[str, object]) -> PostbackEvent:
        """The event `to_data` wrote."""
        plain = {name: data[name] for name in _EVENT_PLAIN if name in data}
        at, failed, files = data.get("at"), data.get("failed"), data.get("files")
        copy_to = data.get("copy_to")
        return cls(
            kind=PostbackKind(data["kind"]),
            at=dt.datetime.fromisoformat(at) if isinstance(at, str) else None,
            failed=MediaKind(failed) if failed is not None else None,
            files=tuple(str(f) for f in files) if isinstance(files, list) else (),
            copy_to=tuple(str(n) for n in copy_to) if isinstance(copy_to, list) else (),
            **plain,  # type: ignore[arg-type]
        )


_EVENT_PLAIN = tuple(
    f.name
    for f in dataclasses.fields(PostbackEvent)
    if f.name not in ("kind", "at", "failed", "files", "copy_to")
)

MERGE_TAG = re.compile(r"\{\$([A-Za-z0-9_\-]+)(?:\|([^}]*))?\}")


def render_merge_tags(text: str, data: Mapping[str, str]) -> str:
    """Replace `{$name|default}` tags from `data` (names match case-insensitively)."""
    lowered = {k.lower(): v for k, v in data.items()}

    def substitute(match: re.Match[str]) -> str:
        value = lowered.get(match.group(1).lower())
        if value is not None:
            return value
        return match.group(2) if match.group(2) is not None else ""

    return MERGE_TAG.sub(substitute, text)
