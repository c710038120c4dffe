"""The hosted page's slides as types: to JSON and back, and rows written in the old shape."""

from __future__ import annotations

import json

from mmsgate.models import MediaKind, Rendition, WebPart, WebSlide
from mmsgate.store.fallbacks import slides_of

SMALL = Rendition("image/jpeg", "s" * 64, 900, 480, 360)
SLIDES = (
    WebSlide(
        "Hello",
        5,
        (
            WebPart(
                MediaKind.IMAGE, "image/jpeg", "k" * 64, 4000, 800, 600, None, "a.jpg", "A", SMALL
            ),
            WebPart(MediaKind.VIDEO, "video/mp4", "v" * 64, 9000, 320, 240, 1000),
        ),
    ),
    WebSlide(None, None, (WebPart(MediaKind.PDF, "application/pdf", "p" * 64, 10, name="doc"),)),
)

# A fallbacks row's `slides` column as mmsgate wrote it before the page had types.
OLD_ROW = """[{"text": "Hello", "duration": 5, "parts": [
 {"kind": "image", "content_type": "image/jpeg", "blob_key": "kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk",
  "bytes": 4000, "width": 800, "height": 600, "duration_ms": null, "name": "a.jpg", "alt": "A",
  "small": {"content_type": "image/jpeg",
   "blob_key": "ssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssss",
   "bytes": 900, "width": 480, "height": 360}},
 {"kind": "video", "content_type": "video/mp4", "blob_key": "vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv",
  "bytes": 9000, "width": 320, "height": 240, "duration_ms": 1000, "name": null, "alt": null,
  "small": null}]},
 {"text": null, "duration": null, "parts": [
 {"kind": "pdf", "content_type": "application/pdf", "blob_key": "pppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppp",
  "bytes": 10, "width": null, "height": null, "duration_ms": null, "name": "doc", "alt": null,
  "small": null}]}]"""


def test_slides_go_to_json_and_back_unchanged() -> None:
    """WebSlide.to_data, through JSON, reads back equal with from_data."""
    stored = json.loads(json.dumps([slide.to_data() for slide in SLIDES]))
    assert slides_of(stored) == SLIDES


def test_a_row_in_the_old_shape_reads_and_keeps_its_shape() -> None:
    """A slides column written before the types existed reads as the same slides, and the
    types write exactly that JSON again."""
    old = json.loads(OLD_ROW)
    assert slides_of(old) == SLIDES
    assert [slide.to_data() for slide in SLIDES] == old


def test_keys_missing_from_an_older_row_read_as_none() -> None:
    """A part stored without size, name, alt or small reads with those as None."""
    [slide] = slides_of(
        [{"parts": [{"kind": "image", "content_type": "image/png", "blob_key": "b"}]}]
    )
    assert slide == WebSlide(None, None, (WebPart(MediaKind.IMAGE, "image/png", "b", 0),))
