"""The typed transcode report (`media.prepare.TranscodeReport`): what the transcode cache
stores reads back the same, and reports cached in the earlier shape read as they meant."""

from __future__ import annotations

from mmsgate.media.prepare import StoredPart, TranscodeReport
from mmsgate.models import MediaKind

PART = StoredPart(MediaKind.IMAGE, "image/jpeg", "blob", "https://x/a.jpg", 640, 480, None)


def test_a_report_round_trips_through_the_cache_json() -> None:
    """Image, video and kept-as-it-came reports come back equal from their JSON."""
    reports = [
        TranscodeReport(True, 320, 240, 80, "jpeg", None, ("exif",)),
        TranscodeReport(True, 176, 144, None, "h263+amr", 9000, (), 64_000, "suits"),
        TranscodeReport(dropped=("too big",)),
        TranscodeReport(),
    ]
    for report in reports:
        assert TranscodeReport.from_json(report.to_json()) == report


def test_earlier_cached_reports_keep_their_meaning() -> None:
    """A cached image report (no bitrate, duration null) measures as transcoded; an empty
    one or a too-big one measures as the stored part."""
    image = {"width": 320, "height": 240, "quality": 80, "codec": "jpeg", "duration_ms": None}
    read = TranscodeReport.from_json({**image, "dropped": []})
    assert read.measures(PART) == (320, 240, None)
    assert read.codec == "jpeg"
    assert TranscodeReport.from_json({}).measures(PART) == (640, 480, None)
    too_big = TranscodeReport.from_json({"dropped": ["too big"]})
    assert (too_big.measures(PART), too_big.dropped) == ((640, 480, None), ("too big",))
