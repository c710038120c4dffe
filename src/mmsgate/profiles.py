"""Carriers as data: the Sinch operator ids mmsgate knows, and the carrier profiles that say
what an MMS toward each must be (byte budget, formats, dimensions, codecs).

Figures: OMA MMS CONF content classes and the practical US limits (600 KB is delivered
everywhere; 525 KB toll-free; about 1 MB on AT&T and Verizon long codes when configured).
"""

from __future__ import annotations

import dataclasses

KIB = 1024


@dataclasses.dataclass(frozen=True, slots=True)
class Operator:
    """A mobile operator under its Sinch operator id."""

    id: int
    name: str


# Sinch's X-Mblox-Carrier-Id values (Sinch operator-id list).
OPERATORS: dict[int, Operator] = {
    op.id: op
    for op in (
        Operator(31002, "AT&T"),
        Operator(31003, "Verizon"),
        Operator(31004, "T-Mobile"),
        Operator(31005, "Sprint"),
        Operator(31062, "MetroPCS"),
    )
}


@dataclasses.dataclass(frozen=True, slots=True)
class CarrierProfile:
    """What one carrier (or handset class) accepts in an MMS.

    `budget_bytes` is the whole message as the MMSC measures it: every part decoded, plus
    the SMIL and the MIME headers. Video and audio describe what transcoding produces.
    """

    name: str
    budget_bytes: int = 600 * KIB
    image_types: tuple[str, ...] = ("image/jpeg", "image/gif", "image/png")
    image_max_width: int = 1920
    image_max_height: int = 1920
    image_short_side: int = 1080
    gif_max_side: int = 480
    jpeg_qualities: tuple[int, ...] = (85, 75, 65, 50, 40)
    audio_type: str = "audio/mp4"
    audio_codec: str = "aac"
    audio_bitrate: int = 64_000
    video_type: str = "video/mp4"
    video_codec: str = "h264"
    video_audio_codec: str = "aac"
    video_max_width: int = 640
    video_max_height: int = 640
    video_max_fps: int = 30
    max_duration_s: int = 60
    object_types: tuple[str, ...] = ("text/vcard", "text/x-vcard", "text/calendar")
    mms_capable: bool = True


DEFAULT = CarrierProfile(name="default")
LEGACY = CarrierProfile(
    name="legacy",
    budget_bytes=300 * KIB,  # OMA CONF "Video Rich" / "Image Rich" handsets
    image_types=("image/jpeg", "image/gif"),
    image_max_width=640,
    image_max_height=480,
    image_short_side=480,
    gif_max_side=320,
    audio_type="audio/amr",
    audio_codec="amr_nb",
    audio_bitrate=12_200,
    video_type="video/3gpp",
    video_codec="h263",
    video_audio_codec="amr_nb",
    video_max_width=176,
    video_max_height=144,
    video_max_fps=15,
    max_duration_s=30,
    object_types=("text/x-vcard",),
)

PROFILES: dict[str, CarrierProfile] = {
    p.name: p
    for p in (
        DEFAULT,
        LEGACY,
        CarrierProfile(name="tollfree", budget_bytes=525 * KIB),
        CarrierProfile(name="att", budget_bytes=1000 * KIB),
        CarrierProfile(name="verizon", budget_bytes=1000 * KIB),
        CarrierProfile(name="tmobile", budget_bytes=1000 * KIB),
    )
}

# Not a carrier: what the hosted fallback page serves to a phone's browser. No message budget
# (each part is fetched on its own), but parts kept small for slow networks.
WEB = CarrierProfile(
    name="web",
    budget_bytes=8 * 1024 * KIB,
    image_max_width=1280,
    image_max_height=1280,
    image_short_side=1080,
    gif_max_side=640,
    audio_bitrate=96_000,
    video_max_width=854,
    video_max_height=854,
    max_duration_s=180,
    object_types=(),
)
