"""Image transcoding through the real Pillow pipeline.

Every input is made here, with Pillow and pillow-heif, from noise over gradients so that JPEG
and GIF sizes behave like camera photos. Every output is decoded again, independently, and
checked: type, dimensions, bytes against the target, metadata, frames and timing.
"""

from __future__ import annotations

import functools
import io
import random
import struct
import zlib

import pillow_heif
import pytest
from PIL import Image, ImageDraw, ImageSequence, PngImagePlugin

from mmsgate import errors
from mmsgate.codes import ErrorCode
from mmsgate.media import images
from mmsgate.profiles import DEFAULT, LEGACY, PROFILES, CarrierProfile

pillow_heif.register_heif_opener()  # to make HEIC inputs; images.py registers it for itself

ORIENTATION, MAKE, GPS_IFD = 0x0112, 0x010F, 0x8825
RED = (255, 0, 0)


# --- inputs made on the spot -----------------------------------------------------------------


def noise(size: tuple[int, int], seed: int = 1) -> Image.Image:
    """Colour noise from random bytes: nothing a codec can predict."""
    return Image.frombytes("RGB", size, random.Random(seed).randbytes(size[0] * size[1] * 3))


def photo(size: tuple[int, int], seed: int = 1) -> Image.Image:
    """A smooth gradient under fine colour grain: compresses like a camera photo."""
    shade = Image.radial_gradient("L").resize(size).convert("RGB")
    return Image.blend(shade, noise(size, seed), 0.3)


def encoded(image: Image.Image, kind: str, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, kind, **options)
    return out.getvalue()


@functools.cache
def camera_jpeg() -> bytes:
    """A 12-megapixel photo as a camera saves it (quality 92)."""
    return encoded(photo((4000, 3000)), "JPEG", quality=92)


def logo(size: tuple[int, int] = (600, 400)) -> Image.Image:
    """A blue rectangle with a red dot on a see-through background."""
    image = Image.new("RGBA", size, (0, 0, 0, 0))
    width, height = size
    image.paste((0, 90, 200, 255), (width // 6, height // 4, width * 5 // 6, height * 3 // 4))
    image.paste((*RED, 255), (width // 2 - 10, height // 2 - 10, width // 2 + 10, height // 2 + 10))
    return image


def clip_frames(count: int, size: tuple[int, int], *, noisy: bool) -> list[Image.Image]:
    """A square crossing a gradient; `noisy` frames are grain all over, so each costs bytes."""
    frames = []
    for index in range(count):
        frame = photo(size, seed=index if noisy else 0)
        x = index * (size[0] - 60) // max(1, count - 1)
        frame.paste(RED, (x, 20, x + 60, 80))
        frames.append(frame)
    return frames


def gif(frames: list[Image.Image], duration: int = 80, **options: object) -> bytes:
    # Quantized here, quickly: Pillow's own adaptive palette per frame takes seconds.
    frames = [f.quantize(256, Image.Quantize.FASTOCTREE) if f.mode == "RGB" else f for f in frames]
    return encoded(
        frames[0], "GIF", save_all=True, append_images=frames[1:], duration=duration, **options
    )


@functools.cache
def calm_gif() -> bytes:
    """40 frames of 800x600: a square over a still background, 80 ms each, looping."""
    return gif(clip_frames(40, (800, 600), noisy=False), loop=0)


@functools.cache
def short_gif() -> bytes:
    """12 frames of 640x480, a square over a still background."""
    return gif(clip_frames(12, (640, 480), noisy=False), loop=0)


@functools.cache
def noisy_gif() -> bytes:
    """40 frames of 800x600 grain, 80 ms each: several megabytes however it is cut."""
    return gif(clip_frames(40, (800, 600), noisy=True), loop=0)


def heic(image: Image.Image, **options: object) -> bytes:
    """HEIC as a phone makes it, with the encoder's fastest preset so tests stay quick."""
    return encoded(image, "HEIF", quality=60, enc_params={"preset": "ultrafast"}, **options)


def png_header(width: int, height: int, colour_type: int = 0) -> bytes:
    """A PNG declaring `width` x `height` with almost no pixel data behind it."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


# --- checking outputs ------------------------------------------------------------------------


def check(
    result: images.ImageResult, target: int, profile: CarrierProfile = DEFAULT
) -> Image.Image:
    """Decode the output afresh and hold it to what the result and the profile say."""
    image = Image.open(io.BytesIO(result.data))
    image.load()
    assert Image.MIME[image.format or ""] == result.content_type
    assert result.content_type in profile.image_types
    assert image.size == (result.width, result.height)
    assert len(result.data) <= target
    assert getattr(image, "n_frames", 1) == result.frames
    if result.frames > 1:
        box = (profile.gif_max_side, profile.gif_max_side)
    else:
        box = (profile.image_max_width, profile.image_max_height)
    assert image.width <= box[0]
    assert image.height <= box[1]
    assert not image.getexif()
    assert not {"exif", "icc_profile", "xmp", "comment"} & set(image.info)
    if image.format == "JPEG":
        assert result.quality in profile.jpeg_qualities
        assert not image.info.get("progressive")  # baseline, for handsets
    else:
        assert result.quality is None
    return image


def durations(image: Image.Image) -> list[int]:
    return [int(frame.info["duration"]) for frame in ImageSequence.Iterator(image)]


def alpha_at(image: Image.Image, xy: tuple[int, int]) -> int:
    pixel = image.convert("RGBA").getpixel(xy)
    assert isinstance(pixel, tuple)
    return int(pixel[3])


def rgb_at(image: Image.Image, xy: tuple[int, int]) -> tuple[int, int, int]:
    pixel = image.convert("RGB").getpixel(xy)
    assert isinstance(pixel, tuple)
    return int(pixel[0]), int(pixel[1]), int(pixel[2])


def reddish(colour: tuple[int, int, int]) -> bool:
    return colour[0] > 190 and colour[1] < 70 and colour[2] < 70


# --- photos ----------------------------------------------------------------------------------


class TestPhotos:
    def test_a_12_megapixel_photo_fits_the_default_profile(self) -> None:
        """A 4000x3000 camera JPEG becomes a 1920x1440 baseline JPEG inside 550 KB."""
        result = images.transcode_image(camera_jpeg(), DEFAULT, 550_000)
        image = check(result, 550_000)
        assert image.size == (1920, 1440)
        assert result.quality == 85  # a photo this size fits at the top of the ladder
        assert result.dropped == ()

    def test_quality_goes_down_the_ladder_before_the_size_does(self) -> None:
        """A smaller target lowers the quality first; past the ladder's end the size goes down
        and the ladder is walked again, so the smaller picture may get a better quality."""
        source = encoded(photo((1600, 1200)), "JPEG", quality=92)
        roomy = images.transcode_image(source, DEFAULT, 2_000_000)
        assert (roomy.quality, roomy.width) == (85, 1600)
        tighter_target = len(roomy.data) * 6 // 10
        tighter = images.transcode_image(source, DEFAULT, tighter_target)
        assert tighter.width == 1600
        assert tighter.quality in (75, 65, 50)
        tight = images.transcode_image(source, DEFAULT, 40_000)
        assert tight.width < 1600
        for result, target in ((roomy, 2_000_000), (tighter, tighter_target), (tight, 40_000)):
            check(result, target)

    def test_orientation_is_applied_and_metadata_stripped(self) -> None:
        """A sideways photo with GPS, camera EXIF, XMP and a comment comes out upright, bare."""
        picture = photo((400, 200))
        picture.paste(RED, (0, 0, 40, 40))  # top left as stored
        exif = Image.Exif()
        exif[ORIENTATION] = 6  # shown turned 90° clockwise
        exif[MAKE] = "Phone Co."
        exif.get_ifd(GPS_IFD)[2] = (52.0, 22.0, 0.0)
        xmp = b"<x:xmpmeta xmlns:x='adobe:ns:meta/'>secret</x:xmpmeta>"
        source = encoded(picture, "JPEG", quality=90, exif=exif, comment=b"secret", xmp=xmp)
        result = images.transcode_image(source, DEFAULT, 100_000)
        image = check(result, 100_000)
        assert image.size == (200, 400)
        assert reddish(rgb_at(image, (180, 20)))  # the mark is now top right
        assert b"secret" not in result.data
        assert b"Phone Co." not in result.data
        assert result.dropped == ("metadata",)

    def test_a_cmyk_jpeg_becomes_rgb(self) -> None:
        """A print-shop CMYK JPEG becomes an RGB JPEG with its colours right."""
        picture = photo((600, 400))
        picture.paste(RED, (0, 0, 100, 100))
        source = encoded(picture.convert("CMYK"), "JPEG", quality=90)
        image = check(images.transcode_image(source, DEFAULT, 150_000), 150_000)
        assert image.mode == "RGB"
        assert reddish(rgb_at(image, (50, 50)))

    @pytest.mark.parametrize("kind", ["WEBP", "BMP", "TIFF", "HEIF"])
    def test_other_formats_become_jpeg(self, kind: str) -> None:
        """WebP, BMP, TIFF and HEIC photos are taken, scaled into the box and made JPEG."""
        picture = photo((2400, 1600))
        source = heic(picture) if kind == "HEIF" else encoded(picture, kind)
        result = images.transcode_image(source, DEFAULT, 400_000)
        image = check(result, 400_000)
        assert (result.content_type, image.size) == ("image/jpeg", (1920, 1280))

    def test_a_heic_photo_loses_its_gps(self) -> None:
        """A HEIC from a phone, EXIF and all, becomes a JPEG without any of it."""
        exif = Image.Exif()
        exif.get_ifd(GPS_IFD)[2] = (52.0, 22.0, 0.0)
        source = heic(photo((800, 600)), exif=exif.tobytes())
        result = images.transcode_image(source, DEFAULT, 200_000)
        check(result, 200_000)
        assert "metadata" in result.dropped

    @pytest.mark.parametrize("mode", ["I;16", "L", "P", "LA"])
    def test_unusual_modes_become_rgb_jpeg(self, mode: str) -> None:
        """16-bit grey, grey, palette and opaque grey+alpha photo PNGs become RGB JPEGs."""
        picture = photo((900, 700)).convert("L" if mode in ("I;16", "LA") else mode)
        if mode == "I;16":
            picture = picture.point(lambda value: value * 256, "I").convert("I;16")
        elif mode == "LA":
            picture = picture.convert("LA")  # alpha all 255: nothing see-through to keep
        result = images.transcode_image(encoded(picture, "PNG"), DEFAULT, 250_000)
        image = check(result, 250_000)
        assert (result.content_type, image.mode, image.size) == ("image/jpeg", "RGB", (900, 700))

    def test_the_legacy_profile_gets_its_smaller_box(self) -> None:
        """A 12 MP photo for legacy handsets fits 640x480."""
        result = images.transcode_image(camera_jpeg(), LEGACY, 100_000)
        assert check(result, 100_000, LEGACY).size == (640, 480)


# --- transparency and lossless stills ------------------------------------------------------


class TestTransparency:
    def test_a_transparent_png_stays_png(self) -> None:
        """A logo with real transparency stays PNG, see-through where it was, text chunks gone."""
        text = PngImagePlugin.PngInfo()
        text.add_text("Author", "someone")
        result = images.transcode_image(encoded(logo(), "PNG", pnginfo=text), DEFAULT, 100_000)
        image = check(result, 100_000)
        assert (result.content_type, image.size) == ("image/png", (600, 400))
        assert alpha_at(image, (0, 0)) == 0
        assert alpha_at(image, (300, 200)) == 255
        assert "Author" not in image.info
        assert result.dropped == ("metadata",)

    def test_an_opaque_big_png_becomes_jpeg(self) -> None:
        """A photo saved as PNG (opaque, megabytes) becomes a JPEG."""
        source = encoded(photo((2400, 1800)), "PNG")
        result = images.transcode_image(source, DEFAULT, 400_000)
        assert result.content_type == "image/jpeg"
        assert check(result, 400_000).size == (1920, 1440)

    def test_an_opaque_png_with_an_alpha_channel_all_opaque_becomes_jpeg(self) -> None:
        """An alpha channel that is 255 everywhere is no transparency: a big one goes to JPEG."""
        source = encoded(photo((1200, 900)).convert("RGBA"), "PNG")
        assert images.transcode_image(source, DEFAULT, 200_000).content_type == "image/jpeg"

    def test_a_small_opaque_png_keeps_its_crisp_edges(self) -> None:
        """A small chart already within target and box stays PNG."""
        chart = Image.new("RGB", (300, 200), "white")
        ImageDraw.Draw(chart).rectangle((20, 20, 120, 180), fill=RED)
        result = images.transcode_image(encoded(chart, "PNG"), DEFAULT, 100_000)
        assert result.content_type == "image/png"
        assert rgb_at(check(result, 100_000), (70, 100)) == RED

    def test_legacy_handsets_get_a_transparent_gif(self) -> None:
        """The legacy profile takes no PNG: a big logo becomes a GIF in its box, still clear."""
        result = images.transcode_image(encoded(logo((1200, 800)), "PNG"), LEGACY, 50_000)
        image = check(result, 50_000, LEGACY)
        assert (result.content_type, image.size) == ("image/gif", (640, 427))
        assert alpha_at(image, (0, 0)) == 0
        assert reddish(rgb_at(image, (320, 213)))

    def test_a_transparent_png_too_big_shrinks_as_png(self) -> None:
        """Over the target, a transparent picture is first made smaller and stays PNG."""
        picture = photo((800, 600)).convert("RGBA")
        picture.paste((0, 0, 0, 0), (0, 0, 100, 100))
        source = encoded(picture, "PNG")
        result = images.transcode_image(source, DEFAULT, len(source) // 2)
        image = check(result, len(source) // 2)
        assert result.content_type == "image/png"
        assert 400 <= image.width < 800
        assert alpha_at(image, (0, 0)) == 0
        assert result.dropped == ()

    def test_a_transparent_photo_that_cannot_fit_as_png_is_flattened(self) -> None:
        """When no PNG fits, the picture goes on white as a JPEG, saying so."""
        picture = photo((1200, 900)).convert("RGBA")
        picture.paste((0, 0, 0, 0), (0, 0, 200, 200))
        result = images.transcode_image(encoded(picture, "PNG"), DEFAULT, 150_000)
        image = check(result, 150_000)
        assert result.content_type == "image/jpeg"
        assert result.dropped == ("transparency",)
        assert min(rgb_at(image, (50, 50))) > 240  # white where it was see-through

    def test_a_transparent_still_gif_stays_gif(self) -> None:
        """A one-frame GIF with a see-through background stays GIF."""
        source = encoded(logo((300, 200)), "GIF")
        result = images.transcode_image(source, DEFAULT, 50_000)
        image = check(result, 50_000)
        assert (result.content_type, result.frames) == ("image/gif", 1)
        assert alpha_at(image, (0, 0)) == 0

    def test_an_opaque_still_gif_becomes_jpeg(self) -> None:
        """A one-frame GIF without transparency becomes a JPEG."""
        source = encoded(photo((640, 480)).convert("P"), "GIF")
        assert images.transcode_image(source, DEFAULT, 100_000).content_type == "image/jpeg"


# --- animations ------------------------------------------------------------------------------


class TestAnimations:
    def test_an_animated_gif_is_scaled_and_keeps_every_frame(self) -> None:
        """800x600 frames come into the 480 px GIF box, all 40, with their timing and loop."""
        result = images.transcode_image(calm_gif(), DEFAULT, 800_000)
        image = check(result, 800_000)
        assert (result.content_type, image.size, result.frames) == ("image/gif", (480, 360), 40)
        assert durations(image) == [80] * 40
        assert image.info["loop"] == 0
        assert result.dropped == ()

    def test_a_tight_target_drops_frames_before_anything_else(self) -> None:
        """Every other frame goes first, each kept one shown twice as long: same total time."""
        full = images.transcode_image(noisy_gif(), DEFAULT, 100_000_000)
        target = len(full.data) * 6 // 10  # half the frames fit, at full colour and size
        result = images.transcode_image(noisy_gif(), DEFAULT, target)
        image = check(result, target)
        assert (result.frames, image.size) == (20, (480, 360))
        assert durations(image) == [160] * 20
        assert result.dropped == ("frames 40→20",)

    def test_a_tighter_target_then_cuts_colours_and_size(self) -> None:
        """Past frame dropping, colours and then size give way; the animation plays on."""
        result = images.transcode_image(noisy_gif(), DEFAULT, 700_000)
        image = check(result, 700_000)
        assert result.frames >= 10
        assert sum(durations(image)) == 40 * 80
        assert any(loss.startswith("colours 256→") for loss in result.dropped)
        assert any(loss.startswith("frames 40→") for loss in result.dropped)

    def test_an_animation_that_cannot_fit_becomes_a_still_jpeg(self) -> None:
        """As a last resort the first frame goes as a JPEG, with the loss reported."""
        result = images.transcode_image(noisy_gif(), DEFAULT, 40_000)
        image = check(result, 40_000)
        assert (result.content_type, result.frames) == ("image/jpeg", 1)
        assert result.dropped == ("animation",)
        assert reddish(rgb_at(image, (30 * image.width // 800, 50 * image.width // 800)))

    def test_an_animated_webp_becomes_an_animated_gif(self) -> None:
        """An animated WebP is turned into a GIF with the same frames and durations."""
        frames = clip_frames(6, (320, 240), noisy=False)
        source = encoded(
            frames[0],
            "WEBP",
            save_all=True,
            append_images=frames[1:],
            duration=[100, 200] * 3,
            loop=0,
        )
        image = check(images.transcode_image(source, DEFAULT, 300_000), 300_000)
        assert (image.format, image.size) == ("GIF", (320, 240))
        assert durations(image) == [100, 200] * 3

    def test_a_transparent_animation_stays_transparent(self) -> None:
        """See-through frames stay see-through, and each is cleared before the next."""
        frames = [logo((200, 100)) for _ in range(4)]
        for index, frame in enumerate(frames):
            frame.paste((0, 200, 0, 255), (index * 40, 0, index * 40 + 20, 20))
        result = images.transcode_image(gif(frames, disposal=2, loop=0), DEFAULT, 100_000)
        image = check(result, 100_000)
        assert result.frames == 4
        for frame in ImageSequence.Iterator(image):
            assert alpha_at(frame, (199, 99)) == 0

    def test_an_endless_animation_is_thinned_on_reading(self) -> None:
        """600 frames are cut to at most 500, their time summed, before anything else is tried."""
        frames = []
        for index in range(600):  # a dot walking over a 32x32 field: every frame differs
            frame = Image.new("RGB", (32, 32), (0, 0, 120))
            frame.putpixel((index % 32, index // 32), RED)
            frames.append(frame)
        result = images.transcode_image(gif(frames, duration=20, loop=0), DEFAULT, 1_000_000)
        image = check(result, 1_000_000)
        assert result.frames == 300
        assert sum(durations(image)) == 600 * 20
        assert result.dropped == ("frames 600→300",)

    def test_an_animation_cut_short_plays_the_frames_before_the_cut(self) -> None:
        """A GIF truncated after some frames keeps those frames, as a browser would show them."""
        source = short_gif()
        result = images.transcode_image(source[: len(source) * 3 // 4], DEFAULT, 1_000_000)
        check(result, 1_000_000)
        assert 2 <= result.frames < 12

    def test_gif_comments_do_not_pass_and_a_single_play_stays_single(self) -> None:
        """A GIF's comment is dropped; one without a loop block still plays once."""
        source = gif(clip_frames(3, (100, 80), noisy=False), comment=b"secret")
        result = images.transcode_image(source, DEFAULT, 200_000)
        image = check(result, 200_000)
        assert result.frames == 3
        assert "loop" not in image.info
        assert b"secret" not in result.data
        assert result.dropped == ("metadata",)


# --- every profile ---------------------------------------------------------------------------


@pytest.mark.parametrize("profile", PROFILES.values(), ids=PROFILES.keys())
@pytest.mark.parametrize("source", ["photo", "logo", "animation"])
def test_outputs_are_always_of_a_type_the_profile_takes(
    source: str, profile: CarrierProfile
) -> None:
    """Whatever comes in, what goes out is one of the profile's types, in its box and target."""
    data = {
        "photo": camera_jpeg,
        "logo": lambda: encoded(logo((1600, 1200)), "PNG"),
        "animation": short_gif,
    }[source]()
    check(images.transcode_image(data, profile, 300_000), 300_000, profile)


# --- what cannot be done ---------------------------------------------------------------------


class TestRefused:
    @pytest.mark.parametrize(
        "data",
        [b"", b"not an image at all", b"%!PS-Adobe-3.0 EPSF-3.0\n", b"\xff\xd8\xff" + bytes(50)],
        ids=["empty", "text", "eps", "jpeg-magic-only"],
    )
    def test_nothing_decodable_is_e341(self, data: bytes) -> None:
        """Empty bytes, garbage, a format not taken and a bare JPEG marker are E341, saying why."""
        with pytest.raises(errors.MediaError) as caught:
            images.transcode_image(data, DEFAULT, 100_000)
        assert caught.value.code is ErrorCode.IMAGE_CORRUPT
        assert caught.value.info.startswith("Image file corrupted: ")

    @pytest.mark.parametrize("kind", ["JPEG", "PNG", "GIF"])
    def test_a_truncated_image_is_e341(self, kind: str) -> None:
        """An image cut in half does not decode: E341, never a grey half-picture."""
        source = encoded(noise((800, 600)), kind)
        with pytest.raises(errors.MediaError) as caught:
            images.transcode_image(source[: len(source) // 2], DEFAULT, 100_000)
        assert caught.value.code is ErrorCode.IMAGE_CORRUPT

    def test_more_than_50_megapixels_is_refused_before_decoding(self) -> None:
        """A PNG whose header claims 10000x6000 is E331 naming its size; its data is never read
        (decoding it would have found it truncated, which is E341)."""
        with pytest.raises(errors.MediaError) as caught:
            images.transcode_image(png_header(10_000, 6_000), DEFAULT, 100_000)
        assert caught.value.code is ErrorCode.IMAGE_TOO_BIG
        assert "10000x6000 is more than 50000000 pixels" in caught.value.info

    def test_a_decompression_bomb_is_refused(self) -> None:
        """A header past Pillow's own bomb limit is E331 too, not a crash."""
        with pytest.raises(errors.MediaError) as caught:
            images.transcode_image(png_header(20_000, 20_000), DEFAULT, 100_000)
        assert caught.value.code is ErrorCode.IMAGE_TOO_BIG

    def test_an_impossible_target_raises_image_too_big(self) -> None:
        """500 bytes cannot hold a photo even at the smallest size and quality: it says so."""
        with pytest.raises(
            images.ImageTooBig, match=r"at JPEG quality 40 is \d+ bytes, over the 500"
        ):
            images.transcode_image(encoded(photo((1200, 900)), "JPEG", quality=90), DEFAULT, 500)
