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
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import anyio.to_thread

from mmsgate import errors
from mmsgate.media import av, av_source, compose, images
from mmsgate.models import MediaKind
from mmsgate.profiles import WEB, CarrierProfile

VERSION = 2  # bump when transcoding changes, so cached outputs are made anew
DEFAULT_SLIDE_MS = 10_000
WEIGHTS = {MediaKind.VIDEO: 8, MediaKind.AUDIO: 3, MediaKind.IMAGE: 2}


@dataclasses.dataclass(frozen=True, slots=True)
class Output:
    """One transcoded part, as cached."""

    data: bytes
    content_type: str
    report: dict[str, Any]


class PartFailed(errors.MmsgateError):
    """A part could not be transcoded at all; names the part's URL and kind."""

    def __init__(self, kind: MediaKind, url: str, cause: errors.MediaError) -> None:
        self.kind, self.url, self.cause = kind, url, cause
        super().__init__(f"{kind.value} {url}: {cause.info}")


class TranscodeCache(Protocol):
    async def get(self, key: str) -> Output | None: ...

    async def put(self, key: str, output: Output) -> None: ...


@dataclasses.dataclass(frozen=True, slots=True)
class Prepared:
    """The message for one profile, or why it cannot be sent as MMS."""

    profile: str
    composed: compose.Composed | None
    report: dict[str, Any]

    @property
    def fits(self) -> bool:
        return bool(self.report["fits"])


Load = Callable[[str], Awaitable[bytes]]


async def prepare(
    slides: Sequence[dict[str, Any]],
    profile: CarrierProfile,
    load: Load,
    cache: TranscodeCache | None = None,
) -> Prepared:
    """Fit stored slides (template JSON: text, duration, parts with blob keys) to `profile`.

    Raises MediaError when a part cannot be transcoded at all (corrupt, no codec).
    """
    sources = [[(p, await load(p["blob_key"])) for p in s["parts"]] for s in slides]
    unsupported = _unsupported_objects(sources, profile)
    fixed = sum(len((s.get("text") or "").encode("utf-8")) for s in slides)
    fixed += sum(len(d) for parts in sources for p, d in parts if _kind(p) not in WEIGHTS)
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


def _kind(part: dict[str, Any]) -> MediaKind:
    return MediaKind(part["kind"])


def _unsupported_objects(
    sources: list[list[tuple[dict[str, Any], bytes]]], profile: CarrierProfile
) -> list[str]:
    found = []
    for parts in sources:
        for part, _ in parts:
            kind = _kind(part)
            if kind.is_object and part["content_type"] not in profile.object_types:
                found.append(part["content_type"])
    return found


async def _transcode_all(
    sources: list[list[tuple[dict[str, Any], bytes]]],
    profile: CarrierProfile,
    available: float,
    cache: TranscodeCache | None,
) -> tuple[list[list[Output]], str | None]:
    """Transcode the heaviest parts first, each given its weight's share of what is left:
    bytes a video does not need pass on to the images after it."""
    places = [(s, p) for s, parts in enumerate(sources) for p in range(len(parts))]
    order = sorted(places, key=lambda at: -WEIGHTS.get(_kind(sources[at[0]][at[1]][0]), 0))
    left_weight = sum(WEIGHTS.get(_kind(part), 0) for parts in sources for part, _ in parts)
    left = available
    done: dict[tuple[int, int], Output] = {}
    too_big = None
    for slide, index in order:
        part, data = sources[slide][index]
        weight = WEIGHTS.get(_kind(part), 0)
        target = max(1024, int(left * weight / left_weight)) if weight else len(data)
        try:
            output = await _one(part, data, profile, target, cache)
        except (images.ImageTooBig, av.AvTooBig) as exc:
            where = f"{_kind(part).value} in slide {slide + 1}"
            too_big = too_big or f"{where} cannot fit {target} bytes: {exc}"
            output = Output(data, part["content_type"], {"dropped": ["too big"]})
        done[slide, index] = output
        if weight:
            left -= len(output.data)
            left_weight -= weight
    outputs = [[done[s, p] for p in range(len(parts))] for s, parts in enumerate(sources)]
    return outputs, too_big


async def _one(
    part: dict[str, Any],
    data: bytes,
    profile: CarrierProfile,
    target: int,
    cache: TranscodeCache | None,
) -> Output:
    kind = _kind(part)
    if kind not in WEIGHTS:
        return Output(data, part["content_type"], {})
    key = hashlib.sha256(
        f"{part['blob_key']}|{profile.name}|{target}|{VERSION}".encode()
    ).hexdigest()
    if cache is not None and (hit := await cache.get(key)) is not None:
        return hit
    try:
        output = await _transcode(kind, data, profile, target)
    except errors.MediaError as exc:
        raise PartFailed(kind, part["url"], exc) from exc
    if cache is not None:
        await cache.put(key, output)
    return output


async def _transcode(kind: MediaKind, data: bytes, profile: CarrierProfile, target: int) -> Output:
    if kind is MediaKind.IMAGE:
        image = await anyio.to_thread.run_sync(images.transcode_image, data, profile, target)
        report = {
            "width": image.width,
            "height": image.height,
            "quality": image.quality,
            "codec": image.content_type.split("/")[1],
            "duration_ms": None,
            "dropped": list(image.dropped),
        }
        return Output(image.data, image.content_type, report)
    run = av.transcode_video if kind is MediaKind.VIDEO else av.transcode_audio
    result = await run(data, profile, target)
    report = {
        "width": result.width,
        "height": result.height,
        "quality": None,
        "codec": "+".join(result.codecs),
        "duration_ms": result.duration_ms,
        "dropped": list(result.dropped),
        "bitrate": result.bitrate,
        # Why the bytes may be the source's own: it already suited the profile.
        "kept": None if result.fit is av_source.Fit.TRANSCODE else result.fit.value,
    }
    return Output(result.data, result.content_type, report)


def _rough(
    slides: Sequence[dict[str, Any]], sources: list[list[tuple[dict[str, Any], bytes]]]
) -> list[compose.Slide]:
    """The slides with their source parts: enough to estimate the SMIL and MIME overhead."""
    return [
        compose.Slide(
            tuple(compose.Part(_kind(p), p["content_type"], b"") for p, _ in parts) + _text_part(s),
            DEFAULT_SLIDE_MS,
        )
        for s, parts in zip(slides, sources, strict=True)
    ]


def _text_part(slide: dict[str, Any]) -> tuple[compose.Part, ...]:
    text = slide.get("text")
    if not text:
        return ()
    return (compose.Part(MediaKind.TEXT, "text/plain", text.encode("utf-8")),)


def _final(
    slides: Sequence[dict[str, Any]],
    sources: list[list[tuple[dict[str, Any], bytes]]],
    outputs: list[list[Output]],
) -> list[compose.Slide]:
    result = []
    for slide, parts, outs in zip(slides, sources, outputs, strict=True):
        media = tuple(
            compose.Part(
                _kind(p), o.content_type, o.data, o.report.get("width"), o.report.get("height")
            )
            for (p, _), o in zip(parts, outs, strict=True)
        )
        durations = [o.report["duration_ms"] for o in outs if o.report.get("duration_ms")]
        given = slide.get("duration")
        duration = max(durations) if durations else (given * 1000 if given else DEFAULT_SLIDE_MS)
        result.append(
            compose.Slide(media + _text_part(slide), int(math.ceil(duration / 1000) * 1000))
        )
    return result


def _report(
    profile: CarrierProfile,
    sources: list[list[tuple[dict[str, Any], bytes]]],
    outputs: list[list[Output]],
    composed: compose.Composed | None,
    too_big: str | None,
    unsupported: list[str],
) -> dict[str, Any]:
    parts = []
    for n, (src, outs) in enumerate(zip(sources, outputs, strict=True), start=1):
        for (part, data), out in zip(src, outs, strict=True):
            parts.append(
                {
                    "slide": n,
                    "kind": part["kind"],
                    "content_type": out.content_type,
                    "source_bytes": len(data),
                    "output_bytes": len(out.data),
                    "width": out.report.get("width", part.get("width")),
                    "height": out.report.get("height", part.get("height")),
                    "duration_ms": out.report.get("duration_ms", part.get("duration_ms")),
                    "codec": out.report.get("codec"),
                    "quality": out.report.get("quality"),
                    "dropped": out.report.get("dropped", []),
                    "kept": out.report.get("kept"),
                }
            )
    total = composed.size if composed is not None else sum(p["output_bytes"] for p in parts)
    fits = composed is not None and total <= profile.budget_bytes and not unsupported
    fallback = None
    if too_big or (composed is not None and total > profile.budget_bytes):
        fallback = (
            too_big or f"{total} bytes after transcoding, over the {profile.budget_bytes} budget"
        )
    elif unsupported:
        fallback = f"content the destination cannot take: {', '.join(unsupported)}"
    return {
        "total_bytes": total,
        "budget_bytes": profile.budget_bytes,
        "fits": fits,
        "fallback": fallback,
        "parts": parts,
    }


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
    slides: Sequence[dict[str, Any]], load: Load, save: Save, cache: TranscodeCache | None = None
) -> list[dict[str, Any]]:
    """The slides as the hosted page shows them: images, audio and video transcoded for a
    phone's browser (JPEG/PNG/GIF, AAC, H.264 MP4) and saved, images wider than
    SMALL_WIDTH with a `small` rendition too; other parts as they came.

    Raises PartFailed when a part cannot be transcoded at all."""
    page = []
    for slide in slides:
        parts = [await _web_part(part, load, save, cache) for part in slide["parts"]]
        page.append({"text": slide.get("text"), "duration": slide.get("duration"), "parts": parts})
    return page


async def _web_part(
    part: dict[str, Any], load: Load, save: Save, cache: TranscodeCache | None
) -> dict[str, Any]:
    data = await load(part["blob_key"])
    kind = _kind(part)
    output = Output(data, part["content_type"], {})
    if kind in WEB_TARGETS:
        with contextlib.suppress(images.ImageTooBig, av.AvTooBig):
            output = await _one(part, data, WEB, WEB_TARGETS[kind], cache)
    return {
        "kind": kind.value,
        "content_type": output.content_type,
        "blob_key": await save(output.data),
        "bytes": len(output.data),
        "width": output.report.get("width", part.get("width")),
        "height": output.report.get("height", part.get("height")),
        "duration_ms": output.report.get("duration_ms", part.get("duration_ms")),
        "name": _file_name(part.get("url")),
        "alt": None,
        "small": await _small(part, data, output, save, cache),
    }


async def _small(
    part: dict[str, Any], data: bytes, web: Output, save: Save, cache: TranscodeCache | None
) -> dict[str, Any] | None:
    """The narrow rendition of a web image, made from the source; None for other kinds,
    for an image no wider than SMALL_WIDTH, or when it would save nothing."""
    width = web.report.get("width") or 0
    if _kind(part) is not MediaKind.IMAGE or width <= SMALL_WIDTH:
        return None
    try:
        small = await _one(part, data, WEB_SMALL, SMALL_TARGET, cache)
    except images.ImageTooBig:
        return None
    if len(small.data) >= len(web.data) or small.report["width"] >= width:
        return None
    return {
        "content_type": small.content_type,
        "blob_key": await save(small.data),
        "bytes": len(small.data),
        "width": small.report["width"],
        "height": small.report["height"],
    }


def _file_name(url: str | None) -> str | None:
    """The last path segment of the source URL, for download buttons."""
    if not url:
        return None
    name = urllib.parse.unquote(urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1])
    return name or None
