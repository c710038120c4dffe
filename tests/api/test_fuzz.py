"""Seeded, bounded fuzzing of every route, in-process: valid requests with hostile values,
encodings and damaged bytes never get an HTTP 5xx or E503, and each route answers in its own
shape. 5,250 inputs on SQLite and a quarter as many on PostgreSQL (whose column
types refuse more), the same ones on every run (derandomized)."""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import functools
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from mmsgate import mm7_codec as mm7
from mmsgate import models
from mmsgate.api import mm7 as mm7_api
from mmsgate.settings import Settings, SmsRoute
from mmsgate.store import deliveries
from tests import samples
from tests.api import fuzz_strategies as fz
from tests.api.helpers import fields, text_template
from tests.conftest import SIM_AUTH, Gateway, MediaServer, open_gateway

KANNEL = SmsRoute(name="kannel", kind="kannel", url="http://127.0.0.1:9/", dlr_token="fuzz-token")
MESSAGE_ID = "fuzz-mmsc-1"  # the MMSC's id of the one message the fuzzed reports may move
SEND = (
    "<request><action>sendMMS</action><api-key>{key}</api-key><to>17745550100</to>"
    "<from>28444</from><service-id>32113</service-id><name>n</name>"
    "<fallback-sms-text>f</fallback-sms-text><slide><message-text>hi</message-text></slide>"
    "</request>"
)


POSTGRESQL_SHARE = 0.25  # of each budget: the suite's run time stays modest


def budget(harness: Harness, examples: int) -> Any:
    """Hypothesis settings: `examples` inputs (a share of them on PostgreSQL), derandomized
    (a fixed seed from the test), no example database, no deadline (timings on a shared
    machine are noise)."""
    share = POSTGRESQL_SHARE if harness.postgresql else 1.0
    return hypothesis_settings(
        max_examples=round(examples * share),
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )


@dataclasses.dataclass
class Harness:
    """The gateway served in-process from an event loop of its own, called synchronously
    from the hypothesis examples; `seen` counts the answers, to show how deep inputs got."""

    portal: BlockingPortal
    gateway: Gateway
    image_url: str
    postgresql: bool
    seen: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        call = functools.partial(self.gateway.client.request, method, url, **kwargs)
        return self.portal.call(call)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The suite's settings with a Kannel route, so /kannel/dlr has a token to check."""
    return dataclasses.replace(settings, sms_routes=(KANNEL,))


@pytest.fixture
def harness(
    settings: Settings, media_server: MediaServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Harness]:
    """A gateway with template 1 saved and one message submitted under MESSAGE_ID."""
    # A report for an id not known yet waits for its SubmitRsp first; here none ever comes.
    monkeypatch.setattr(mm7_api, "UNKNOWN_WAITS", ())
    image_url = media_server.add("/1.jpg", "image/jpeg", samples.jpeg(160, 120))
    with (
        start_blocking_portal("asyncio") as portal,
        portal.wrap_async_context_manager(open_gateway(settings)) as gateway,
    ):
        portal.call(prepare, gateway)
        yield Harness(portal, gateway, image_url, settings.db_url.startswith("postgresql"))


async def prepare(gateway: Gateway) -> None:
    saved = await gateway.xml(text_template(gateway.api_key))
    assert fields(saved.content)["mms-id"] == "1"
    sent = await gateway.xml(SEND.format(key=gateway.api_key))
    move = deliveries.Move(
        models.RecipientState.SUBMITTED, "N101", carrier_message_id=MESSAGE_ID, route="simulator"
    )
    now = dt.datetime.now(dt.UTC)
    tracking_id = fields(sent.content)["tracking-id"]
    assert await deliveries.move(gateway.services.db, tracking_id, move, postback=None, now=now)


def sinch_answer(response: httpx.Response) -> str:
    """The code of a Sinch XML answer (`Success` or the top-level error code), checked to be
    an HTTP 200 `<response>` that holds no E503."""
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/xml")
    root = ET.fromstring(response.content)
    assert root.tag == "response"
    assert "E503" not in response.text
    codes = [e.text or "" for e in root.iter("error-code")]
    assert all(re.fullmatch(r"E[0-9]{3}", code) for code in codes), response.text
    if root.findtext("status") == "Failure":
        return root.findtext("error-code") or ""
    assert root.findtext("status") == "Success", response.text
    return "Success"


def test_sinch_xml_api(harness: Harness) -> None:
    """3,000 mutated requests of every action on POST /ep/v1/ are each answered by a Sinch
    `<response>`: Success or a Failure with its own code, never E503; and they reach deep:
    successes and many distinct codes."""
    now = dt.datetime.now(dt.UTC)
    bases = fz.sinch_bases(harness.gateway.api_key, harness.image_url, now)

    @budget(harness, 3000)
    @given(fz.sinch_post(bases))
    def one(post: tuple[bytes, dict[str, str]]) -> None:
        body, headers = post
        harness.seen[
            sinch_answer(harness.request("POST", "/ep/v1/", content=body, headers=headers))
        ] += 1

    one()
    assert harness.seen["Success"] >= 30, harness.seen
    assert len(harness.seen) >= 15, harness.seen


def test_preview(harness: Harness) -> None:
    """Mutated documents on POST /v1/preview get the JSON report or a JSON error code with
    HTTP 400, never a 5xx or E503."""
    bases = fz.sinch_bases(harness.gateway.api_key, harness.image_url, dt.datetime.now(dt.UTC))
    headers = {"x-api-key": harness.gateway.api_key}

    @budget(harness, 250)
    @given(fz.sinch_body(bases))
    def one(body: bytes) -> None:
        response = harness.request("POST", "/v1/preview", content=body, headers=headers)
        answer = response.json()
        if response.status_code == 200:
            assert answer["state"] == "preview"
        else:
            assert response.status_code == 400, response.text
            assert re.fullmatch(r"E[0-9]{3}", answer["error-code"])
            assert answer["error-code"] != "E503"
        harness.seen[str(response.status_code)] += 1

    one()
    assert harness.seen["200"], harness.seen
    assert harness.seen["400"], harness.seen


def mm7_answer(response: httpx.Response) -> str:
    """An MM7 answer: a *Rsp with HTTP 200, a Client fault with 400, or, only for a report
    of an id not known yet, the transient fault 3000 with 500 that MMSCs resend."""
    assert response.headers["content-type"].startswith("text/xml"), response.text
    answer = mm7.decode_response("text/xml", response.content)
    if response.status_code == 200:
        assert (answer.fault, answer.status_code) == (None, 1000), response.text
    elif response.status_code == 400:
        assert answer.fault == "env:Client", response.text
    else:
        assert (response.status_code, answer.status_code) == (500, 3000), response.text
    return f"{response.status_code}/{answer.kind}/{answer.status_code}"


def test_mm7(harness: Harness) -> None:
    """800 mutated reports, read replies and MO DeliverReqs on POST /mm7 each get an MM7
    answer in SOAP, never a JSON 500."""
    bases = fz.mm7_bases(MESSAGE_ID)

    @budget(harness, 800)
    @given(fz.mm7_post(bases))
    def one(post: tuple[bytes, str]) -> None:
        body, content_type = post
        response = harness.request(
            "POST", "/mm7", content=body, headers={"content-type": content_type}, auth=SIM_AUTH
        )
        harness.seen[mm7_answer(response)] += 1

    one()
    assert harness.seen["200/DeliveryReportRsp/1000"], harness.seen
    assert harness.seen["200/DeliverRsp/1000"], harness.seen


def test_kannel_receipts(harness: Harness) -> None:
    """400 receipts on /kannel/dlr with hostile routes, tokens, ids, types and replies, by GET
    and POST, each get a plain-text 200, 400, 401, 403 or 404."""

    @budget(harness, 400)
    @given(fz.kannel_query(KANNEL.receipt_token()), st.booleans())
    def one(query: dict[str, str], post: bool) -> None:
        if post:
            response = harness.request("POST", "/kannel/dlr", data=query)
        else:
            response = harness.request("GET", "/kannel/dlr", params=query)
        assert response.status_code in (200, 400, 401, 403, 404), response.text
        assert response.headers["content-type"].startswith("text/plain")
        harness.seen[str(response.status_code)] += 1

    one()
    assert len(harness.seen) >= 4, harness.seen


def test_status_and_template_reports(harness: Harness) -> None:
    """500 hostile ids on GET /v1/templates/{mms-id} and /v1/messages/{tracking-id} get a
    JSON 200 or 404."""
    headers = {"x-api-key": harness.gateway.api_key}

    @budget(harness, 500)
    @given(st.sampled_from(("/v1/templates/", "/v1/messages/")), fz.segments)
    def one(prefix: str, segment: str) -> None:
        response = harness.request("GET", prefix + segment, headers=headers)
        assert response.status_code in (200, 404), response.text
        assert isinstance(response.json(), dict)
        harness.seen[str(response.status_code)] += 1

    one()
    assert harness.seen["404"], harness.seen


def test_hosted_pages_and_media(harness: Harness) -> None:
    """300 hostile tokens, part numbers and Range headers on /m/{token} and
    /media/{token}/{n} get a 4xx, never a 5xx."""

    @budget(harness, 300)
    @given(
        fz.segments, fz.segments, st.one_of(st.none(), fz.hostile_utf8.map(lambda s: "bytes=" + s))
    )
    def one(token: str, n: str, byte_range: str | None) -> None:
        headers = {} if byte_range is None else {"range": byte_range.encode("utf-8")}
        for path in (f"/m/{token}", f"/media/{token}/{n}"):
            response = harness.request("GET", path, headers=headers)
            assert 400 <= response.status_code < 500, response.text
            harness.seen[str(response.status_code)] += 1

    one()
    assert harness.seen["404"], harness.seen
