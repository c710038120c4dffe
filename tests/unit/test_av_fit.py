"""Audio and video that already suit a profile are kept, and nothing is encoded at more bits
per second than its source has: real ffmpeg runs on small generated clips."""

from __future__ import annotations

import io

import av as pyav
import pytest

from mmsgate import models
from mmsgate.media import av, av_source, prepare
from mmsgate.models import MediaKind
from mmsgate.profiles import DEFAULT, LEGACY, WEB
from tests.unit.test_av import _generate, _read

pytestmark = pytest.mark.anyio
PICTURE = ("-f", "lavfi", "-i", "testsrc2=size=320x240:rate=15")
TONE = ("-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100")
BASELINE = ("-c:v", "libx264", "-profile:v", "baseline", "-pix_fmt", "yuv420p", "-b:v", "100k")
HIGH = ("-c:v", "libx264", "-profile:v", "high", "-pix_fmt", "yuv420p", "-b:v", "100k")
AAC = ("-c:a", "aac", "-b:a", "32k", "-ac", "1")
FASTSTART = ("-movflags", "+faststart")
# Container and encoder overhead a re-encode may add over its source's own bytes.
SLACK = 1.1


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """Four-second 320x240 clips at about 130 kbit/s (some 66 KB), and low-bitrate audio."""
    folder = tmp_path_factory.mktemp("fit")
    clip = (*PICTURE, *TONE, "-t", "4")
    return {
        "baseline": _generate(folder, "b.mp4", *clip, *BASELINE, *AAC, *FASTSTART),
        "high": _generate(folder, "h.mp4", *clip, *HIGH, *AAC, *FASTSTART),
        "mov": _generate(folder, "b.mov", *clip, *BASELINE, *AAC),
        "tagged": _generate(
            folder, "t.mp4", *clip, *BASELINE, *AAC, "-metadata", "location=+48.85+002.35/"
        ),
        "m4a": _generate(folder, "a.m4a", *TONE, "-t", "6", *AAC, *FASTSTART),
        "mp3": _generate(
            folder, "a.mp3", *TONE, "-t", "6", "-c:a", "libmp3lame", "-b:a", "32k", "-ac", "1"
        ),
    }


def _tags(data: bytes) -> dict[str, str]:
    with pyav.open(io.BytesIO(data)) as container:
        return dict(container.metadata)


class TestKept:
    async def test_a_fitting_baseline_mp4_is_kept_byte_for_byte(
        self, clips: dict[str, bytes]
    ) -> None:
        """An H.264 Constrained Baseline + AAC MP4 within the profile's limits and the target
        goes out as it came, and says so."""
        result = await av.transcode_video(clips["baseline"], DEFAULT, 300_000)
        assert result.data == clips["baseline"]
        assert result.fit is av_source.Fit.KEEP
        assert result.content_type == "video/mp4"
        assert (result.width, result.height) == (320, 240)
        assert result.codecs == ("h264", "aac")

    async def test_a_fitting_mp4_over_the_target_is_transcoded(
        self, clips: dict[str, bytes]
    ) -> None:
        """The same clip with less room than its size is re-encoded to fit."""
        result = await av.transcode_video(clips["baseline"], DEFAULT, 40_000)
        assert result.fit is av_source.Fit.TRANSCODE
        assert len(result.data) <= 40_000

    async def test_high_profile_h264_is_transcoded_to_baseline(
        self, clips: dict[str, bytes]
    ) -> None:
        """A High-profile clip does not suit an MMS handset: it becomes Constrained Baseline."""
        result = await av.transcode_video(clips["high"], DEFAULT, 300_000)
        assert result.fit is av_source.Fit.TRANSCODE
        assert _read(result.data)["profile"] == "Constrained Baseline"

    async def test_baseline_in_quicktime_is_remuxed_into_mp4_streams_copied(
        self, clips: dict[str, bytes]
    ) -> None:
        """A MOV holding suitable streams is re-muxed, not re-encoded: same packets, MP4."""
        result = await av.transcode_video(clips["mov"], DEFAULT, 300_000)
        assert result.fit is av_source.Fit.REMUX
        assert "mp4" in str(_read(result.data)["format"])
        assert result.data[4:8] == b"ftyp"
        assert result.data[8:12] != b"qt  "
        assert 0 <= result.data.find(b"moov") < result.data.find(b"mdat")
        assert abs(len(result.data) - len(clips["mov"])) < 4096

    async def test_a_clip_with_a_location_tag_is_remuxed_without_it(
        self, clips: dict[str, bytes]
    ) -> None:
        """A suitable clip carrying a position is not sent as it is: the tag is dropped."""
        assert "location" in _tags(clips["tagged"])
        result = await av.transcode_video(clips["tagged"], DEFAULT, 300_000)
        assert result.fit is av_source.Fit.REMUX
        assert "location" not in _tags(result.data)

    async def test_legacy_handsets_still_get_h263(self, clips: dict[str, bytes]) -> None:
        """H.264 does not suit the legacy profile, however small it is."""
        result = await av.transcode_video(clips["baseline"], LEGACY, 150_000)
        assert result.fit is av_source.Fit.TRANSCODE
        assert result.codecs == ("h263", "amrnb")

    async def test_fitting_aac_audio_is_kept(self, clips: dict[str, bytes]) -> None:
        """A 32 kbit/s mono AAC M4A suits the default profile and is kept."""
        result = await av.transcode_audio(clips["m4a"], DEFAULT, 100_000)
        assert result.fit is av_source.Fit.KEEP
        assert result.data == clips["m4a"]
        assert result.content_type == "audio/mp4"


class TestNoBiggerThanTheSource:
    async def test_a_low_bitrate_video_is_not_inflated_for_mms(
        self, clips: dict[str, bytes]
    ) -> None:
        """A 66 KB High-profile clip given 300 KB of room stays about its own size."""
        result = await av.transcode_video(clips["high"], DEFAULT, 300_000)
        assert len(result.data) <= len(clips["high"]) * SLACK

    async def test_the_web_copy_of_a_low_bitrate_video_is_not_inflated(
        self, clips: dict[str, bytes]
    ) -> None:
        """The hosted page's copy, with 4 MiB of room, spends no more bits than the source."""
        web_target = prepare.WEB_TARGETS[MediaKind.VIDEO]
        result = await av.transcode_video(clips["high"], WEB, web_target)
        assert len(result.data) <= len(clips["high"]) * SLACK

    async def test_low_bitrate_audio_is_not_inflated(self, clips: dict[str, bytes]) -> None:
        """A 32 kbit/s MP3 becomes AAC at no more than 32 kbit/s, for MMS and for the web."""
        for profile, target in ((DEFAULT, 300_000), (WEB, prepare.WEB_TARGETS[MediaKind.AUDIO])):
            result = await av.transcode_audio(clips["mp3"], profile, target)
            assert result.fit is av_source.Fit.TRANSCODE
            assert result.bitrate <= 32_000
            assert len(result.data) <= len(clips["mp3"]) * SLACK

    async def test_the_web_copy_of_a_fitting_clip_is_the_clip(
        self, clips: dict[str, bytes]
    ) -> None:
        """for_web keeps a clip that suits the web profile and reports its bytes."""
        blobs = {"src": clips["baseline"]}

        async def load(key: str) -> bytes:
            return blobs[key]

        async def save(data: bytes) -> str:
            blobs[f"out{len(blobs)}"] = data
            return f"out{len(blobs) - 1}"

        part = models.StoredPart(MediaKind.VIDEO, "x", "src", "video/mp4", 0)
        [slide] = await prepare.for_web([models.StoredSlide(None, (part,), None)], load, save)
        [web] = slide.parts
        assert blobs[web.blob_key] == clips["baseline"]
        assert web.bytes == len(clips["baseline"])


async def test_the_report_says_which_parts_were_kept(clips: dict[str, bytes]) -> None:
    """The transcode report names a kept part `kept as sent`, with its source's bytes, and
    a transcoded one null."""
    blobs = {"fits": clips["baseline"], "high": clips["high"]}

    async def load(key: str) -> bytes:
        return blobs[key]

    parts = [
        {"kind": "video", "content_type": "video/mp4", "blob_key": key, "url": f"/{key}.mp4"}
        for key in ("fits", "high")
    ]
    prepared = await prepare.prepare([{"text": "Hi", "parts": parts}], DEFAULT, load)
    kept, transcoded = prepared.report.to_json()["parts"]
    assert kept["kept"] == "kept as sent"
    assert kept["output_bytes"] == kept["source_bytes"] == len(clips["baseline"])
    assert transcoded["kept"] is None
    assert transcoded["codec"] == "h264+aac"
