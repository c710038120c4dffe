"""Image transcoding: generated photos, PNGs and GIFs through the real Pillow pipeline, each
output decoded again to check type, size, dimensions, frames and metadata."""

from __future__ import annotations

import io
import struct
import zlib

import pillow_heif
import pytest
from PIL import Image

from mmsgate import errors
from mmsgate.codes import ErrorCode
from mmsgate.media import images
from mmsgate.profiles import DEFAULT, LEGACY

GPS_IFD = 0x8825
ORIENTATION = 0x0112


def photo(width: int, height: int, **save: object) -> Image.Image:
    """Smooth shading under fine grain: compresses like a camera photo."""
    shade = Image.radial_gradient("L").resize((width, height)).convert("RGB")
    grain = Image.effect_noise((width, height), 40).convert("RGB")
    return Image.blend(shade, grain, 0.35)


def encoded(image: Image.Image, kind: str, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, kind, **options)
    return out.getvalue()


def decode(result: images.ImageResult) -> Image.Image:
    """The output as an independent decoder sees it, checked against what the result says."""
    image = Image.open(io.BytesIO(result.data))
    image.load()
    assert Image.MIME[image.format or ""] == result.content_type
    assert image.size == (result.width, result.height)
    return image


def animation(frames: int, size: tuple[int, int], duration: int = 80) -> bytes:
    pictures = [Image.effect_noise(size, 20 + i).convert("RGB") for i in range(frames)]
    return encoded(
        pictures[0], "GIF", save_all=True, append_images=pictures[1:], duration=duration, loop=0
    )


class TestPhotos:
    def test_a_12_megapixel_photo_fits_the_default_profile(self) -> None:
        """4000x3000 becomes a baseline JPEG inside 1920x1920 and under the target."""
        source = encoded(photo(4000, 3000), "JPEG", quality=92)
        result = images.transcode_image(source, DEFAULT, 550_000)
        image = decode(result)
        assert len(result.data) <= 550_000
        assert image.size == (1920, 1440)
        assert result.quality in DEFAULT.jpeg_qualities
        assert not image.info.get("progressive")

    def test_a_small_target_walks_down_quality_then_size(self) -> None:
        """With little room the quality falls first, then the picture shrinks; it still fits."""
        source = encoded(photo(2000, 1500), "JPEG", quality=92)
        roomy = images.transcode_image(source, DEFAULT, 600_000)
        tight = images.transcode_image(source, DEFAULT, 40_000)
        assert len(tight.data) <= 40_000
        assert (tight.quality or 0) <= (roomy.quality or 0)
        assert tight.width < roomy.width

    def test_orientation_is_applied_and_metadata_stripped(self) -> None:
        """A sideways camera photo with GPS comes out upright with no EXIF at all."""
        picture = photo(400, 200)
        picture.paste((255, 0, 0), (0, 0, 40, 40))  # red mark, top left as stored
        exif = Image.Exif()
        exif[ORIENTATION] = 6  # rotate 90° clockwise to display
        exif.get_ifd(GPS_IFD)[2] = (52.0, 22.0, 0.0)
        source = encoded(picture, "JPEG", quality=90, exif=exif, comment=b"secret")
        result = images.transcode_image(source, DEFAULT, 200_000)
        image = decode(result)
        assert image.size == (200, 400)
        red, green, _blue = image.convert("RGB").getpixel((190, 10))  # type: ignore[misc]
        assert red > 200 > green  # the mark moved to the top right
        assert not image.getexif()
        assert "comment" not in image.info
        assert "metadata" in result.dropped

    def test_cmyk_jpeg_becomes_rgb(self) -> None:
        """A print-shop CMYK JPEG is converted to an RGB one phones show."""
        source = encoded(photo(300, 200).convert("CMYK"), "JPEG", quality=90)
        assert decode(images.transcode_image(source, DEFAULT, 100_000)).mode == "RGB"

    @pytest.mark.parametrize("kind", ["WEBP", "BMP", "TIFF", "HEIF"])
    def test_other_formats_become_jpeg(self, kind: str) -> None:
        """WebP, BMP, TIFF and HEIC photos are taken and converted to JPEG."""
        pillow_heif.register_heif_opener()
        source = encoded(photo(800, 600), kind)
        result = images.transcode_image(source, DEFAULT, 200_000)
        assert result.content_type == "image/jpeg"
        assert decode(result).size == (800, 600)


class TestTransparency:
    def logo(self) -> bytes:
        image = Image.new("RGBA", (600, 400), (0, 0, 0, 0))
        image.paste((0, 90, 200, 255), (100, 100, 500, 300))
        return encoded(image, "PNG")

    def test_a_transparent_png_stays_png(self) -> None:
        """A logo with real transparency keeps it on a profile that takes PNG."""
        result = images.transcode_image(self.logo(), DEFAULT, 100_000)
        image = decode(result)
        assert result.content_type == "image/png"
        assert image.getpixel((0, 0))[3] == 0  # type: ignore[index]

    def test_legacy_handsets_get_a_transparent_gif(self) -> None:
        """The legacy profile takes no PNG: the logo becomes a GIF with a transparent entry."""
        result = images.transcode_image(self.logo(), LEGACY, 100_000)
        image = decode(result)
        assert result.content_type == "image/gif"
        assert image.convert("RGBA").getpixel((0, 0))[3] == 0  # type: ignore[index]

    def test_a_transparent_photo_too_big_for_png_is_flattened(self) -> None:
        """When no lossless form fits, the picture goes on white as JPEG, saying so."""
        image = photo(1200, 900).convert("RGBA")
        image.putalpha(200)
        result = images.transcode_image(encoded(image, "PNG"), DEFAULT, 150_000)
        assert result.content_type == "image/jpeg"
        assert "transparency" in result.dropped
        assert len(result.data) <= 150_000

    def test_an_opaque_big_png_becomes_jpeg(self) -> None:
        """A photo saved as PNG (no transparency, many bytes) goes to JPEG."""
        source = encoded(photo(1600, 1200), "PNG")
        result = images.transcode_image(source, DEFAULT, 500_000)
        assert result.content_type == "image/jpeg"

    def test_a_small_opaque_png_keeps_its_crisp_edges(self) -> None:
        """A small chart already within the target stays PNG."""
        chart = Image.new("RGB", (300, 200), "white")
        chart.paste((200, 0, 0), (20, 20, 120, 180))
        result = images.transcode_image(encoded(chart, "PNG"), DEFAULT, 100_000)
        assert result.content_type == "image/png"


class TestAnimations:
    def test_an_animated_gif_is_scaled_and_stays_animated(self) -> None:
        """800x600 frames come into 480 px with every frame and its timing kept."""
        result = images.transcode_image(animation(10, (800, 600)), DEFAULT, 2_000_000)
        image = decode(result)
        assert image.size == (480, 360)
        assert getattr(image, "n_frames", 1) == result.frames == 10
        assert image.info["duration"] == 80

    def test_a_tight_target_drops_frames_and_colours_but_keeps_the_time(self) -> None:
        """Frames and colours go before the animation does; total time is unchanged."""
        result = images.transcode_image(animation(40, (800, 600)), DEFAULT, 300_000)
        image = decode(result)
        frames = getattr(image, "n_frames", 1)
        assert 1 < frames < 40
        total = 0
        for index in range(frames):
            image.seek(index)
            total += int(image.info["duration"])
        assert abs(total - 40 * 80) <= 80 * 4
        assert any(d.startswith("frames 40→") for d in result.dropped)
        assert len(result.data) <= 300_000

    def test_an_animation_that_cannot_fit_becomes_a_still(self) -> None:
        """As a last resort the first frame goes as a JPEG, with the loss reported."""
        result = images.transcode_image(animation(40, (800, 600)), DEFAULT, 40_000)
        assert result.content_type == "image/jpeg"
        assert result.frames == 1
        assert "animation" in result.dropped


class TestBadInput:
    @pytest.mark.parametrize("data", [b"", b"not an image at all", b"\xff\xd8\xff" + bytes(50)])
    def test_empty_or_garbage_is_e341(self, data: bytes) -> None:
        """Nothing decodable gives E341 with a reason."""
        with pytest.raises(errors.MediaError) as caught:
            images.transcode_image(data, DEFAULT, 100_000)
        assert caught.value.code is ErrorCode.IMAGE_CORRUPT

    def test_a_truncated_jpeg_is_e341(self) -> None:
        """A photo cut in half does not decode: E341, not a grey half-picture."""
        source = encoded(photo(800, 600), "JPEG", quality=90)
        with pytest.raises(errors.MediaError) as caught:
            images.transcode_image(source[: len(source) // 2], DEFAULT, 100_000)
        assert caught.value.code is ErrorCode.IMAGE_CORRUPT

    def test_more_than_50_megapixels_is_refused_before_decoding(self) -> None:
        """A PNG whose header claims 10000x6000 is E331 at once; its pixels are never read."""
        header = struct.pack(">IIBBBBB", 10_000, 6_000, 8, 2, 0, 0, 0)
        chunk = b"IHDR" + header
        png = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + chunk
        png += struct.pack(">I", zlib.crc32(chunk)) + b"\x00\x00\x00\x00IEND\xaeB`\x82"
        with pytest.raises(errors.MediaError) as caught:
            images.transcode_image(png, DEFAULT, 100_000)
        assert caught.value.code is ErrorCode.IMAGE_TOO_BIG
        assert "10000x6000" in caught.value.info

    def test_a_target_nothing_can_meet_says_so(self) -> None:
        """500 bytes cannot hold a photo even at the smallest size tried."""
        source = encoded(photo(1200, 900), "JPEG", quality=90)
        with pytest.raises(images.ImageTooBig):
            images.transcode_image(source, DEFAULT, 500)
