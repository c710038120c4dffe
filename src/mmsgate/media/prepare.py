"""Prepare a message for one carrier profile: transcode every part to fit the profile's byte
budget, compose SMIL + multipart, and report what was done to each part.

The budget is shared out as transcoding goes: text and objects are kept as they are (text is
never cut), the MIME/SMIL overhead is set aside, and the rest goes to media by weight, video
first and taking most; what a part leaves unused passes to the parts after it. If the
composed message is still over budget the media targets shrink once in proportion; if it
cannot fit, the result says so (the fallback path turns that into an SMS with a link).
Transcoded outputs are cached per (source, profile, target, pipeline version).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import math
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

import anyio.to_thread

from mmsgate import errors, models
from mmsgate.media import av, av_source, compose, images
from mmsgate.models import JSONValue, MediaKind, Rendition, StoredSlide, WebPart, WebSlide
from mmsgate.profiles import WEB, CarrierProfile

VERSION = 2  # bump when transcoding changes, so cached outputs are made anew
DEFAULT_SLIDE_MS = 10_000
WEIGHTS = {MediaKind.VIDEO: 8, MediaKind.AUDIO: 3, MediaKind.IMAGE: 2}


# A stored slide or part, as the template's JSON holds it (text, duration, parts with blob
# keys): read here, at the edge of this module, into the types below.
Json = Mapping[str, Any]


@dataclasses.dataclass(frozen=True, slots=True)
class StoredPart:
    """A template part as stored: its kind and type, its blob, and what was measured of it."""

    kind: MediaKind
    content_type: str
    blob_key: str
    url: str | None = None
    width: int | None = None
    height: int | None = None
    duration_ms: int | None = None

    @classmethod
    def of(cls, part: Json) -> StoredPart:
        return cls(
            MediaKind(part["kind"]),
            part["content_type"],
            part["blob_key"],
            part.get("url"),
            part.get("width"),
            part.get("height"),
            part.get("duration_ms"),
        )


@dataclasses.dataclass(frozen=True, slots=True)
class PreparedPart:
    """A stored part with its source bytes, loaded for transcoding."""

    part: StoredPart
    data: bytes


# The message's parts by slide.
Sources = list[list[PreparedPart]]


@dataclasses.dataclass(frozen=True, slots=True)
class TranscodeReport:
    """What transcoding made of a part. `transcoded` is False for a part kept as it came
    (text, objects, one too big to fit): its measures are then the stored part's."""

    transcoded: bool = False
    width: int | None = None
    height: int | None = None
    quality: int | None = None
    codec: str | None = None
    duration_ms: int | None = None
    dropped: tuple[str, ...] = ()
    bitrate: int | None = None
    kept: str | None = None  # why the bytes are the source's own: it already suited

    def measures(self, part: StoredPart) -> tuple[int | None, int | None, int | None]:
        """Width, height and duration: this report's when transcoded, else the part's."""
        if self.transcoded:
            return self.width, self.height, self.duration_ms
        return part.width, part.height, part.duration_ms

    def to_json(self) -> dict[str, JSONValue]:
        """As the transcode cache stores it."""
        if not self.transcoded:
            return {"dropped": list(self.dropped)} if self.dropped else {}
        data: dict[str, JSONValue] = dataclasses.asdict(self)
        return {**data, "dropped": list(self.dropped)}

    @classmethod
    def from_json(cls, report: Json) -> TranscodeReport:
        """From the cache; a report without a codec is a part kept as it came."""
        dropped = tuple(report.get("dropped") or ())
        if "codec" not in report:
            return cls(dropped=dropped)
        names = ("width", "height", "quality", "codec", "duration_ms", "bitrate", "kept")
        return cls(True, dropped=dropped, **{n: report.get(n) for n in names})


@dataclasses.dataclass(frozen=True, slots=True)
class Output:
    """One transcoded part, as cached."""

    data: bytes
    content_type: str
    report: TranscodeReport = TranscodeReport()


class PartFailed(errors.MmsgateError):
    """A part could not be transcoded at all; names the part's URL and kind."""

    def __init__(self, kind: MediaKind, url: str, cause: errors.MediaError) -> None:
        self.kind, self.url, self.cause = kind, url, cause
        super().__init__(f"{kind.value} {url}: {cause.info}")


class TranscodeCache(Protocol):
    async def get(self, key: str) -> Output | None: ...

    async def put(self, key: str, output: Output) -> None: ...


@dataclasses.dataclass(frozen=True, slots=True)
class PartReport:
    """What one part became for a profile: its bytes before and after, and its measures."""

    slide: int
    kind: MediaKind
    content_type: str
    source_bytes: int
    output_bytes: int
    width: int | None
    height: int | None
    duration_ms: int | None
    codec: str | None
    quality: int | None
    dropped: tuple[str, ...]
    kept: str | None

    def to_json(self) -> dict[str, JSONValue]:
        data: dict[str, JSONValue] = {f.name: getattr(self, f.name) for f in _PART_FIELDS}
        data["kind"] = self.kind.value
        data["dropped"] = list(self.dropped)
        return data


_PART_FIELDS = dataclasses.fields(PartReport)


@dataclasses.dataclass(frozen=True, slots=True)
class PreparedReport:
    """The message's size against the profile's budget, whether it fits (else why not),
    and each part's report."""

    total_bytes: int
    budget_bytes: int
    fits: bool
    fallback: str | None
    parts: tuple[PartReport, ...]

    def to_json(self) -> dict[str, JSONValue]:
        """As the preview API answers it, the CLI prints it and the template keeps it."""
        return {
            "total_bytes": self.total_bytes,
            "budget_bytes": self.budget_bytes,
            "fits": self.fits,
            "fallback": self.fallback,
            "parts": [part.to_json() for part in self.parts],
        }


@dataclasses.dataclass(frozen=True, slots=True)
class Prepared:
    """The message for one profile, or why it cannot be sent as MMS."""

    profile: str
    composed: compose.Composed | None
    report: PreparedReport

    @property
    def fits(self) -> bool:
        return self.report.fits

    @property
    def fallback(self) -> str | None:
        """Why it cannot go as MMS, when it cannot."""
        return self.report.fallback


Load = Callable[[str], Awaitable[bytes]]


async def prepare(
    slides: Sequence[Json],
    profile: CarrierProfile,
    load: Load,
    cache: TranscodeCache | None = None,
) -> Prepared:
    """Fit stored slides (template JSON: text, duration, parts with blob keys) to `profile`.

    Raises MediaError when a part cannot be transcoded at all (corrupt, no codec).
    """
    sources = [[await _loaded(p, load) for p in s["parts"]] for s in slides]
    unsupported = _unsupported_objects(sources, profile)
    fixed = sum(len((s.get("text") or "").encode("utf-8")) for s in slides)
    fixed += sum(len(p.data) for parts in sources for p in parts if p.part.kind not in WEIGHTS)
    available = profile.budget_bytes - fixed - compose.overhead_estimate(_rough(slides, sources))
    scale = 1.0
    for _ in range(2):
        outputs, too_big = await _transcode_all(sources, profile, available * scale, cache)
        composed = None if too_big else compose.compose(_final(slides, sources, outputs))
        if composed is None or composed.size <= profile.budget_bytes:
            break
        scale *= profile.budget_bytes / composed.size * 0.95
    return Prepared(
        profile.name, composed, _report(profile, sources, outputs, composed, too_big, unsupported)
    )


async def _loaded(part: Json, load: Load) -> PreparedPart:
    return PreparedPart(StoredPart.of(part), await load(part["blob_key"]))


def _unsupported_objects(sources: Sources, profile: CarrierProfile) -> list[str]:
    found = []
    for parts in sources:
        for source in parts:
            part = source.part
            if part.kind.is_object and part.content_type not in profile.object_types:
                found.append(part.content_type)
    return found


async def _transcode_all(
    sources: Sources,
    profile: CarrierProfile,
    available: float,
    cache: TranscodeCache | None,
) -> tuple[list[list[Output]], str | None]:
    """Transcode the heaviest parts first, each given its weight's share of what is left:
    bytes a video does not need pass on to the images after it."""
    places = [(s, p) for s, parts in enumerate(sources) for p in range(len(parts))]
    order = sorted(places, key=lambda at: -WEIGHTS.get(sources[at[0]][at[1]].part.kind, 0))
    left_weight = sum(WEIGHTS.get(p.part.kind, 0) for parts in sources for p in parts)
    left = available
    done: dict[tuple[int, int], Output] = {}
    too_big = None
    for slide, index in order:
        part, data = sources[slide][index].part, sources[slide][index].data
        weight = WEIGHTS.get(part.kind, 0)
        target = max(1024, int(left * weight / left_weight)) if weight else len(data)
        try:
            output = await _one(part, data, profile, target, cache)
        except (images.ImageTooBig, av.AvTooBig) as exc:
            where = f"{part.kind.value} in slide {slide + 1}"
            too_big = too_big or f"{where} cannot fit {target} bytes: {exc}"
            output = Output(data, part.content_type, TranscodeReport(dropped=("too big",)))
        done[slide, index] = output
        if weight:
            left -= len(output.data)
            left_weight -= weight
    outputs = [[done[s, p] for p in range(len(parts))] for s, parts in enumerate(sources)]
    return outputs, too_big


async def _one(
    part: StoredPart,
    data: bytes,
    profile: CarrierProfile,
    target: int,
    cache: TranscodeCache | None,
) -> Output:
    kind = part.kind
    if kind not in WEIGHTS:
        return Output(data, part.content_type)
    key = hashlib.sha256(f"{part.blob_key}|{profile.name}|{target}|{VERSION}".encode()).hexdigest()
    if cache is not None and (hit := await cache.get(key)) is not None:
        return hit
    try:
        output = await _transcode(kind, data, profile, target)
    except errors.MediaError as exc:
        raise PartFailed(kind, part.url or "", exc) from exc
    if cache is not None:
        await cache.put(key, output)
    return output


async def _transcode(kind: MediaKind, data: bytes, profile: CarrierProfile, target: int) -> Output:
    if kind is MediaKind.IMAGE:
        image = await anyio.to_thread.run_sync(images.transcode_image, data, profile, target)
        report = TranscodeReport(
            True,
            width=image.width,
            height=image.height,
            quality=image.quality,
            codec=image.content_type.split("/")[1],
            dropped=tuple(image.dropped),
        )
        return Output(image.data, image.content_type, report)
    run = av.transcode_video if kind is MediaKind.VIDEO else av.transcode_audio
    result = await run(data, profile, target)
    report = TranscodeReport(
        True,
        width=result.width,
        height=result.height,
        codec="+".join(result.codecs),
        duration_ms=result.duration_ms,
        dropped=tuple(result.dropped),
        bitrate=result.bitrate,
        kept=None if result.fit is av_source.Fit.TRANSCODE else result.fit.value,
    )
    return Output(result.data, result.content_type, report)


def _rough(slides: Sequence[Json], sources: Sources) -> list[compose.Slide]:
    """The slides with their source parts: enough to estimate the SMIL and MIME overhead."""
    return [
        compose.Slide(
            tuple(compose.Part(p.part.kind, p.part.content_type, b"") for p in parts)
            + _text_part(s),
            DEFAULT_SLIDE_MS,
        )
        for s, parts in zip(slides, sources, strict=True)
    ]


def _text_part(slide: Json) -> tuple[compose.Part, ...]:
    text = slide.get("text")
    if not text:
        return ()
    return (compose.Part(MediaKind.TEXT, "text/plain", text.encode("utf-8")),)


def _final(
    slides: Sequence[Json], sources: Sources, outputs: list[list[Output]]
) -> list[compose.Slide]:
    result = []
    for slide, parts, outs in zip(slides, sources, outputs, strict=True):
        media = tuple(
            compose.Part(p.part.kind, o.content_type, o.data, o.report.width, o.report.height)
            for p, o in zip(parts, outs, strict=True)
        )
        durations = [o.report.duration_ms for o in outs if o.report.duration_ms]
        given = slide.get("duration")
        duration = max(durations) if durations else (given * 1000 if given else DEFAULT_SLIDE_MS)
        result.append(
            compose.Slide(media + _text_part(slide), int(math.ceil(duration / 1000) * 1000))
        )
    return result


def _report(
    profile: CarrierProfile,
    sources: Sources,
    outputs: list[list[Output]],
    composed: compose.Composed | None,
    too_big: str | None,
    unsupported: list[str],
) -> PreparedReport:
    parts = []
    for n, (src, outs) in enumerate(zip(sources, outputs, strict=True), start=1):
        for source, out in zip(src, outs, strict=True):
            width, height, duration_ms = out.report.measures(source.part)
            parts.append(
                PartReport(
                    slide=n,
                    kind=source.part.kind,
                    content_type=out.content_type,
                    source_bytes=len(source.data),
                    output_bytes=len(out.data),
                    width=width,
                    height=height,
                    duration_ms=duration_ms,
                    codec=out.report.codec,
                    quality=out.report.quality,
                    dropped=out.report.dropped,
                    kept=out.report.kept,
                )
            )
    output_bytes = sum(len(out.data) for outs in outputs for out in outs)
    total = composed.size if composed is not None else output_bytes
    fits = composed is not None and total <= profile.budget_bytes and not unsupported
    fallback = None
    if too_big or (composed is not None and total > profile.budget_bytes):
        fallback = (
            too_big or f"{total} bytes after transcoding, over the {profile.budget_bytes} budget"
        )
    elif unsupported:
        fallback = f"content the destination cannot take: {', '.join(unsupported)}"
    return PreparedReport(total, profile.budget_bytes, fits, fallback, tuple(parts))


def failure_code(kind: MediaKind) -> str:
    """The saveMMS postback code for a part that could not be encoded (E002/E003/E004)."""
    return {MediaKind.AUDIO: "E002", MediaKind.VIDEO: "E003"}.get(kind, "E004")


# What each part of the hosted page may weigh: enough for a sharp phone-width image and
# about a minute of 480p video, small enough for a slow connection.
WEB_TARGETS = {
    MediaKind.IMAGE: 400 * 1024,
    MediaKind.AUDIO: 1536 * 1024,
    MediaKind.VIDEO: 4 * 1024 * 1024,
}

Save = Callable[[bytes], Awaitable[str]]

# A second, narrower copy of each web image for the phone-width slot (the page offers both
# in `srcset`): the page's column is at most 608 CSS px and a phone's about 330, so at
# 480 px wide a phone at 1x, and any narrow slot, loads a third to a half of the bytes.
SMALL_WIDTH = 480
SMALL_TARGET = 160 * 1024
WEB_SMALL = dataclasses.replace(
    WEB,
    name="web-small",
    image_max_width=SMALL_WIDTH,
    image_max_height=2 * SMALL_WIDTH,
    gif_max_side=SMALL_WIDTH,
)


async def for_web(
    slides: Sequence[StoredSlide], load: Load, save: Save, cache: TranscodeCache | None = None
) -> tuple[WebSlide, ...]:
    """The slides as the hosted page shows them: images, audio and video transcoded for a
    phone's browser (JPEG/PNG/GIF, AAC, H.264 MP4) and saved, images wider than
    SMALL_WIDTH with a `small` rendition too; other parts as they came.

    Raises PartFailed when a part cannot be transcoded at all."""
    page = []
    for slide in slides:
        parts = [await _web_part(_source_of(p), load, save, cache) for p in slide.parts]
        page.append(WebSlide(slide.text, slide.duration, tuple(parts)))
    return tuple(page)


def _source_of(part: models.StoredPart) -> StoredPart:
    return StoredPart(
        part.kind,
        part.content_type,
        part.blob_key,
        part.url,
        part.width,
        part.height,
        part.duration_ms,
    )


async def _web_part(
    part: StoredPart, load: Load, save: Save, cache: TranscodeCache | None
) -> WebPart:
    data = await load(part.blob_key)
    output = Output(data, part.content_type)
    if part.kind in WEB_TARGETS:
        with contextlib.suppress(images.ImageTooBig, av.AvTooBig):
            output = await _one(part, data, WEB, WEB_TARGETS[part.kind], cache)
    width, height, duration_ms = output.report.measures(part)
    return WebPart(
        kind=part.kind,
        content_type=output.content_type,
        blob_key=await save(output.data),
        bytes=len(output.data),
        width=width,
        height=height,
        duration_ms=duration_ms,
        name=_file_name(part.url),
        small=await _small(part, data, output, save, cache),
    )


async def _small(
    part: StoredPart, data: bytes, web: Output, save: Save, cache: TranscodeCache | None
) -> Rendition | None:
    """The narrow rendition of a web image, made from the source; None for other kinds,
    for an image no wider than SMALL_WIDTH, or when it would save nothing."""
    width = web.report.width or 0
    if part.kind is not MediaKind.IMAGE or width <= SMALL_WIDTH:
        return None
    try:
        small = await _one(part, data, WEB_SMALL, SMALL_TARGET, cache)
    except images.ImageTooBig:
        return None
    small_width = small.report.width or 0
    if len(small.data) >= len(web.data) or small_width >= width:
        return None
    return Rendition(
        small.content_type,
        await save(small.data),
        len(small.data),
        small.report.width,
        small.report.height,
    )


def _file_name(url: str | None) -> str | None:
    """The last path segment of the source URL, for download buttons."""
    if not url:
        return None
    name = urllib.parse.unquote(urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1])
    return name or None
