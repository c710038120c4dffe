"""What an audio or video input holds, read by PyAV (headers only, in-process), and whether
it already is what a carrier profile asks for.

Transcoding a file that fits gains nothing and costs twice: the output is a second lossy
generation of the same pictures, and a bitrate worked out from the byte target is usually
far above a phone clip's own (a 66 KB, 4 s clip came out at 822 KB). So a part whose
container, codecs, frame size, rate and length all suit the profile, and whose bytes fit
the target, is kept (`Fit.KEEP`); one whose streams suit but whose container does not, or
whose container carries tags (a phone's GPS position, its recording time), is re-muxed,
its streams copied bit for bit (`Fit.REMUX`); anything else is transcoded, never at more
bits per second than the source has (see `av.make_plan`).
"""

from __future__ import annotations

import dataclasses
import enum
import pathlib

import av as pyav

from mmsgate.media import sniff
from mmsgate.profiles import CarrierProfile

# ffmpeg's muxer for each type a profile asks for: two types with one muxer are one container.
MUXERS = {
    "video/mp4": "mp4",
    "video/3gpp": "3gp",
    "audio/mp4": "mp4",
    "audio/3gpp": "3gp",
    "audio/amr": "amr",
    "audio/mpeg": "mp3",
}
# The decoder's name for each codec a profile names (PyAV reports decoders).
DECODED_AS = {"amr_nb": "amrnb"}
# What mmsgate's own H.264 is (Constrained Baseline, level 3.0): what every MMS handset plays.
H264_PROFILES = ("Baseline", "Constrained Baseline")
H264_MAX_LEVEL = 30
# Container tags that say nothing about the sender; any other tag makes a re-mux drop them.
TECHNICAL_TAGS = frozenset({"major_brand", "minor_version", "compatible_brands", "encoder"})


class Fit(enum.Enum):
    """What a source needs to become the profile's part."""

    KEEP = "kept as sent"
    REMUX = "re-muxed, streams copied"
    TRANSCODE = "transcoded"


@dataclasses.dataclass(frozen=True, slots=True)
class Source:
    """What the probe found in the input: the facts the encoding plan needs."""

    duration_s: float
    width: int | None
    height: int | None
    fps: float | None
    has_audio: bool
    channels: int
    video_codec: str | None = None
    video_profile: str | None = None
    video_level: int | None = None
    pixel_format: str | None = None
    audio_codec: str | None = None
    video_bitrate: int = 0  # bits per second; 0 when the file does not say
    audio_bitrate: int = 0
    other_streams: int = 0  # subtitles, data, a second picture or sound
    tagged: bool = False  # the container carries tags beyond the technical ones


_AV_ERRORS = (pyav.error.FFmpegError, OSError, ValueError, EOFError, IndexError)


# A quick look first (headers only); the full default analysis when it leaves gaps.
_QUICK_PROBE = {"probesize": "32768", "analyzeduration": "0"}


def probe(path: pathlib.Path, video: bool) -> Source | None:
    """The input's duration, frame size and rate, codecs and audio; None when nothing usable."""
    quick = _probe(path, video, _QUICK_PROBE)
    complete = quick is not None and quick.duration_s > 0
    if complete and video and quick is not None:
        complete = bool(quick.width and quick.height and quick.fps)
    return quick if complete else _probe(path, video, {})


def _probe(path: pathlib.Path, video: bool, options: dict[str, str]) -> Source | None:
    try:
        with pyav.open(str(path), mode="r", options=options) as container:
            pictures = [
                s
                for s in container.streams.video
                if not s.disposition & pyav.stream.Disposition.attached_pic
            ]
            sounds = container.streams.audio
            if (video and not pictures) or (not video and not sounds):
                return None
            duration = _duration_s(container, (pictures or sounds)[0])
            return _source(container, pictures[0] if video else None, sounds, duration)
    except _AV_ERRORS:
        return None


def _source(
    container: pyav.container.InputContainer,
    picture: pyav.video.stream.VideoStream | None,
    sounds: tuple[pyav.audio.stream.AudioStream, ...],
    duration: float,
) -> Source:
    sound = sounds[0].codec_context if sounds else None
    audio_bitrate = (sound.bit_rate or 0) if sound else 0
    video_bitrate = 0
    if picture is not None:
        whole = container.bit_rate or 0  # the file's size over its duration
        video_bitrate = picture.codec_context.bit_rate or max(0, whole - audio_bitrate)
    used = (1 if picture else 0) + (1 if sound else 0)
    return Source(
        duration_s=duration,
        width=picture.codec_context.width if picture else None,
        height=picture.codec_context.height if picture else None,
        fps=float(picture.average_rate) if picture and picture.average_rate else None,
        has_audio=bool(sounds),
        channels=sound.channels if sound else 0,
        video_codec=picture.codec_context.name if picture else None,
        video_profile=picture.codec_context.profile if picture else None,
        video_level=picture.codec_context.level if picture else None,
        pixel_format=_pixel_format(picture),
        audio_codec=sound.name if sound else None,
        video_bitrate=video_bitrate,
        audio_bitrate=audio_bitrate,
        other_streams=len(container.streams) - used,
        tagged=bool(set(container.metadata) - TECHNICAL_TAGS),
    )


def _pixel_format(picture: pyav.video.stream.VideoStream | None) -> str | None:
    layout = picture.codec_context.format if picture is not None else None
    return layout.name if layout is not None else None


def _duration_s(container: pyav.container.InputContainer, stream: pyav.stream.Stream) -> float:
    if container.duration is not None and container.duration > 0:
        return float(container.duration) / 1_000_000  # AV_TIME_BASE
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    return 0.0


def fit(source: Source, data: bytes, profile: CarrierProfile, target: int, *, video: bool) -> Fit:
    """Whether `data` can go as it is, re-muxed, or must be transcoded for `profile`."""
    suits = _video_suits(source, profile) if video else _audio_suits(source, profile)
    if not suits or len(data) > target or source.other_streams:
        return Fit.TRANSCODE
    wanted = MUXERS[profile.video_type if video else profile.audio_type]
    if MUXERS.get(sniff.sniff(data) or "") != wanted or source.tagged:
        return Fit.REMUX
    return Fit.KEEP


def _video_suits(source: Source, profile: CarrierProfile) -> bool:
    codec = source.video_codec
    if codec != profile.video_codec or source.pixel_format != "yuv420p":
        return False
    if codec == "h264" and (
        source.video_profile not in H264_PROFILES or (source.video_level or 99) > H264_MAX_LEVEL
    ):
        return False
    sound = not source.has_audio or source.audio_codec == _decoded(profile.video_audio_codec)
    return (
        sound
        and source.channels <= 2
        and (source.width or 0) <= profile.video_max_width
        and (source.height or 0) <= profile.video_max_height
        and (source.fps or 0) <= profile.video_max_fps + 0.5
        and source.duration_s <= profile.max_duration_s + 0.5
    )


def _audio_suits(source: Source, profile: CarrierProfile) -> bool:
    return (
        source.audio_codec == _decoded(profile.audio_codec)
        and source.channels <= 2
        and source.audio_bitrate <= profile.audio_bitrate * 1.05
        and source.duration_s <= profile.max_duration_s + 0.5
    )


def _decoded(codec: str) -> str:
    return DECODED_AS.get(codec, codec)
