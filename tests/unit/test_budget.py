"""The work an image may cost: frames and canvas read without decoding, refused past the
budget (E331) at inspection and at transcoding, and a CPU limit on what is decoded."""

from __future__ import annotations

import io
import time

import pytest
from PIL import Image

from mmsgate.codes import ErrorCode
from mmsgate.errors import MediaError
from mmsgate.media import budget, images
from mmsgate.media.inspect import inspect
from mmsgate.models import MediaKind
from mmsgate.profiles import DEFAULT
from mmsgate.settings import MediaSettings
from tests import bombs

SETTINGS = MediaSettings()

# Each is over the budget, yet cheap enough for the code before the budget to get through.
BOMBS = {
    "gif-large-canvas": ("image/gif", lambda: bombs.gif(20)),
    "gif-frames-past-the-screen": (
        "image/gif",
        lambda: bombs.gif(20, at=(6999, 6999), screen=(1, 1)),
    ),
    "gif-many-tiny-frames": ("image/gif", lambda: bombs.gif(30_000, 1, 1)),
    "gif-cut-inside-a-descriptor": ("image/gif", lambda: bombs.gif(21)[:-11]),
    "apng": ("image/png", lambda: bombs.apng(30, 3000)),
    "webp": ("image/webp", lambda: bombs.webp(20, 4000)),
}


def plain_jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (640, 480), (10, 120, 200)).save(out, "JPEG")
    return out.getvalue()


def animation(fmt: str, count: int = 5) -> bytes:
    frames = [Image.new("RGB", (60, 40), (40 * i, 0, 0)) for i in range(count)]
    out = io.BytesIO()
    frames[0].save(out, fmt, save_all=True, append_images=frames[1:], duration=70, loop=0)
    return out.getvalue()


@pytest.mark.parametrize("fmt", ["GIF", "PNG", "WEBP"])
def test_the_layout_is_read_without_decoding(fmt: str) -> None:
    """A GIF, APNG or animated WebP shows its frame count and canvas as Pillow reads them."""
    layout = budget.read_layout(animation(fmt))
    assert layout == budget.Layout(5, 60, 40)


def test_a_still_has_one_frame_and_other_formats_no_layout() -> None:
    """A plain PNG is one frame; a JPEG is left to its decoder's header."""
    out = io.BytesIO()
    Image.new("RGB", (30, 20)).save(out, "PNG")
    assert budget.read_layout(out.getvalue()) == budget.Layout(1, 30, 20)
    out = io.BytesIO()
    Image.new("RGB", (30, 20)).save(out, "JPEG")
    assert budget.read_layout(out.getvalue()) is None


def test_frames_past_the_logical_screen_widen_the_canvas() -> None:
    """A GIF's canvas is as large as its farthest frame reaches, as decoders draw it."""
    layout = budget.read_layout(bombs.gif(3, at=(6999, 4999), screen=(1, 1)))
    assert layout == budget.Layout(3, 7000, 5000)


@pytest.mark.parametrize("name", list(BOMBS))
def test_inspection_refuses_a_frame_bomb_before_decoding(name: str) -> None:
    """Frames x canvas over the budget is E331 at accept, with what it would have cost."""
    content_type, build = BOMBS[name]
    with pytest.raises(MediaError) as caught:
        inspect(MediaKind.IMAGE, build(), content_type, 3, SETTINGS)
    assert caught.value.code is ErrorCode.IMAGE_TOO_BIG
    assert caught.value.info.startswith("Image in slide 3 is too big: ")
    assert caught.value.info.endswith(f"are more than {budget.WORK_PIXELS} pixels to decode")


@pytest.mark.parametrize("name", list(BOMBS))
def test_transcoding_refuses_a_frame_bomb_before_decoding(name: str) -> None:
    """A bomb that reached the transcoder (saved before the budget) is E331, not a still."""
    _content_type, build = BOMBS[name]
    with pytest.raises(MediaError) as caught:
        images.transcode_image(build(), DEFAULT, 300_000)
    assert caught.value.code is ErrorCode.IMAGE_TOO_BIG
    assert caught.value.info.endswith(f"are more than {budget.WORK_PIXELS} pixels to decode")


def test_an_animation_within_the_budget_is_checked_and_transcoded() -> None:
    """Four frames on a 7000x7000 canvas are under the budget: accepted, and transcoded."""
    data = bombs.gif(4)
    found = inspect(MediaKind.IMAGE, data, "image/gif", 1, SETTINGS)
    assert (found.width, found.height, found.duration_ms) == (7000, 7000, 80)
    assert images.transcode_image(data, DEFAULT, 300_000).content_type in DEFAULT.image_types


def test_inspection_past_its_cpu_limit_is_too_big(monkeypatch: pytest.MonkeyPatch) -> None:
    """Decoding frames stops once the inspection has used its CPU seconds: E331."""
    monkeypatch.setattr(budget, "INSPECT_CPU_SECONDS", 0.0)
    with pytest.raises(MediaError) as caught:
        inspect(MediaKind.IMAGE, animation("GIF"), "image/gif", 2, SETTINGS)
    assert caught.value.code is ErrorCode.IMAGE_TOO_BIG
    assert caught.value.info == (
        "Image in slide 2 is too big: decoding it takes more than 0 s of CPU"
    )


@pytest.mark.parametrize("fmt", ["GIF", "JPEG"])
def test_transcoding_past_its_cpu_limit_is_too_big(fmt: str) -> None:
    """An animation or a still stops between attempts once its CPU seconds are used: E331."""
    data = animation("GIF") if fmt == "GIF" else plain_jpeg()
    with pytest.raises(MediaError) as caught:
        images.transcode_image(data, DEFAULT, 300_000, cpu_seconds=0.0)
    assert caught.value.code is ErrorCode.IMAGE_TOO_BIG
    assert caught.value.info == "Image too big: decoding it takes more than 0 s of CPU"


def test_the_cpu_limit_is_reached_by_work() -> None:
    """A limit raises once the thread has used its seconds of CPU, not before."""
    limit = budget.CpuLimit(0.02)
    limit.check()
    with pytest.raises(budget.OverBudget):
        _work_until(limit)
    assert time.thread_time() - limit.started > 0.02


def _work_until(limit: budget.CpuLimit) -> None:
    while True:
        sum(range(10_000))
        limit.check()
