"""Audio and video transcoding: real ffmpeg runs on generated media, checked with PyAV."""

from __future__ import annotations

import io
import pathlib
import subprocess
import time

import anyio
import av as pyav
import pytest

from mmsgate import errors
from mmsgate.codes import ErrorCode
from mmsgate.media import av
from mmsgate.profiles import DEFAULT, LEGACY

pytestmark = pytest.mark.anyio


def _generate(folder: pathlib.Path, name: str, *args: str) -> bytes:
    path = folder / name
    subprocess.run(
        [av.ffmpeg_exe(), "-v", "error", "-y", *args, str(path)], check=True, timeout=120
    )
    return path.read_bytes()


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """Sources made once per module: video with and without sound, long video, audio."""
    folder = tmp_path_factory.mktemp("av")
    picture = ("-f", "lavfi", "-i", "testsrc2=size={size}:rate={rate}")
    tone = ("-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000")
    stereo = ("-f", "lavfi", "-i", "aevalsrc=sin(440*2*PI*t)|sin(660*2*PI*t):s=44100")

    def video(size: str, rate: int) -> tuple[str, ...]:
        return tuple(a.format(size=size, rate=rate) for a in picture)

    h264 = ("-c:v", "libx264", "-pix_fmt", "yuv420p", "-preset", "ultrafast")
    return {
        "hd": _generate(
            folder,
            "hd.mp4",
            *video("1280x720", 30),
            *tone,
            "-t",
            "4",
            *h264,
            "-b:v",
            "4M",
            "-c:a",
            "aac",
            "-ac",
            "2",
        ),
        "mute": _generate(folder, "mute.mp4", *video("480x640", 25), "-t", "3", *h264),
        "long": _generate(folder, "long.mkv", *video("64x48", 2), "-t", "3600", *h264),
        "wav": _generate(folder, "tone.wav", *stereo, "-t", "20"),
        "mp3": _generate(folder, "tone.mp3", *tone, "-t", "8", "-c:a", "libmp3lame"),
    }


def _read(data: bytes) -> dict[str, object]:
    """What an independent decode of `data` says: streams, sizes, duration, first frame."""
    with pyav.open(io.BytesIO(data)) as container:
        facts: dict[str, object] = {
            "format": container.format.name,
            "duration_s": (container.duration or 0) / 1_000_000,
            "codecs": [s.codec_context.name for s in container.streams],
        }
        if container.streams.video:
            stream = container.streams.video[0]
            facts["size"] = (stream.codec_context.width, stream.codec_context.height)
            facts["profile"] = stream.codec_context.profile
            facts["fps"] = float(stream.average_rate or 0)
            frame = next(container.decode(video=0))
            facts["decoded"] = (frame.width, frame.height)
        if container.streams.audio:
            audio = container.streams.audio[0].codec_context
            facts["audio"] = (audio.sample_rate, audio.channels)
        return facts


class TestVideo:
    async def test_hd_video_becomes_baseline_h264_and_aac_in_mp4_within_target(
        self, media: dict[str, bytes]
    ) -> None:
        """A 720p clip is scaled into 640 px, as Constrained Baseline H.264 + mono AAC."""
        result = await av.transcode_video(media["hd"], DEFAULT, 300_000)
        facts = _read(result.data)
        assert len(result.data) <= 300_000
        assert result.content_type == "video/mp4"
        assert "mp4" in str(facts["format"])
        assert facts["codecs"] == ["h264", "aac"]
        assert facts["profile"] == "Constrained Baseline"
        assert facts["size"] == facts["decoded"] == (640, 360)
        assert facts["audio"][1] == 1  # type: ignore[index]
        assert abs(float(facts["duration_s"]) - 4) < 0.3  # type: ignore[arg-type]
        assert (result.width, result.height) == (640, 360)
        assert result.duration_ms is not None
        assert abs(result.duration_ms - 4000) < 300
        assert result.codecs == ("h264", "aac")
        assert "stereo" in result.dropped

    async def test_mp4_puts_the_index_first_so_phones_start_playing_early(
        self, media: dict[str, bytes]
    ) -> None:
        """The moov box comes before mdat (faststart)."""
        data = (await av.transcode_video(media["hd"], DEFAULT, 300_000)).data
        assert 0 <= data.find(b"moov") < data.find(b"mdat")

    async def test_legacy_profile_gets_h263_qcif_and_amr_in_3gp(
        self, media: dict[str, bytes]
    ) -> None:
        """The legacy handset class gets 176x144 H.263 at 15 fps with AMR-NB 8 kHz in 3GP."""
        result = await av.transcode_video(media["hd"], LEGACY, 150_000)
        facts = _read(result.data)
        assert len(result.data) <= 150_000
        assert result.content_type == "video/3gpp"
        assert facts["codecs"] == ["h263", "amrnb"]
        assert facts["size"] == (176, 144)
        assert facts["audio"] == (8000, 1)
        assert float(facts["fps"]) <= 15  # type: ignore[arg-type]
        assert any(d.startswith("frame rate") for d in result.dropped)

    async def test_portrait_video_without_sound_keeps_its_shape_and_has_no_audio(
        self, media: dict[str, bytes]
    ) -> None:
        """A portrait clip stays portrait and small sources are never upscaled."""
        result = await av.transcode_video(media["mute"], DEFAULT, 200_000)
        facts = _read(result.data)
        assert facts["codecs"] == ["h264"]
        assert facts["size"] == (480, 640)
        assert len(result.data) <= 200_000

    async def test_a_tight_target_lowers_size_and_rate_but_still_fits(
        self, media: dict[str, bytes]
    ) -> None:
        """With little room the frame shrinks and the bitrate falls, and the output fits."""
        roomy = await av.transcode_video(media["hd"], DEFAULT, 400_000)
        tight = await av.transcode_video(media["hd"], DEFAULT, 60_000)
        assert len(tight.data) <= 60_000
        assert tight.bitrate < roomy.bitrate
        assert (tight.width or 0) < (roomy.width or 0)

    async def test_a_target_no_bitrate_can_meet_says_it_is_too_big(
        self, media: dict[str, bytes]
    ) -> None:
        """Four seconds of video cannot fit 5 KB; the caller learns it cannot fit."""
        with pytest.raises(av.AvTooBig, match="lowest bitrate"):
            await av.transcode_video(media["hd"], DEFAULT, 5_000)

    async def test_an_hour_long_video_is_cut_to_the_profile_limit_quickly(
        self, media: dict[str, bytes]
    ) -> None:
        """Only the first max_duration_s are read, so an hour costs what a minute does."""
        started = time.monotonic()
        result = await av.transcode_video(media["long"], DEFAULT, 300_000)
        assert time.monotonic() - started < 60  # a bound against hanging, not a speed test
        assert result.duration_ms is not None
        assert abs(result.duration_ms - DEFAULT.max_duration_s * 1000) < 1000
        assert any(d.startswith("trimmed 3600s") for d in result.dropped)


class TestAudio:
    async def test_wav_becomes_mono_aac_in_mp4(self, media: dict[str, bytes]) -> None:
        """Twenty seconds of stereo WAV become mono AAC-LC at the profile's bitrate."""
        result = await av.transcode_audio(media["wav"], DEFAULT, 300_000)
        facts = _read(result.data)
        assert result.content_type == "audio/mp4"
        assert facts["codecs"] == ["aac"]
        assert facts["audio"] == (44_100, 1)
        assert result.bitrate == DEFAULT.audio_bitrate
        assert abs(float(facts["duration_s"]) - 20) < 0.3  # type: ignore[arg-type]
        assert len(result.data) <= 300_000

    async def test_legacy_audio_is_amr_nb(self, media: dict[str, bytes]) -> None:
        """The legacy profile gets an .amr file (magic `#!AMR`), 8 kHz mono 12.2 kbit/s."""
        result = await av.transcode_audio(media["mp3"], LEGACY, 100_000)
        assert result.data.startswith(b"#!AMR\n")
        assert result.content_type == "audio/amr"
        assert _read(result.data)["audio"] == (8000, 1)
        assert result.bitrate == 12_200

    async def test_a_small_target_picks_a_lower_bitrate_that_fits(
        self, media: dict[str, bytes]
    ) -> None:
        """At 60 KB for 20 s the bitrate drops below 24 kbit/s and the output still fits."""
        result = await av.transcode_audio(media["wav"], DEFAULT, 60_000)
        assert result.bitrate < 24_000
        assert len(result.data) <= 60_000
        assert _read(result.data)["audio"] == (16_000, 1)

    async def test_audio_that_cannot_fit_says_so(self, media: dict[str, bytes]) -> None:
        """Twenty seconds cannot fit 10 KB even at 16 kbit/s."""
        with pytest.raises(av.AvTooBig):
            await av.transcode_audio(media["wav"], DEFAULT, 10_000)


class TestBadInput:
    @pytest.mark.parametrize("data", [b"", b"\x00" * 4096, b"not a media file at all" * 100])
    async def test_empty_or_garbage_video_is_a_media_error(self, data: bytes) -> None:
        """Nothing decodable gives E343 with the reason, not an ffmpeg trace."""
        with pytest.raises(errors.MediaError) as caught:
            await av.transcode_video(data, DEFAULT, 300_000)
        assert caught.value.code is ErrorCode.VIDEO_NO_CODECS

    async def test_truncated_video_is_a_media_error(self, media: dict[str, bytes]) -> None:
        """An MP4 cut in half (its index at the end lost or its data short) gives E343."""
        with pytest.raises(errors.MediaError) as caught:
            await av.transcode_video(media["hd"][: len(media["hd"]) // 2], DEFAULT, 300_000)
        assert caught.value.code is ErrorCode.VIDEO_NO_CODECS

    async def test_garbage_audio_is_e342(self) -> None:
        """Audio that does not decode gives E342."""
        with pytest.raises(errors.MediaError) as caught:
            await av.transcode_audio(b"RIFF\x00\x00\x00\x00WAVEjunk", DEFAULT, 300_000)
        assert caught.value.code is ErrorCode.AUDIO_CORRUPT

    async def test_a_video_slot_holding_only_sound_is_refused(
        self, media: dict[str, bytes]
    ) -> None:
        """A WAV is not a video: E343."""
        with pytest.raises(errors.MediaError):
            await av.transcode_video(media["wav"], DEFAULT, 300_000)

    async def test_a_run_over_its_time_is_killed_and_reported(
        self, media: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """ffmpeg past its deadline is killed; the caller gets a clear error, no child stays."""
        monkeypatch.setattr(av, "BASE_TIMEOUT_S", 0.05)
        monkeypatch.setattr(av, "TIMEOUT_PER_SECOND", 0.0)
        with pytest.raises(errors.MediaError, match="longer than"):
            await av.transcode_video(media["hd"], DEFAULT, 300_000)
        children = await anyio.run_process(["pgrep", "-f", "mmsgate-av-"], check=False)
        assert children.stdout == b""

    async def test_ffmpeg_is_bounded_in_memory(
        self, media: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Under a tiny address-space cap ffmpeg fails cleanly instead of growing."""
        monkeypatch.setattr(av, "MEMORY_LIMIT", 32 * 1024 * 1024)
        with pytest.raises(errors.MediaError) as caught:
            await av.transcode_video(media["hd"], DEFAULT, 300_000)
        assert caught.value.code is ErrorCode.VIDEO_NO_CODECS
