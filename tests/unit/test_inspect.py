"""Inspecting fetched media: sniffing, slot kinds, strict and lenient types, decoding checks.

Every file is generated here, with Pillow, PyAV and the standard library.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import json
import random
import struct
import wave
import zipfile
import zlib

import av
import pytest
from PIL import Image

from mmsgate.codes import ErrorCode
from mmsgate.errors import MediaError
from mmsgate.media import inspect as inspect_module
from mmsgate.media.inspect import Inspected, inspect
from mmsgate.media.sniff import canonical_type, sniff
from mmsgate.models import MediaKind
from mmsgate.settings import MediaSettings

LENIENT = MediaSettings()
STRICT = MediaSettings(strict=True)


# --- media made on the spot ------------------------------------------------------------------


def noise_image(size: tuple[int, int] = (320, 240)) -> Image.Image:
    """An image of noise: it compresses badly, so a cut file loses real data."""
    pixels = random.Random(7).randbytes(size[0] * size[1] * 3)
    return Image.frombytes("RGB", size, pixels)


def still(fmt: str, size: tuple[int, int] = (320, 240)) -> bytes:
    buffer = io.BytesIO()
    noise_image(size).save(buffer, fmt)
    return buffer.getvalue()


def animated_gif(durations: tuple[int, ...] = (100, 200, 300)) -> bytes:
    colors = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    frames = [Image.new("RGB", (40, 30), colors[i % 3]) for i in range(len(durations))]
    buffer = io.BytesIO()
    frames[0].save(
        buffer, "GIF", save_all=True, append_images=frames[1:], duration=list(durations), loop=0
    )
    return buffer.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares `width` x `height` but holds a few bytes of image data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


@functools.cache
def mp4_clip() -> bytes:
    """One second of 160x120 H.264 video at 25 fps with AAC audio."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as out:
        video = out.add_stream("libx264", rate=25)
        video.width, video.height, video.pix_fmt = 160, 120, "yuv420p"
        audio = out.add_stream("aac", rate=44100)
        for index in range(25):
            frame = av.VideoFrame(160, 120, "yuv420p")
            for plane in frame.planes:
                plane.update(bytes([index * 8]) * plane.buffer_size)
            frame.pts = index
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        for start in range(0, 44100, 1024):
            samples = av.AudioFrame(format="fltp", layout="mono", samples=1024)
            samples.planes[0].update(bytes(samples.planes[0].buffer_size))
            samples.sample_rate, samples.pts = 44100, start
            out.mux(audio.encode(samples))
        out.mux(audio.encode(None))
    return buffer.getvalue()


@functools.cache
def m4a_clip() -> bytes:
    """One second of AAC silence in an MP4 container, with no video."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as out:
        audio = out.add_stream("aac", rate=44100)
        for start in range(0, 44100, 1024):
            samples = av.AudioFrame(format="fltp", layout="mono", samples=1024)
            samples.planes[0].update(bytes(samples.planes[0].buffer_size))
            samples.sample_rate, samples.pts = 44100, start
            out.mux(audio.encode(samples))
        out.mux(audio.encode(None))
    return buffer.getvalue()


@functools.cache
def mp3_clip() -> bytes:
    """One second of silence encoded as MP3."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp3") as out:
        stream = out.add_stream("libmp3lame", rate=44100, layout="mono")
        for start in range(0, 44100, 1152):
            samples = av.AudioFrame(format="s16p", layout="mono", samples=1152)
            samples.planes[0].update(bytes(samples.planes[0].buffer_size))
            samples.sample_rate, samples.pts = 44100, start
            out.mux(stream.encode(samples))
        out.mux(stream.encode(None))
    return buffer.getvalue()


def wav_clip(frames: int = 8000) -> bytes:
    """`frames` samples of 8 kHz 16-bit mono PCM in a WAV file (8000 is one second)."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(struct.pack("<h", 1000) * frames)
    return buffer.getvalue()


def garbage(size: int = 4096) -> bytes:
    """Bytes that no magic number matches and that are not text."""
    return b"\x00\x07" + random.Random(3).randbytes(size)


def pkpass(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


PASS_JSON = json.dumps({"formatVersion": 1, "description": "Boarding pass"}).encode()
VCARD = b"\xef\xbb\xbf\r\nBEGIN:VCARD\r\nVERSION:3.0\r\nFN:Ada Lovelace\r\nEND:VCARD\r\n"
ICAL = b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"


def refused(kind: MediaKind, data: bytes, declared: str, settings: MediaSettings) -> MediaError:
    with pytest.raises(MediaError) as caught:
        inspect(kind, data, declared, 2, settings)
    return caught.value


# --- sniffing --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (still("JPEG"), "image/jpeg"),
        (still("PNG"), "image/png"),
        (animated_gif(), "image/gif"),
        (still("WEBP"), "image/webp"),
        (still("BMP"), "image/bmp"),
        (still("TIFF"), "image/tiff"),
        (b"\0\0\0\x18ftypheic\0\0\0\0mif1heic", "image/heic"),
        (b"\0\0\0\x18ftypisom\0\0\0\0isomavc1", "video/mp4"),
        (b"\0\0\0\x18ftypM4A \0\0\0\0M4A isom", "audio/mp4"),
        (b"\0\0\0\x18ftyp3gp5\0\0\0\0", "video/3gpp"),
        (b"\0\0\0\x14ftypqt  \0\0\0\0", "video/quicktime"),
        (b"\0\0\0\x18ftypavif\0\0\0\0", None),
        (b"RIFF\x24\0\0\0WAVEfmt ", "audio/wav"),
        (b"RIFF\x24\0\0\0AVI LIST", "video/x-msvideo"),
        (b"#!AMR\n\x3c", "audio/amr"),
        (b"OggS\0\x02" + bytes(20), "audio/ogg"),
        (b"\xff\xf1\x50\x80\x02\x1f\xfc", "audio/aac"),
        (b"\xff\xfb\x90\x64\0\0", "audio/mpeg"),
        (b"\xff\xff\xff\xff\xff\xff", None),
        (b"\0\0\x01\xba\x44\0\x04", "video/mpeg"),
        (b"\x30\x26\xb2\x75\x8e\x66\xcf\x11\xa6\xd9", "video/x-ms-wmv"),
        (b"\x1a\x45\xdf\xa3\x9f\x42\x86", "video/webm"),
        (b"%PDF-1.7\n", "application/pdf"),
        (pkpass({"pass.json": PASS_JSON}), "application/vnd.apple.pkpass"),
        (pkpass({"readme.txt": b"hi"}), "application/zip"),
        (VCARD, "text/vcard"),
        (ICAL, "text/calendar"),
        ("Hello, wörld".encode(), "text/plain"),
        (b"BMW drives cars", "text/plain"),
        (garbage(), None),
    ],
)
def test_sniff_tells_the_type_from_the_bytes(data: bytes, expected: str | None) -> None:
    """Magic numbers name the type; bytes with none, and not text, name nothing."""
    assert sniff(data) == expected


@pytest.mark.parametrize(
    ("declared", "canonical"),
    [
        ("image/jpg", "image/jpeg"),
        ("audio/mp3", "audio/mpeg"),
        ("audio/x-wav", "audio/wav"),
        ("text/x-vcard", "text/vcard"),
        ("Video/MP4; codecs=avc1", "video/mp4"),
        ("image/png", "image/png"),
    ],
)
def test_declared_types_are_cleaned_up(declared: str, canonical: str) -> None:
    """Declared types lose case and parameters, and aliases map to one spelling."""
    assert canonical_type(declared) == canonical


# --- slot kinds and declared types -----------------------------------------------------------


def test_sniffed_type_wins_over_the_declared_one_in_lenient_mode() -> None:
    """Lenient mode believes the bytes: a JPEG declared as PNG is a JPEG."""
    result = inspect(MediaKind.IMAGE, still("JPEG"), "image/png", 1, LENIENT)
    assert (result.content_type, result.width, result.height) == ("image/jpeg", 320, 240)


def test_media_of_another_kind_is_not_allowed() -> None:
    """A video in an image slot is E229, naming the slide and what the slot holds."""
    error = refused(MediaKind.IMAGE, mp4_clip(), "image/jpeg", LENIENT)
    assert error.code is ErrorCode.CONTENT_NOT_ALLOWED
    assert error.info == "Content not allowed in slide 2: image slot holds video/mp4"


def test_text_in_an_image_slot_is_not_allowed() -> None:
    """An HTML error page served as image/jpeg is E229: it is text, not a broken image."""
    error = refused(MediaKind.IMAGE, b"<html>Not found</html>", "image/jpeg", LENIENT)
    assert error.code is ErrorCode.CONTENT_NOT_ALLOWED
    assert error.info.endswith("image slot holds text/plain")


def test_unknown_content_with_an_unknown_declared_type_is_unrecognized() -> None:
    """Bytes of no known type, declared as octet-stream, are E629 in lenient mode."""
    error = refused(MediaKind.IMAGE, garbage(), "application/octet-stream", LENIENT)
    assert error.code is ErrorCode.UNRECOGNIZED_CONTENT_TYPE
    assert error.info.startswith("Unrecognized content type in slide 2:")


def test_unknown_content_declared_as_an_image_is_a_corrupt_image() -> None:
    """Decision: binary bytes of no known type declared image/jpeg are E341, not E629.

    Lenient mode falls back to the declared type when the bytes show none, and a JPEG that
    does not decode is a corrupt image, which is also what Sinch answers for a broken file.
    """
    error = refused(MediaKind.IMAGE, garbage(), "image/jpeg", LENIENT)
    assert error.code is ErrorCode.IMAGE_CORRUPT
    assert error.info == "Image file in slide 2 is corrupted"


def test_strict_mode_needs_a_known_declared_type() -> None:
    """Strict mode refuses a real JPEG declared as octet-stream with E629."""
    error = refused(MediaKind.IMAGE, still("JPEG"), "application/octet-stream", STRICT)
    assert error.code is ErrorCode.UNRECOGNIZED_CONTENT_TYPE


def test_strict_mode_refuses_content_that_contradicts_its_type() -> None:
    """Strict mode refuses a JPEG declared as PNG with E229."""
    error = refused(MediaKind.IMAGE, still("JPEG"), "image/png", STRICT)
    assert error.code is ErrorCode.CONTENT_NOT_ALLOWED
    assert error.info.endswith("declared image/png but holds image/jpeg")


def test_strict_mode_takes_correctly_declared_content() -> None:
    """Strict mode accepts a JPEG declared with an alias of its type."""
    assert inspect(MediaKind.IMAGE, still("JPEG"), "image/jpg", 1, STRICT).width == 320


# --- images ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "content_type"),
    [
        ("JPEG", "image/jpeg"),
        ("PNG", "image/png"),
        ("WEBP", "image/webp"),
        ("BMP", "image/bmp"),
        ("TIFF", "image/tiff"),
    ],
)
def test_still_images_report_type_and_size(fmt: str, content_type: str) -> None:
    """A still image reports its type and dimensions and no duration."""
    result = inspect(MediaKind.IMAGE, still(fmt, (64, 48)), "", 1, LENIENT)
    assert result == Inspected(content_type, 64, 48, None, (), None)


def test_animated_gif_reports_its_total_duration() -> None:
    """An animated GIF's duration is the sum of its frame durations."""
    result = inspect(MediaKind.IMAGE, animated_gif((100, 200, 300)), "image/gif", 1, LENIENT)
    assert (result.content_type, result.width, result.height) == ("image/gif", 40, 30)
    assert result.duration_ms == 600


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF"])
def test_truncated_image_is_corrupt(fmt: str) -> None:
    """An image cut off halfway is E341."""
    data = still(fmt)
    error = refused(MediaKind.IMAGE, data[: len(data) // 2], "", LENIENT)
    assert error.code is ErrorCode.IMAGE_CORRUPT


def test_huge_dimensions_are_refused_before_decoding() -> None:
    """A 60-megapixel header is E331 naming its size; its tiny data is never decoded."""
    error = refused(MediaKind.IMAGE, png_header_only(10_000, 6_000), "image/png", LENIENT)
    assert error.code is ErrorCode.IMAGE_TOO_BIG
    assert error.info == "Image in slide 2 is too big: 10000x6000 is more than 50000000 pixels"


@pytest.mark.parametrize("size", [(15_000, 10_000), (20_000, 20_000)])
def test_decompression_bombs_are_too_big(size: tuple[int, int]) -> None:
    """Sizes that trip Pillow's own bomb warning or error are E331 too."""
    error = refused(MediaKind.IMAGE, png_header_only(*size), "image/png", LENIENT)
    assert error.code is ErrorCode.IMAGE_TOO_BIG


def test_heic_photo_inspects_with_its_size(monkeypatch: pytest.MonkeyPatch) -> None:
    """An iPhone-style HEIC photo is taken as image/heic, its size read: inspect registers
    pillow-heif's Pillow opener itself, whether or not anything else did."""
    pillow_heif = pytest.importorskip("pillow_heif")
    out = io.BytesIO()
    pillow_heif.from_pillow(Image.effect_noise((320, 240), 40).convert("RGB")).save(out, quality=70)
    # Pillow as before any registration (importing media.images registers HEIF too).
    monkeypatch.setattr(Image, "ID", [name for name in Image.ID if name != "HEIF"])
    monkeypatch.setattr(Image, "OPEN", {k: v for k, v in Image.OPEN.items() if k != "HEIF"})
    inspect_module._heif_available.cache_clear()
    found = inspect(MediaKind.IMAGE, out.getvalue(), "image/heic", 1, LENIENT)
    assert (found.content_type, found.width, found.height) == ("image/heic", 320, 240)
    assert "HEIF" in Image.OPEN


def test_broken_heic_is_corrupt() -> None:
    """A HEIC header with nothing behind it is E341."""
    heic = b"\0\0\0\x18ftypheic\0\0\0\0mif1heic" + bytes(64)
    error = refused(MediaKind.IMAGE, heic, "image/heic", LENIENT)
    assert error.code is ErrorCode.IMAGE_CORRUPT


# --- audio and video -------------------------------------------------------------------------


def test_wav_reports_duration_and_codec() -> None:
    """A one-second WAV is audio/wav, about 1000 ms, PCM."""
    result = inspect(MediaKind.AUDIO, wav_clip(), "audio/x-wav", 1, LENIENT)
    assert result.content_type == "audio/wav"
    assert result.duration_ms == 1000
    assert result.codecs == ("pcm_s16le",)


def test_mp3_reports_duration_and_codec() -> None:
    """A one-second MP3 is audio/mpeg, about 1000 ms, an MP3 codec."""
    result = inspect(MediaKind.AUDIO, mp3_clip(), "audio/mp3", 1, LENIENT)
    assert result.content_type == "audio/mpeg"
    assert result.duration_ms is not None
    assert abs(result.duration_ms - 1000) < 100
    assert result.codecs[0].startswith("mp3")


@pytest.mark.parametrize("data", [wav_clip(frames=0), garbage()], ids=["zero-duration", "garbage"])
def test_audio_without_sound_is_corrupt(data: bytes) -> None:
    """Audio with nothing to decode, or garbage declared as MP3, is E342."""
    error = refused(MediaKind.AUDIO, data, "audio/mpeg", LENIENT)
    assert error.code is ErrorCode.AUDIO_CORRUPT
    assert error.info == "Audio file in slide 2 is corrupted"


def test_video_in_an_audio_slot_is_not_allowed() -> None:
    """An MP4 with moving pictures in an audio slot is E229."""
    error = refused(MediaKind.AUDIO, mp4_clip(), "audio/mp4", LENIENT)
    assert error.code is ErrorCode.CONTENT_NOT_ALLOWED


def test_mp4_reports_size_duration_and_codecs() -> None:
    """The generated clip is video/mp4, 160x120, about 1000 ms, H.264 with AAC."""
    result = inspect(MediaKind.VIDEO, mp4_clip(), "video/mp4", 1, STRICT)
    assert (result.content_type, result.width, result.height) == ("video/mp4", 160, 120)
    assert result.codecs == ("h264", "aac")
    assert result.duration_ms is not None
    assert abs(result.duration_ms - 1000) < 100


def test_video_frames_over_the_pixel_limit_are_too_big(monkeypatch: pytest.MonkeyPatch) -> None:
    """A video whose frames exceed the pixel limit is E333 before a frame is decoded."""
    monkeypatch.setattr(inspect_module, "MAX_PIXELS", 160 * 120 - 1)
    error = refused(MediaKind.VIDEO, mp4_clip(), "video/mp4", LENIENT)
    assert error.code is ErrorCode.VIDEO_TOO_BIG
    assert error.info == "Video in slide 2 is too big: 160x120 is more than 19199 pixels"


@pytest.mark.parametrize("data", [garbage(), mp4_clip()[:200]], ids=["garbage", "truncated"])
def test_video_that_does_not_decode_is_refused(data: bytes) -> None:
    """Garbage declared as MP4, or an MP4 cut short, is E343."""
    error = refused(MediaKind.VIDEO, data, "video/mp4", LENIENT)
    assert error.code is ErrorCode.VIDEO_NO_CODECS
    assert error.info == "Video in slide 2 is corrupted or missing codecs"


def test_video_without_a_video_stream_is_refused() -> None:
    """An MP4 holding only sound is E343 in a video slot, and fine in an audio slot."""
    error = refused(MediaKind.VIDEO, m4a_clip(), "video/mp4", LENIENT)
    assert error.code is ErrorCode.VIDEO_NO_CODECS
    result = inspect(MediaKind.AUDIO, m4a_clip(), "audio/mp4", 1, STRICT)
    assert (result.content_type, result.codecs) == ("audio/mp4", ("aac",))


def test_audio_in_a_video_slot_is_not_allowed() -> None:
    """A WAV file in a video slot is E229."""
    error = refused(MediaKind.VIDEO, wav_clip(), "video/mp4", LENIENT)
    assert error.code is ErrorCode.CONTENT_NOT_ALLOWED
    assert error.info.endswith("video slot holds audio/wav")


# --- text ------------------------------------------------------------------------------------


def test_text_is_decoded() -> None:
    """A UTF-8 text file gives its text, without the BOM."""
    result = inspect(MediaKind.TEXT, "\ufeffHéllo\n".encode(), "text/plain", 1, STRICT)
    assert result == Inspected("text/plain", text="Héllo\n")


def test_text_over_the_limit_is_too_long() -> None:
    """More characters than text_max_chars is E334 (characters, not bytes)."""
    settings = dataclasses.replace(LENIENT, text_max_chars=10)
    assert inspect(MediaKind.TEXT, ("é" * 10).encode(), "text/plain", 1, settings).text == "é" * 10
    error = refused(MediaKind.TEXT, ("é" * 11).encode(), "text/plain", settings)
    assert error.code is ErrorCode.TEXT_FILE_TOO_LONG
    assert error.info == "Text in slide 2 is too long: more than 10 characters"


def test_latin1_text_only_in_lenient_mode() -> None:
    """Latin-1 text is read in lenient mode and refused as E229 in strict mode."""
    data = "Café crème".encode("latin-1")
    assert inspect(MediaKind.TEXT, data, "text/plain", 1, LENIENT).text == "Café crème"
    assert refused(MediaKind.TEXT, data, "text/plain", STRICT).code is ErrorCode.CONTENT_NOT_ALLOWED


def test_binary_in_a_text_slot_is_not_allowed() -> None:
    """A PNG in a text slot is E229."""
    error = refused(MediaKind.TEXT, still("PNG"), "text/plain", LENIENT)
    assert error.code is ErrorCode.CONTENT_NOT_ALLOWED


# --- objects ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "data", "declared", "content_type"),
    [
        (MediaKind.VCARD, VCARD, "text/x-vcard", "text/vcard"),
        (MediaKind.ICAL, ICAL, "text/calendar", "text/calendar"),
        (MediaKind.PDF, b"%PDF-1.4\n%%EOF\n", "application/pdf", "application/pdf"),
        (
            MediaKind.PASSBOOK,
            pkpass({"pass.json": PASS_JSON, "manifest.json": b"{}"}),
            "application/vnd.apple.pkpass",
            "application/vnd.apple.pkpass",
        ),
    ],
)
def test_objects_are_accepted(
    kind: MediaKind, data: bytes, declared: str, content_type: str
) -> None:
    """A well-formed vCard, iCal, PDF or Passbook file passes, strictly declared."""
    assert inspect(kind, data, declared, 1, STRICT).content_type == content_type


@pytest.mark.parametrize(
    ("kind", "data", "declared"),
    [
        (MediaKind.VCARD, b"FN:Ada Lovelace\r\n", "text/vcard"),
        (MediaKind.VCARD, VCARD.replace(b"END:VCARD", b""), "text/vcard"),
        (MediaKind.ICAL, b"just some words", "text/calendar"),
        (MediaKind.PDF, garbage(), "application/pdf"),
        (MediaKind.PASSBOOK, pkpass({"readme.txt": b"hi"}), "application/vnd.apple.pkpass"),
        (MediaKind.PASSBOOK, pkpass({"pass.json": b"[1, 2"}), "application/vnd.apple.pkpass"),
        (MediaKind.PASSBOOK, b"PK\x03\x04pass.json" + garbage(), "application/vnd.apple.pkpass"),
    ],
    ids=[
        "vcard-no-begin",
        "vcard-no-end",
        "ical-plain-text",
        "pdf-garbage",
        "pass-no-json",
        "pass-bad-json",
        "pass-bad-zip",
    ],
)
def test_corrupt_objects_are_refused(kind: MediaKind, data: bytes, declared: str) -> None:
    """An object that is not what its slot holds is E344."""
    error = refused(kind, data, declared, LENIENT)
    assert error.code is ErrorCode.OBJECT_CORRUPT
    assert " file in slide 2 is corrupted: " in error.info
    assert "file file" not in error.info
