"""Transcode benchmark: a 12 MP JPEG, a 10 s 1080p MP4 and a 30 s WAV prepared for the
default carrier profile by mmsgate's pipeline, each timed against the plain tool doing the
same conversion in the same run (vipsthumbnail for the image; the very ffmpeg command line
mmsgate plans, run directly, for video and audio).

    .venv/bin/python bench/transcode/bench.py [--runs N] [--profile NAME]

Prints one row per medium: median seconds of each side, the ratio, output bytes against the
budget, and what the output is; then the peak RSS of this process (which runs the pipeline
as the worker does) and of the largest ffmpeg child.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import pathlib
import resource
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any

from PIL import Image

from mmsgate.media import av, images, prepare
from mmsgate.profiles import PROFILES, CarrierProfile

IMAGE_SIZE = (4000, 3000)  # 12 megapixels
CHILD_RSS_KB: list[int] = []


def make_inputs(folder: pathlib.Path) -> dict[str, pathlib.Path]:
    """A camera-like 12 MP JPEG, 10 s of 1080p30 H.264 + stereo AAC, and 30 s of stereo WAV."""
    ffmpeg = av.ffmpeg_exe()
    photo = folder / "photo.jpg"
    # Smooth gradients under fine noise: compresses like a photo, not like a test card.
    base = Image.radial_gradient("L").resize(IMAGE_SIZE).convert("RGB")
    noise = Image.effect_noise(IMAGE_SIZE, 40).convert("RGB")
    Image.blend(base, noise, 0.35).save(photo, "JPEG", quality=92)
    video, wav = folder / "clip.mp4", folder / "voice.wav"
    run = [ffmpeg, "-v", "error", "-y"]
    subprocess.run(
        [*run, "-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=30", "-f", "lavfi",
         "-i", "sine=frequency=440:sample_rate=48000", "-t", "10", "-c:v", "libx264",
         "-preset", "fast", "-b:v", "8M", "-pix_fmt", "yuv420p", "-c:a", "aac", "-ac", "2",
         str(video)],
        check=True,
    )  # fmt: skip
    subprocess.run(
        [*run, "-f", "lavfi", "-i", "aevalsrc=sin(440*2*PI*t)*0.5|sin(554*2*PI*t)*0.5:s=44100",
         "-t", "30", str(wav)],
        check=True,
    )  # fmt: skip
    return {"image": photo, "video": video, "audio": wav}


def run_child(command: list[str]) -> None:
    """Run a peer command, noting its peak RSS (kB) from the kernel's accounting."""
    process = subprocess.Popen(command)
    _pid, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{command[0]} failed with {process.returncode}")
    CHILD_RSS_KB.append(usage.ru_maxrss)


def median_time(runs: int, work: Callable[[], Any]) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


async def median_time_async(runs: int, work: Callable[[], Awaitable[Any]]) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        await work()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


class Recorder:
    """Notes the byte target prepare hands to each transcoder, so the peer gets the same."""

    def __init__(self) -> None:
        self.targets: dict[str, int] = {}
        real_image, real_audio, real_video = (
            images.transcode_image,
            av.transcode_audio,
            av.transcode_video,
        )

        def image(data: bytes, profile: CarrierProfile, target: int) -> images.ImageResult:
            self.targets["image"] = target
            return real_image(data, profile, target)

        async def audio(data: bytes, profile: CarrierProfile, target: int) -> av.AvResult:
            self.targets["audio"] = target
            return await real_audio(data, profile, target)

        async def video(data: bytes, profile: CarrierProfile, target: int) -> av.AvResult:
            self.targets["video"] = target
            return await real_video(data, profile, target)

        images.transcode_image = image  # type: ignore[assignment]
        av.transcode_audio = audio  # type: ignore[assignment]
        av.transcode_video = video  # type: ignore[assignment]


def slide_for(kind: str, path: pathlib.Path) -> dict[str, Any]:
    types = {"image": "image/jpeg", "video": "video/mp4", "audio": "audio/wav"}
    part = {"kind": kind, "url": f"file:{path.name}", "blob_key": str(path),
            "content_type": types[kind]}  # fmt: skip
    return {"text": "Bench", "duration": None, "parts": [part]}


async def load(key: str) -> bytes:
    return await asyncio.to_thread(pathlib.Path(key).read_bytes)


async def ours(
    kind: str, path: pathlib.Path, profile: CarrierProfile, runs: int
) -> tuple[float, dict[str, Any]]:
    reports: list[dict[str, Any]] = []

    async def once() -> None:
        prepared = await prepare.prepare([slide_for(kind, path)], profile, load, cache=None)
        reports.append(prepared.report)

    return await median_time_async(runs, once), reports[-1]


def vips_peer(path: pathlib.Path, profile: CarrierProfile, out: pathlib.Path, runs: int) -> float:
    size = f"{profile.image_max_width}x{profile.image_max_height}"
    command = ["vipsthumbnail", str(path), "--size", size, "-o", f"{out}[Q=85,strip]"]
    return median_time(runs, lambda: run_child(command))


def ffmpeg_peer(
    kind: str, path: pathlib.Path, profile: CarrierProfile, target: int, out: pathlib.Path,
    runs: int,
) -> float:  # fmt: skip
    source = av.probe(path, kind == "video")
    assert source is not None
    duration, plan = av.make_plan(source, profile, target, video=kind == "video")
    command = av.command(path, out, duration, plan)
    return median_time(runs, lambda: run_child(command))


def describe(part: dict[str, Any]) -> str:
    bits = [part["content_type"]]
    if part["width"]:
        bits.append(f"{part['width']}x{part['height']}")
    if part["quality"]:
        bits.append(f"q{part['quality']}")
    if part["codec"]:
        bits.append(part["codec"])
    if part["duration_ms"]:
        bits.append(f"{part['duration_ms'] / 1000:.1f}s")
    return " ".join(bits)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--profile", default="default")
    args = parser.parse_args()
    profile = PROFILES[args.profile]
    if shutil.which("vipsthumbnail") is None:
        raise SystemExit("vipsthumbnail is missing: apt-get install libvips-tools")
    recorder = Recorder()
    with tempfile.TemporaryDirectory(prefix="mmsgate-transcode-") as tmp:
        folder = pathlib.Path(tmp)
        inputs = make_inputs(folder)
        print(f"profile {profile.name}: budget {profile.budget_bytes:,} bytes; median of "
              f"{args.runs} runs; 2-core figures are noisy, read the ratios")  # fmt: skip
        header = f"{'medium':<7} {'mmsgate s':>9} {'peer s':>8} {'ratio':>6} {'bytes':>9} "
        print(header + f"{'budget':>9}  {'fits':<5} output | peer output")
        for kind, path in inputs.items():
            mine, report = await ours(kind, path, profile, args.runs)
            out = folder / f"peer-{kind}{'.jpg' if kind == 'image' else '.bin'}"
            if kind == "image":
                peer = vips_peer(path, profile, out, args.runs)
                with Image.open(io.BytesIO(out.read_bytes())) as made:
                    peer_out = f"vipsthumbnail {made.width}x{made.height} q85"
            else:
                peer = ffmpeg_peer(kind, path, profile, recorder.targets[kind], out, args.runs)
                peer_out = "ffmpeg, same command line"
            part = report["parts"][0]
            print(
                f"{kind:<7} {mine:>9.3f} {peer:>8.3f} {mine / peer:>5.2f}x "
                f"{report['total_bytes']:>9,} {report['budget_bytes']:>9,}  "
                f"{report['fits']!s:<5} {describe(part)} | {peer_out} "
                f"{out.stat().st_size:,} B"
            )
    self_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS: pipeline process {self_rss:.0f} MB (the worker's share); one ffmpeg or "
          f"vips transcode child at most {max(CHILD_RSS_KB) / 1024:.0f} MB")  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
