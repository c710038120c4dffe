"""The dry run's report, byte for byte: what POST /v1/preview answers and what
`mmsgate preview` prints (JSON and table) for a message with text, a transcoded image, a
video kept as it came and an object some profiles cannot take."""

from __future__ import annotations

import pytest

from mmsgate.media import prepare
from mmsgate.models import MediaKind
from mmsgate.profiles import CarrierProfile
from tests import samples
from tests.api.helpers import assert_golden
from tests.api.test_errors import send_mms
from tests.conftest import Gateway, MediaServer

pytestmark = pytest.mark.anyio

IMAGE = prepare.TranscodeReport(True, 320, 240, 80, "jpeg", None, ("exif",))
VIDEO = prepare.TranscodeReport(True, 176, 144, None, "h263+amr", 2000, (), 64_000, "suits")


async def fixed_transcode(
    kind: MediaKind, data: bytes, profile: CarrierProfile, target: int
) -> prepare.Output:
    """Transcoding with fixed outputs, so every figure of the report is known."""
    if kind is MediaKind.IMAGE:
        return prepare.Output(b"j" * 5_000, "image/jpeg", IMAGE)
    return prepare.Output(b"v" * 20_000, "video/3gpp", VIDEO)


def golden_request(api_key: str, media: MediaServer) -> str:
    photo = media.add("/photo.jpg", "image/jpeg", samples.jpeg(640, 480))
    clip = media.add("/clip.mp4", "video/mp4", samples.mp4(1.0))
    pdf = media.add("/menu.pdf", "application/pdf", b"%PDF-1.4\n" + b"0" * 2000)
    slides = (
        f"<slide><image><url>{photo}</url></image><message-text>Hello</message-text></slide>"
        f"<slide><video><url>{clip}</url></video></slide>"
        f"<slide><pdf><url>{pdf}</url></pdf><message-text>Menu</message-text></slide>"
    )
    return send_mms(api_key, slides)


async def test_the_preview_answer_is_golden(
    gateway: Gateway, media_server: MediaServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """POST /v1/preview answers the report per profile in the same bytes as before."""
    monkeypatch.setattr(prepare, "_transcode", fixed_transcode)
    body = golden_request(gateway.api_key, media_server)
    answer = await gateway.client.post(
        "/v1/preview", content=body, headers={"x-api-key": gateway.api_key}
    )
    assert answer.status_code == 200, answer.text
    assert_golden("preview.json", answer.content)
