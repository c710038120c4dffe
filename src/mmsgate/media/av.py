"""Transcode audio and video to fit a carrier profile and a byte target, with ffmpeg.

Why ffmpeg as a child process (the static binary that imageio-ffmpeg ships) rather than PyAV
in this process: each job gets a hard timeout and an address-space cap (`ulimit -v`), and a
decoder crash on a hostile file kills the child, never the worker. The binary has libx264,
AAC, H.263 and libopencore_amrnb (PyAV 19 wheels lack the AMR-NB encoder). PyAV stays for
probing, which reads headers only and is quick in-process.

Sizing is arithmetic, not trial and error: the video bitrate is the byte target's bits over
the (capped) duration, less the audio, and x264's VBV (`maxrate` = `bufsize` = bitrate) bounds
the total at bitrate × (duration + 1 s). The frame size and rate come down with the bitrate
so each frame keeps enough bits to look like something. One retry with a lower bitrate covers
the rare overshoot. No bitrate is ever above the source's own: re-encoding a clip at more
bits per second than it has makes it bigger, never better. And a part that already suits the
profile is not re-encoded at all (see `av_source`).
"""

from __future__ import annotations

import dataclasses
import math
import pathlib
import subprocess
import tempfile
from collections.abc import Sequence

import anyio
import anyio.to_thread
import av as pyav
import imageio_ffmpeg

from mmsgate import errors
from mmsgate.codes import ErrorCode
from mmsgate.media.av_source import MUXERS, Fit, Source, fit, probe
from mmsgate.profiles import CarrierProfile

MEMORY_LIMIT = 1536 * 1024 * 1024  # address space of one ffmpeg child
BASE_TIMEOUT_S = 30.0
TIMEOUT_PER_SECOND = 3.0  # wall seconds allowed per second of media, on top of the base
MARGIN = 0.92  # share of the target spent on media bits; the rest is container and slack

# AMR-NB has eight modes (3GPP TS 26.071); the encoder takes only these rates.
AMR_RATES = (12_200, 10_200, 7_950, 7_400, 6_700, 5_900, 5_150, 4_750)
ENCODERS = {
    "h264": "libx264",
    "h263": "h263",
    "aac": "aac",
    "amr_nb": "libopencore_amrnb",
    "mp3": "libmp3lame",
}
MIN_AUDIO_BITRATE = {"aac": 16_000, "mp3": 32_000, "amr_nb": 4_750}
MIN_VIDEO_BITRATE = {"h264": 16_000, "h263": 20_000}
# Frame boxes tried as the bitrate falls; the first whose bits per pixel suffice wins.
BOXES = (640, 480, 360, 240, 176)
MIN_BITS_PER_PIXEL = 0.04
# Standard H.263 picture sizes (ITU-T H.263 §4.1): the encoder takes no other.
H263_SIZE = (176, 144)


@dataclasses.dataclass(frozen=True, slots=True)
class AvResult:
    """One transcoded audio or video part and what it became."""

    data: bytes
    content_type: str
    duration_ms: int | None
    width: int | None
    height: int | None
    codecs: tuple[str, ...]
    bitrate: int
    dropped: tuple[str, ...]
    fit: Fit = Fit.TRANSCODE


class AvTooBig(errors.MmsgateError):
    """The media cannot fit the byte target even at the lowest bitrate the codec allows."""


@dataclasses.dataclass(frozen=True, slots=True)
class Plan:
    """One ffmpeg run: the output options and what the run gives up."""

    args: tuple[str, ...]
    bitrate: int
    dropped: tuple[str, ...]


def ffmpeg_exe() -> str:
    """The ffmpeg binary: the static build that the imageio-ffmpeg wheel carries."""
    return str(imageio_ffmpeg.get_ffmpeg_exe())


async def transcode_audio(data: bytes, profile: CarrierProfile, target_bytes: int) -> AvResult:
    """Audio as the profile's type and codec, mono, at a bitrate whose output fits."""
    return await _transcode(data, profile, target_bytes, video=False)


async def transcode_video(data: bytes, profile: CarrierProfile, target_bytes: int) -> AvResult:
    """Video as the profile's container and codecs, sized and rated so the output fits."""
    return await _transcode(data, profile, target_bytes, video=True)


async def _transcode(
    data: bytes, profile: CarrierProfile, target_bytes: int, *, video: bool
) -> AvResult:
    corrupt = _Corrupt(video)
    if not data:
        raise corrupt("the file is empty")
    with tempfile.TemporaryDirectory(prefix="mmsgate-av-") as tmp:
        job = _Job(pathlib.Path(tmp), profile, target_bytes, video, corrupt)
        await anyio.to_thread.run_sync(job.source.write_bytes, data)
        source = await anyio.to_thread.run_sync(probe, job.source, video)
        if source is None:
            raise corrupt("no decodable stream was found")
        how = fit(source, data, profile, target_bytes, video=video)
        if how is Fit.KEEP:
            kept = Plan((), source.video_bitrate + source.audio_bitrate, ())
            return await _result(job.source, job, kept, how)
        if how is Fit.REMUX and (remuxed := await _remux(job, source)) is not None:
            return remuxed
        return await _encode(job, source)


async def _remux(job: _Job, source: Source) -> AvResult | None:
    """The streams copied into the profile's container; None when the muxer refuses them
    or the result is over the target, and the part is transcoded instead."""
    plan = _remux_plan(
        job.profile, job.video, kept_bitrate=source.video_bitrate + source.audio_bitrate
    )
    try:
        await _run_ffmpeg(
            job.source, job.output, job.profile.max_duration_s + 1.0, plan, job.corrupt
        )
    except errors.MediaError:
        return None
    if _size(job.output) > job.target_bytes:
        return None
    return await _result(job.output, job, plan, Fit.REMUX)


@dataclasses.dataclass(frozen=True, slots=True)
class _Job:
    """One part's transcoding: its scratch folder, where it must go, and how to fail."""

    folder: pathlib.Path
    profile: CarrierProfile
    target_bytes: int
    video: bool
    corrupt: _Corrupt

    @property
    def source(self) -> pathlib.Path:
        return self.folder / "in"

    @property
    def output(self) -> pathlib.Path:
        return self.folder / "out"


async def _encode(job: _Job, source: Source) -> AvResult:
    """Encode with the planned bitrate; once more, lower, on the rare overshoot."""
    budget = job.target_bytes
    for _ in range(2):
        duration, plan = make_plan(source, job.profile, budget, video=job.video)
        await _run_ffmpeg(job.source, job.output, duration, plan, job.corrupt)
        size = _size(job.output)
        if size <= job.target_bytes:
            return await _result(job.output, job, plan, Fit.TRANSCODE)
        budget = int(budget * job.target_bytes / size * 0.95)
    raise AvTooBig(f"{size} bytes after transcoding, over the {job.target_bytes}-byte target")


def _remux_plan(profile: CarrierProfile, video: bool, *, kept_bitrate: int) -> Plan:
    """The streams copied as they are into the profile's container, without the tags."""
    muxer = MUXERS[profile.video_type if video else profile.audio_type]
    args: tuple[str, ...] = ("-c", "copy", "-f", muxer)
    if muxer == "mp4":
        args += ("-movflags", "+faststart")
    return Plan(args, kept_bitrate, ())


@dataclasses.dataclass(frozen=True, slots=True)
class _Corrupt:
    """Makes the MediaError for an input ffmpeg or the probe cannot use."""

    video: bool

    def __call__(self, why: str) -> errors.MediaError:
        if self.video:
            return errors.MediaError(
                ErrorCode.VIDEO_NO_CODECS, f"Video file corrupted or missing codecs: {why}"
            )
        return errors.MediaError(ErrorCode.AUDIO_CORRUPT, f"Audio file corrupted: {why}")


# --- planning -----------------------------------------------------------------------------


def make_plan(
    source: Source, profile: CarrierProfile, budget: int, *, video: bool
) -> tuple[float, Plan]:
    """The seconds to keep and the ffmpeg options that fit `source` into `budget` bytes."""
    duration = min(source.duration_s, float(profile.max_duration_s))
    plan = (_video_plan if video else _audio_plan)(source, profile, budget, duration)
    if source.duration_s > profile.max_duration_s + 0.5:
        cut = f"trimmed {source.duration_s:.0f}s→{duration:.0f}s"
        plan = dataclasses.replace(plan, dropped=(cut, *plan.dropped))
    return duration, plan


def _audio_plan(source: Source, profile: CarrierProfile, budget: int, duration: float) -> Plan:
    codec = profile.audio_codec
    bits = budget * 8 * MARGIN - 8 * 2048  # container headers and sample tables
    ceiling = _capped(profile.audio_bitrate, source.audio_bitrate, codec)
    bitrate = _audio_bitrate(codec, ceiling, bits / max(duration, 1.0))
    if bitrate is None:
        raise AvTooBig(
            f"{duration:.0f}s of {codec} needs more than {budget} bytes at the lowest bitrate"
        )
    dropped = ("stereo",) if source.channels > 1 else ()
    args = (
        "-vn",
        *_audio_args(codec, bitrate),
        "-f",
        MUXERS[profile.audio_type],
    )
    return Plan(args, bitrate, dropped)


def _audio_bitrate(codec: str, ceiling: int, affordable: float) -> int | None:
    """The highest bitrate up to `ceiling` that `affordable` bits per second allow."""
    if codec == "amr_nb":
        return next((r for r in AMR_RATES if r <= min(ceiling, affordable)), None)
    bitrate = int(min(ceiling, affordable) // 1000 * 1000)
    return bitrate if bitrate >= MIN_AUDIO_BITRATE[codec] else None


def _capped(ceiling: int, source_bitrate: int, codec: str) -> int:
    """`ceiling`, lowered to the source's own bitrate (in whole kbit/s, never below the
    codec's least): re-encoding spends no more bits than the source has."""
    if not source_bitrate:
        return ceiling
    own = max(source_bitrate // 1000 * 1000, MIN_AUDIO_BITRATE[codec])
    return min(ceiling, own)


def _audio_args(codec: str, bitrate: int) -> tuple[str, ...]:
    if codec == "amr_nb":
        rate = 8000  # AMR-NB is narrowband only
    else:
        rate = 44_100 if bitrate >= 48_000 else 22_050 if bitrate >= 24_000 else 16_000
    return ("-c:a", ENCODERS[codec], "-b:a", str(bitrate), "-ar", str(rate), "-ac", "1")


def _video_plan(source: Source, profile: CarrierProfile, budget: int, duration: float) -> Plan:
    seconds = max(duration, 1.0)
    frames = seconds * min(source.fps or 30.0, profile.video_max_fps)
    bits = budget * 8 * MARGIN - 8 * (4096 + 16 * frames)  # moov tables grow per sample
    dropped: list[str] = ["stereo"] if source.channels > 1 else []
    audio = 0
    if source.has_audio:
        codec = profile.video_audio_codec
        ceiling = _capped(min(profile.audio_bitrate, 48_000), source.audio_bitrate, codec)
        # Audio gets at most a fifth of the bits; pictures matter more in a video.
        audio = _audio_bitrate(codec, ceiling, bits / seconds / 5) or 0
        if not audio:
            dropped.append("audio")
    # VBV bounds the video at bitrate × (duration + buffer), the buffer being one second.
    video = int((bits - audio * seconds) / (seconds + 1))
    least = _least_video_bitrate(source, profile)
    if video < least:
        raise AvTooBig(
            f"{seconds:.0f}s of video needs more than {budget} bytes at the lowest bitrate"
        )
    if source.video_bitrate:  # never more bits than the source has, nor mush for a tiny one
        video = max(least, min(video, source.video_bitrate))
    fps, box = _frame_plan(source, profile, video)
    if source.fps and fps < source.fps - 0.5:
        dropped.append(f"frame rate {source.fps:.0f}→{fps}")
    args = (
        "-vf",
        _video_filter(profile, box, fps),
        *_video_codec_args(profile.video_codec, video, fps),
        *(_audio_args(profile.video_audio_codec, audio) if audio else ("-an",)),
        "-f",
        MUXERS[profile.video_type],
    )
    if MUXERS[profile.video_type] == "mp4":
        args += ("-movflags", "+faststart")  # moov first: playback starts before the end
    return Plan(args, video + audio, tuple(dropped))


def _frame_plan(source: Source, profile: CarrierProfile, bitrate: int) -> tuple[int, int]:
    """The frame rate and the square box the picture is scaled into, from the bitrate."""
    if profile.video_codec == "h263":
        return min(profile.video_max_fps, 15), max(H263_SIZE)
    top = max(profile.video_max_width, profile.video_max_height)
    for fps in _rates(source, profile):
        for box in (b for b in (top, *BOXES) if b <= top):
            if bitrate / (_area(source, box) * fps) >= MIN_BITS_PER_PIXEL:
                return fps, box
    return _rates(source, profile)[-1], BOXES[-1]


def _rates(source: Source, profile: CarrierProfile) -> list[int]:
    """Frame rates to try, best first: the profile's cap, then 15 fps; never above the source."""
    wanted = (profile.video_max_fps, min(profile.video_max_fps, 15))
    capped = [max(1, min(f, math.ceil(source.fps))) if source.fps else f for f in wanted]
    return sorted(set(capped), reverse=True)


def _area(source: Source, box: int) -> float:
    """Pixels per frame once the source is scaled into a `box`-sided square (never up)."""
    width, height = source.width or 640, source.height or 480
    scale = min(1.0, box / max(width, height))
    return width * height * scale * scale


def _least_video_bitrate(source: Source, profile: CarrierProfile) -> int:
    """Below this the smallest frame at the lowest rate is mush: say it cannot fit instead."""
    fps = _rates(source, profile)[-1]
    area = (
        H263_SIZE[0] * H263_SIZE[1] if profile.video_codec == "h263" else _area(source, BOXES[-1])
    )
    return max(MIN_VIDEO_BITRATE[profile.video_codec], int(area * fps * MIN_BITS_PER_PIXEL / 2))


def _video_filter(profile: CarrierProfile, box: int, fps: int) -> str:
    if profile.video_codec == "h263":
        w, h = H263_SIZE
        fit = f"scale={w}:{h}:force_original_aspect_ratio=decrease,pad={w}:{h}:(ow-iw)/2:(oh-ih)/2"
    else:
        # Never upscale; keep the aspect; even sizes, as 4:2:0 chroma needs.
        fit = (
            f"scale='min({box},iw)':'min({box},ih)'"
            ":force_original_aspect_ratio=decrease:force_divisible_by=2"
        )
    return f"{fit},setsar=1,fps={fps},format=yuv420p"


def _video_codec_args(codec: str, bitrate: int, fps: int) -> tuple[str, ...]:
    rate = ("-b:v", str(bitrate), "-maxrate", str(bitrate), "-bufsize", str(bitrate))
    if codec == "h264":
        # Constrained Baseline, level 3.0: what every MMS handset decodes.
        profile = ("-profile:v", "baseline", "-level:v", "3.0", "-preset", "medium")
        return ("-c:v", "libx264", *profile, *rate, "-g", str(fps * 4))
    return ("-c:v", ENCODERS[codec], *rate, "-g", str(fps * 4))


# --- running ------------------------------------------------------------------------------


def command(source: pathlib.Path, output: pathlib.Path, duration: float, plan: Plan) -> list[str]:
    """The ffmpeg command line for `plan` (also what the benchmark runs directly)."""
    return [
        ffmpeg_exe(),
        "-nostdin",
        "-hide_banner",
        "-loglevel",
        "error",
        "-y",
        "-t",
        f"{duration:.3f}",  # stop reading the input there: a long file costs no more
        "-i",
        str(source),
        "-map_metadata",
        "-1",
        "-map_chapters",
        "-1",
        *plan.args,
        str(output),
    ]


async def _run_ffmpeg(
    source: pathlib.Path, output: pathlib.Path, duration: float, plan: Plan, corrupt: _Corrupt
) -> None:
    log = output.with_suffix(".log")
    limited = ["/bin/sh", "-c", 'ulimit -v "$0" || exit 97; exec "$@"', str(MEMORY_LIMIT // 1024)]
    timeout = BASE_TIMEOUT_S + TIMEOUT_PER_SECOND * duration
    with log.open("wb") as errors_out:
        process = await anyio.open_process(
            [*limited, *command(source, output, duration, plan)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=errors_out,
        )
        try:
            with anyio.fail_after(timeout):
                code = await process.wait()
        except TimeoutError:
            raise corrupt(f"transcoding took longer than {timeout:.0f}s") from None
        finally:
            if process.returncode is None:
                process.kill()
                with anyio.CancelScope(shield=True):
                    await process.wait()
    if code != 0 or _size(output) == 0:
        raise corrupt(_last_line(log.read_bytes()) or f"ffmpeg exited with {code}")


def _size(path: pathlib.Path) -> int:
    return path.stat().st_size if path.exists() else 0


def _last_line(stderr: bytes) -> str:
    lines = [line.strip() for line in stderr.decode("utf-8", "replace").splitlines()]
    return next((line for line in reversed(lines) if line), "")[:200]


async def _result(path: pathlib.Path, job: _Job, plan: Plan, how: Fit) -> AvResult:
    data = await anyio.to_thread.run_sync(path.read_bytes)
    facts = await anyio.to_thread.run_sync(_output_facts, path)
    return AvResult(
        data=data,
        content_type=job.profile.video_type if job.video else job.profile.audio_type,
        duration_ms=facts[0],
        width=facts[1],
        height=facts[2],
        codecs=facts[3],
        bitrate=plan.bitrate,
        dropped=plan.dropped,
        fit=how,
    )


def _output_facts(path: pathlib.Path) -> tuple[int | None, int | None, int | None, tuple[str, ...]]:
    """Duration, frame size and codecs as read back from the file ffmpeg wrote."""
    with pyav.open(str(path), mode="r") as container:
        streams: Sequence[pyav.stream.Stream] = [*container.streams.video, *container.streams.audio]
        duration = (
            round(container.duration / 1000)
            if container.duration and container.duration > 0
            else None
        )
        picture = container.streams.video[0] if container.streams.video else None
        return (
            duration,
            picture.codec_context.width if picture else None,
            picture.codec_context.height if picture else None,
            tuple(s.codec_context.name for s in streams),
        )
